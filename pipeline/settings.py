"""Settings for one run: the project file resolved against its folder, its schema and the CLI flags."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from models import evaluation, features
from pipeline.config import CONFIG_FILE, ClusterConfig, ConfigError, Project

if TYPE_CHECKING:
    from pipeline.monitoring import Baseline

# Measured by `make bench` (bench/RESULTS.md §4): in_memory beats multi_processing with 2 workers on 2 cores.
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
# What Beam workers install to run this project's code. Without one of these flags, TFX repackages itself
# as a 50 MB sdist in a new temp folder before every Beam component (1.4 s each, never deleted).
DEPENDENCY_FLAGS = ("--setup_file", "--extra_package", "--requirements_file", "--sdk_container_image")
SETUP_FILE = Path(__file__).resolve().parent.parent / "setup.py"  # this project's, in a source checkout
IMAGE_PROJECT_DIR = PurePosixPath("/pipeline")  # where the Dockerfile puts this project in the container image


def with_dependencies(beam_args: tuple[str, ...]) -> tuple[str, ...]:
    """`beam_args` plus `--setup_file` of this project, unless they already say what workers install."""
    if any(arg.startswith(DEPENDENCY_FLAGS) for arg in beam_args) or not SETUP_FILE.is_file():
        return beam_args
    return (*beam_args, f"--setup_file={SETUP_FILE}")


def cluster_beam_args(cluster: ClusterConfig) -> tuple[str, ...]:
    """The Beam arguments of every Beam component on a cluster: Dataflow's place, and what its workers install.

    Workers get this project from its setup.py in the image (`--setup_file`), and the lock's whole stack
    (TensorFlow Transform, TFDV, TFMA, tfx-bsl, which setup.py does not list) by running in that same image
    (`--sdk_container_image`; the Dockerfile adds Beam's worker boot program). No DirectRunner setting is carried
    over from the local defaults.
    """
    if cluster.runner != "DataflowRunner":
        return (f"--runner={cluster.runner}", *cluster.beam_args)
    return (
        f"--runner={cluster.runner}",
        f"--project={cluster.project}",
        f"--region={cluster.region}",
        f"--temp_location={cluster.beam_temp}",
        f"--setup_file={IMAGE_PROJECT_DIR / 'setup.py'}",
        f"--sdk_container_image={cluster.image}",
        *cluster.beam_args,
    )


SPAN_FOLDER = re.compile(r"^span-(\d+)$")
METADATA_FILE = "metadata.sqlite"  # the ML Metadata store, in the output folder
REPORT_FILE = "index.html"  # one per run, under <output>/report/<run id>/
SCHEMA_FILE = "schema.pbtxt"  # the imported schema, staged under <digest of its content>/


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where the project, its data and schema are, and where every artifact lands."""

    project_dir: Path
    data_root: Path
    schema_file: Path
    output_root: Path
    project_file: Path  # the project file these settings were read from

    @property
    def pipeline_root(self) -> Path:
        """TFX artifacts, one folder per component and execution."""
        return self.output_root / "pipeline"

    @property
    def metadata_path(self) -> Path:
        """The sqlite ML Metadata store recording every artifact and execution."""
        return self.output_root / METADATA_FILE

    @property
    def serving_root(self) -> Path:
        """Pushed models, in TF Serving's `<model_name>/<version>/` layout."""
        return self.output_root / "serving"

    @property
    def reports_dir(self) -> Path:
        """The HTML report of each run, in a folder named for its MLMD pipeline_run context id."""
        return self.output_root / "report"

    def newest_report(self) -> Path | None:
        """The report of the newest run that wrote one (run ids grow), or None."""
        if not self.reports_dir.is_dir():
            return None
        runs = [int(p.name) for p in self.reports_dir.iterdir() if p.name.isdigit()]
        newest = self.reports_dir / str(max(runs)) / REPORT_FILE if runs else None
        return newest if newest is not None and newest.is_file() else None

    @property
    def logs_dir(self) -> Path:
        """Full TensorFlow/Beam logs of each `tfxp run`, kept out of the terminal."""
        return self.output_root / "logs"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything `create_pipeline` needs, resolved and checked."""

    project: Project
    paths: Paths
    schema: schema_pb2.Schema
    declarations: features.Declarations
    gate: evaluation.Gate
    spans: tuple[int, ...] = ()  # span numbers present; empty when the folder holds files directly
    span: int | None = None  # the span this run reads
    beam_args: tuple[str, ...] = DEFAULT_BEAM_ARGS
    enable_cache: bool = True
    preprocessing_digest: str = ""  # of the code Transform runs: its cache key, so model-only edits reuse it
    model_code_digest: str = ""  # of every module in models/: the code version a model card names
    servability_code_digest: str = ""  # of the servability check and its probe: the check's cache key
    card_code_digest: str = ""  # of the model card's gathering code: part of ModelCardGenerator's cache key
    data_files: tuple[str, ...] = ()  # what this run reads, relative to the data folder: the model card lists them
    drift_baseline: Baseline | None = None  # statistics this span is compared with (monitoring.drift_baseline)
    cluster: ClusterConfig | None = None  # set by `tfxp compile`: the pipeline runs there, reading the URIs below

    @property
    def pipeline_name(self) -> str:
        """The MLMD pipeline context; one per project."""
        return self.project.model_name

    @property
    def model_name(self) -> str:
        """The folder under serving/ that TF Serving loads."""
        return self.project.model_name

    @property
    def column_types(self) -> dict[str, str]:
        """Schema type name ('INT', 'FLOAT', 'BYTES') of every column."""
        return {f.name: schema_pb2.FeatureType.Name(f.type) for f in self.schema.feature}

    @property
    def excluded(self) -> frozenset[str]:
        """Columns that are neither inputs nor validated (`[features] exclude`)."""
        return frozenset(self.project.features.exclude)

    @property
    def example_column_types(self) -> dict[str, str]:
        """The types ExampleGen reads columns as: the schema's, but excluded columns as text, unchecked."""
        return {name: "BYTES" if name in self.excluded else kind for name, kind in self.column_types.items()}

    @property
    def imported_schema(self) -> schema_pb2.Schema:
        """The curated schema as the pipeline imports it: excluded columns are DEPRECATED, which
        ExampleValidator (TFDV) and Transform pass over, so excluding a column takes it out of validation."""
        imported = schema_pb2.Schema()
        imported.CopyFrom(self.schema)
        for feature in imported.feature:
            if feature.name in self.excluded:
                feature.lifecycle_stage = schema_pb2.DEPRECATED
        return imported

    @property
    def imported_schema_text(self) -> str:
        """`imported_schema` in text format, as ImportSchemaGen reads it."""
        return text_format.MessageToString(self.imported_schema)

    @property
    def schema_digest(self) -> str:
        """A short digest of `imported_schema_text`: the folder its staged copy is in."""
        return hashlib.sha256(self.imported_schema_text.encode()).hexdigest()[:16]

    @property
    def imported_schema_file(self) -> Path:
        """Where the runner stages `imported_schema` on this machine, named by its content's digest.

        ImportSchemaGen's cache key is the file's path, not its content, so an edited schema (or a
        changed exclusion) gets a new path and invalidates SchemaGen and everything after it.
        """
        return self.paths.output_root / "schema" / self.schema_digest / SCHEMA_FILE

    # Where the pipeline reads and writes, as the machine running it sees them: this one's folders, or on a
    # cluster the [cluster] URIs (the schema staged under the pipeline root, named by its content as here).
    @property
    def pipeline_root_uri(self) -> str:
        """TFX's pipeline root: every artifact."""
        return self.cluster.pipeline_root if self.cluster else str(self.paths.pipeline_root)

    @property
    def data_uri(self) -> str:
        """ExampleGen's input base: the data folder."""
        return self.cluster.data if self.cluster else str(self.paths.data_root)

    @property
    def schema_uri(self) -> str:
        """The curated schema ImportSchemaGen imports."""
        if self.cluster:
            return f"{self.cluster.pipeline_root}/_schema/{self.schema_digest}/{SCHEMA_FILE}"
        return str(self.imported_schema_file)

    @property
    def serving_uri(self) -> str:
        """The Pusher's destination: TF Serving's base path for this model, holding <version>/ folders."""
        if self.cluster:
            return f"{self.cluster.serving}/{self.model_name}"
        return str(self.paths.serving_root / self.model_name)

    @property
    def reads_spans(self) -> bool:
        """Whether the data folder holds span-<N>/ folders rather than files."""
        return self.cluster.spans if self.cluster else bool(self.spans)

    @property
    def input_folder(self) -> Path:
        """The folder this run's files are in: the span's folder, or the data folder."""
        return self.paths.data_root / f"span-{self.span}" if self.span is not None else self.paths.data_root


# The code Transform runs, named without importing it (TensorFlow); its digest is Transform's cache key.
PREPROCESSING_MODULES = ("models.preprocessing", "models.features", "models.encodings", "models.tensors")
PREPROCESSING_FN = f"{PREPROCESSING_MODULES[0]}.preprocessing_fn"
# Code whose output is a pipeline result but which TFX does not package: digested into the components' keys.
SERVABILITY_MODULES = ("pipeline.servability", "pipeline.serving_probe")  # the probe is run by path, never imported
CARD_MODULES = ("pipeline.model_card", "pipeline.model_card_generator")
MODEL_MODULES = tuple(f"models.{path.stem}" for path in sorted(Path(features.__file__).parent.glob("*.py")))


def source_digest(module_names: tuple[str, ...]) -> str:
    """A short hash of the modules' source files, found without importing them (TensorFlow)."""
    digest = hashlib.sha256()
    for name in module_names:
        digest.update(Path(importlib.util.find_spec(name).origin).read_bytes())
    return digest.hexdigest()[:16]


def load_schema(path: Path) -> schema_pb2.Schema:
    """Parses a text-format schema, or raises ConfigError saying where it is broken."""
    if not path.is_file():
        raise ConfigError(f"schema file {path} does not exist; `tfxp init` writes one for you to review")
    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), schema_pb2.Schema())
    except (text_format.ParseError, UnicodeDecodeError) as error:
        raise ConfigError(f"schema file {path} is not a valid text-format schema: {error}") from None


def find_spans(data_root: Path) -> tuple[int, ...]:
    """Span numbers of the `span-<N>` folders in the data folder, ascending."""
    found = (SPAN_FOLDER.match(p.name) for p in data_root.iterdir() if p.is_dir())
    return tuple(sorted(int(m.group(1)) for m in found if m))


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path`, with symlinks and .. resolved, lies in `folder`."""
    return path.resolve().is_relative_to(folder.resolve())


def check_inside_project(path: Path, project: Project, project_dir: Path, what: str) -> None:
    """Refuses a data path that leaves the project folder, unless the project allows it."""
    if not project.data.allow_outside_project and not _inside(path, project_dir):
        raise ConfigError(
            f"{what} {path} resolves to {path.resolve()}, outside the project folder {project_dir}; "
            "move the data in, or set allow_outside_project = true under [data]"
        )


def configured_columns(project: Project) -> dict[str, list[str]]:
    """Every column the project file names, by the setting that names it."""
    return {
        "[label] column": [project.label.column],
        "[features] exclude": list(project.features.exclude),
        "[features.overrides]": list(project.features.overrides),
        "[evaluation] slices": list(project.evaluation.slices),
        "[monitoring.thresholds]": list(project.monitoring.thresholds),
    }


def _check_columns_in_schema(project: Project, schema: schema_pb2.Schema, schema_file: Path) -> None:
    """Every column the project file names must be in the schema."""
    known = {f.name for f in schema.feature}
    for setting, columns in configured_columns(project).items():
        for column in columns:
            if column not in known:
                raise ConfigError(f"{setting} names column '{column}', which is not in {schema_file}")


def _gate(project: Project, problem: features.Problem) -> evaluation.Gate:
    """The blessing gate, with the problem type's default metric and a stated or default bound, and the fairness
    gate across slices when `max_slice_gap` is set."""
    name = project.evaluation.metric or evaluation.DEFAULT_GATE_METRIC[problem]
    try:
        evaluation.metric(problem, name)
    except ValueError as error:
        raise ConfigError(f"[evaluation] metric: {error}") from None
    threshold = project.evaluation.threshold
    if threshold is None:
        if name not in evaluation.DEFAULT_THRESHOLDS:
            raise ConfigError(f"[evaluation] threshold is required for {name}: the largest {name} a model may have")
        threshold = evaluation.DEFAULT_THRESHOLDS[name]
    if project.evaluation.max_slice_gap is not None and not project.evaluation.slices:
        raise ConfigError(
            "[evaluation] max_slice_gap compares each slice with the overall value, but [evaluation] slices names no "
            "column to slice by; add one, or remove max_slice_gap"
        )
    return evaluation.Gate(
        name,
        threshold,
        project.evaluation.max_regression,
        project.evaluation.max_slice_gap,
        project.evaluation.min_slice_size,
    )


def _check_writable(folder: Path) -> None:
    """Creates `folder` if needed and proves a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"output folder {folder} is not writable: {error.strerror or error}") from None


def _paths(project: Project, project_dir: Path, project_file: Path | None) -> Paths:
    """The project's folders, resolved against its own folder."""
    project_dir = project_dir.resolve()
    return Paths(
        project_dir=project_dir,
        data_root=(project_dir / project.data.path).absolute(),
        schema_file=(project_dir / project.schema_.path).absolute(),
        output_root=(project_dir / project.output).absolute(),
        project_file=(project_file or project_dir / CONFIG_FILE).absolute(),
    )


def _declared(project: Project, paths: Paths) -> dict:
    """The schema, the declarations made from it, the gate and the code digests: what every run's settings hold,
    wherever the run happens."""
    schema = load_schema(paths.schema_file)
    _check_columns_in_schema(project, schema, paths.schema_file)
    try:
        declarations = features.declare(
            schema, project.label.column, project.label.problem, project.features.exclude, project.features.overrides
        )
    except ValueError as error:
        raise ConfigError(f"{paths.schema_file}: {error}") from None
    return dict(
        project=project,
        paths=paths,
        schema=schema,
        declarations=declarations,
        gate=_gate(project, declarations.label.problem),
        preprocessing_digest=source_digest(PREPROCESSING_MODULES),
        model_code_digest=source_digest(MODEL_MODULES),
        servability_code_digest=source_digest(SERVABILITY_MODULES),
        card_code_digest=source_digest(CARD_MODULES),
    )


def resolve(
    project: Project,
    project_dir: Path,
    span: int | None = None,
    beam_args: tuple[str, ...] = (),
    enable_cache: bool = True,
    project_file: Path | None = None,
) -> Settings:
    """Checks the project against its folder and schema, and returns the settings for one run.

    `project_file` is the file `project` was read from, when not `tfxp.toml` in `project_dir`.
    """
    paths = _paths(project, project_dir, project_file)
    data = paths.data_root
    if not data.is_dir():
        raise ConfigError(f"data folder {data} does not exist (set [data] path in the project file, or pass --data)")
    check_inside_project(data, project, paths.project_dir, "data folder")
    spans = find_spans(data)
    if span is not None and span not in spans:
        present = ", ".join(map(str, spans)) or "none; the data folder holds files directly"
        raise ConfigError(f"--span {span}: there is no folder {data / f'span-{span}'} (spans present: {present})")
    if span is None and spans:
        span = spans[-1]
    declared = _declared(project, paths)
    input_folder = data / f"span-{span}" if span is not None else data
    _check_writable(paths.output_root)
    return Settings(
        **declared,
        spans=spans,
        span=span,
        beam_args=with_dependencies(tuple(beam_args) or DEFAULT_BEAM_ARGS),
        enable_cache=enable_cache,
        data_files=tuple(
            sorted(str(p.relative_to(data)) for p in input_folder.glob(project.data.file_pattern) if p.is_file())
        ),
    )


def resolve_for_cluster(project: Project, project_dir: Path, project_file: Path | None = None) -> Settings:
    """The settings of the pipeline as it runs on a cluster, from the project's `[cluster]` section.

    The schema and declarations come from this machine's project folder; data, artifacts and pushed models are
    the section's URIs, which this machine does not read. Each run there takes the newest span when the data has
    spans, and the Beam components run on Dataflow (`cluster_beam_args`).
    """
    if project.cluster is None:
        where = project_file or project_dir / CONFIG_FILE
        raise ConfigError(
            f"{where} has no [cluster] section; add one naming the image, pipeline_root, data, serving, project and "
            "region (README: Running on a cluster)"
        )
    paths = _paths(project, project_dir, project_file)
    _check_writable(paths.output_root)  # the schema to upload is staged there
    return Settings(**_declared(project, paths), beam_args=cluster_beam_args(project.cluster), cluster=project.cluster)
