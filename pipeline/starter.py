"""`tfxp init`: profiles a dataset with TFDV and writes a starter project file and schema to review."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from models import encodings, evaluation
from models.encodings import Encoding
from models.features import Override, Problem
from pipeline import config, preflight, tables
from pipeline.settings import find_spans

HASH_ABOVE = 100  # strings with more distinct values are hashed (TFDV lists no domain above this)
INT_CATEGORY_MAX = 10  # integers with at most this many distinct values are treated as categories
MAX_SLICES = 3
ID_MIN_ROWS = 50  # below this, "every value distinct" says nothing about being an id
MIN_COUNTER_VALUES = 10  # a column counting 1, 1, 2, 3, 3, ... down the file this far numbers rows or groups
# A column present in fewer rows than this, or in under this share of rows, is too sparse to learn
# from, and a split that happens to miss it would fail validation.
SPARSE_ROWS = 20
SPARSE_SHARE = 0.01
ID_NAME = re.compile(r"^(id|index|rownames|row_?(id|num|number))$|[_ .-]id$|^unnamed: ?\d+$", re.IGNORECASE)
CAMEL_ID_NAME = re.compile(r"[a-z0-9]I[dD]$")  # customerId, userID
ID_NAME_DISTINCT = 0.5  # a column named like an id is one when at least this share of its values differ
# Integers named like codes are categories, however many values they take: 0-padding and order mean nothing.
CODE_NAME = re.compile(
    r"code|zip|postal|store|region|district|branch|station|county|country|category|segment|group", re.IGNORECASE
)
TIME_NAME = re.compile(r"time|date|epoch|_at$|_ts$", re.IGNORECASE)
UNIX_SECONDS = (1e8, 4e9)  # 1973 to 2096: integers named like times in this range are Unix seconds


class InitError(ValueError):
    """`tfxp init` cannot profile the data; the message says why."""


@dataclasses.dataclass
class Decision:
    """What init decided for one column, and why, for the table it prints."""

    column: str
    kind: str  # INT / FLOAT / BYTES
    missing: float  # fraction of rows without a value
    distinct: int | None
    treatment: str
    reason: str
    encoding: Encoding | None = None  # how the column is encoded; None for the label and excluded columns


@dataclasses.dataclass
class Starter:
    """The inferred schema, the project file text and the decisions behind them."""

    schema: schema_pb2.Schema
    project_text: str
    decisions: list[Decision]
    problem: Problem
    problem_reason: str
    rows: int


def _read_table(path: Path, data_format: str, column_types: dict[str, str] | None = None) -> pa.Table:
    """One file as an Arrow table, types inferred unless given."""
    try:
        return tables.read_table(path, data_format, column_types)
    except (pa.ArrowInvalid, OSError) as error:
        raise InitError(f"cannot read {path}: {error}") from None


def _unified_kind(kinds: set[str]) -> str:
    """One schema type for a column typed differently across files."""
    if kinds <= {"INT"}:
        return "INT"
    if kinds <= {"INT", "FLOAT"}:
        return "FLOAT"
    return "BYTES"


def read_dataset(files: list[Path], data_format: str) -> tuple[list[pa.RecordBatch], set[str]]:
    """All files as tf.Example-typed Arrow batches, and the columns Arrow recognised as timestamps."""
    read = [_read_table(path, data_format) for path in files]
    timestamps = {
        field.name
        for table in read
        for field in table.schema
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type)
    }
    if data_format == "csv" and len(read) > 1:
        kinds: dict[str, set[str]] = {}
        for table in read:
            for field in table.schema:
                kinds.setdefault(field.name, set()).add(tables.arrow_kind(field.type) or "BYTES")
        types = {name: _unified_kind(k) for name, k in kinds.items()}
        for name in timestamps:
            types[name] = "BYTES"
        read = [_read_table(path, data_format, types) for path in files]
    batches = []
    for table in read:
        batches.extend(tables.example_batch(b) for b in table.to_batches(max_chunksize=tables.BATCH_ROWS))
    return batches, timestamps


@dataclasses.dataclass(frozen=True)
class ColumnFacts:
    """What TFDV's statistics do not say about a column: distinct values and whether it counts rows."""

    present: int  # rows with a value
    distinct: int
    first: object  # the first value, to name a constant
    top_share: float  # the most common value's share of the present ones
    counter: bool  # integers from 0 or 1 going up by at most one, row after row: a row or group number


def column_facts(batches: list[pa.RecordBatch], name: str) -> ColumnFacts:
    """Facts about one column of the tf.Example-shaped batches."""
    values = pa.chunked_array([b.column(name).flatten() for b in batches]).combine_chunks()
    present = len(values)
    if not present:
        return ColumnFacts(0, 0, None, 0.0, False)
    counter = False
    if pa.types.is_integer(values.type) and present >= 2:
        numbers = values.to_numpy()
        counter = numbers[0] in (0, 1) and bool(np.all(np.isin(np.diff(numbers), (0, 1))))
    first = values[0].as_py()
    if isinstance(first, bytes):
        first = first.decode("utf-8", "replace")
    counts = pc.value_counts(values).field("counts").to_numpy()
    return ColumnFacts(present, len(counts), first, float(counts.max()) / present, counter)


def compute_statistics(batches: list[pa.RecordBatch]) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of the batches, computed by TFDV's own Beam transform."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv

    with tempfile.TemporaryDirectory() as tmp:
        output = str(Path(tmp) / "stats.pb")
        with beam.Pipeline(
            options=beam.options.pipeline_options.PipelineOptions(["--direct_running_mode=in_memory"])
        ) as p:
            _ = (
                p
                | beam.Create(batches, reshuffle=False)
                | tfdv.GenerateStatistics(tfdv.StatsOptions())
                | tfdv.WriteStatisticsToBinaryFile(output)
            )
        return tfdv.load_stats_binary(output)


def _feature_stats(stats: statistics_pb2.DatasetFeatureStatistics) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    """Per-column statistics by name."""
    return {f.path.step[0]: f for f in stats.features}


def _common(feature_stats) -> statistics_pb2.CommonStatistics:
    """The statistics every type has (counts, missing)."""
    kind = feature_stats.WhichOneof("stats")
    return getattr(feature_stats, kind).common_stats


def _distinct(feature_stats) -> int | None:
    """Distinct values of a string column, or None for numbers (TFDV counts those only when asked)."""
    if feature_stats.HasField("string_stats"):
        return feature_stats.string_stats.unique
    return None


def _int_values(feature_stats) -> list[int]:
    """Distinct values of an integer column when there are few, read from TFDV's histogram buckets."""
    numbers = feature_stats.num_stats
    if numbers.min != int(numbers.min) or numbers.max != int(numbers.max):
        return []
    span = int(numbers.max) - int(numbers.min)
    return list(range(int(numbers.min), int(numbers.max) + 1)) if span < INT_CATEGORY_MAX else []


def _infer_problem(label: str, kind: str, stats, forced: Problem | None) -> tuple[Problem, str]:
    """The label's problem type, and the reason printed for it."""
    if forced is not None:
        return forced, "given with --problem"
    if kind == "BYTES":
        distinct = _distinct(stats)
        if distinct == 2:
            return Problem.BINARY, f"'{label}' is a string with 2 values"
        return Problem.MULTICLASS, f"'{label}' is a string with {distinct} values"
    if kind == "INT" and (values := _int_values(stats)):
        problem = Problem.BINARY if len(values) == 2 else Problem.MULTICLASS
        return problem, f"'{label}' is an integer with {len(values)} values ({values[0]}..{values[-1]})"
    return Problem.REGRESSION, f"'{label}' is a {'float' if kind == 'FLOAT' else 'wide-ranging integer'}"


class ColumnChoice(NamedTuple):
    """What init does with one feature column, and why: an encoding (with an override if its type
    does not imply it), or an exclusion (no encoding)."""

    treatment: str
    reason: str
    encoding: Encoding | None = None
    override: Override | None = None


def _encode(
    encoding: Encoding, reason: str, buckets: int = 0, optional: bool = False, implied: bool = False
) -> ColumnChoice:
    """A choice to encode a column, described as the encoding describes itself.

    `implied`: the column's schema type already implies this encoding, so no override is written.
    """
    override = None if implied else Override(encoding, buckets)
    return ColumnChoice(encodings.of(encoding).describe(buckets, optional), reason, encoding, override)


def _looks_like_id(name: str, kind: str, facts: ColumnFacts, rows: int) -> str | None:
    """Why a column is an id rather than a feature, or None."""
    if kind == "FLOAT" or rows < ID_MIN_ROWS:
        return None
    if facts.counter and facts.present == rows and facts.distinct >= MIN_COUNTER_VALUES:
        what = "a row number" if facts.distinct == rows else "a group number"
        return f"{what}: counts up by one from {facts.first} down the file"
    if kind == "BYTES" and facts.distinct == facts.present:
        return f"looks like an id: all {facts.distinct} values distinct"
    if (ID_NAME.search(name) or CAMEL_ID_NAME.search(name)) and facts.distinct >= ID_NAME_DISTINCT * facts.present:
        return f"named like an id, {facts.distinct} distinct values"
    return None


def _decide(name: str, kind: str, stats, facts: ColumnFacts, rows: int, timestamps: set[str]) -> ColumnChoice:
    """How one feature column is used, from its name, type, TFDV statistics and facts."""
    if facts.present < SPARSE_ROWS or facts.present < SPARSE_SHARE * rows:
        share = facts.present / rows if rows else 0
        return ColumnChoice("excluded", f"nearly empty: {facts.present} of {rows} rows ({share:.1%}) have a value")
    if facts.distinct == 1:
        return ColumnChoice("excluded", f"constant: every value is {str(facts.first)[:30]!r}")
    if name in timestamps:  # every value distinct is what times are, not an id
        return _encode(Encoding.TIMESTAMP, "values parse as dates/times")
    if why := _looks_like_id(name, kind, facts, rows):
        return ColumnChoice("excluded", why)
    if kind == "BYTES":
        if facts.distinct > HASH_ABOVE:
            buckets = 10 ** math.ceil(math.log10(facts.distinct * 2))
            return _encode(Encoding.HASHED, f"{facts.distinct} distinct values", buckets)
        return _encode(Encoding.VOCABULARY, f"{facts.distinct} distinct values", implied=True)
    if kind == "INT":
        numbers = stats.num_stats
        if TIME_NAME.search(name) and UNIX_SECONDS[0] <= numbers.min and numbers.max <= UNIX_SECONDS[1]:
            return _encode(Encoding.TIMESTAMP, "named like a time, values are Unix seconds")
        if values := _int_values(stats):
            return _encode(Encoding.VOCABULARY, f"integer with only {len(values)} values: a category")
        if CODE_NAME.search(name):
            why = f"integer named like a code, {facts.distinct} values: a category"
            if facts.distinct > HASH_ABOVE:
                buckets = 10 ** math.ceil(math.log10(facts.distinct * 2))
                return _encode(Encoding.HASHED, why, buckets)
            return _encode(Encoding.VOCABULARY, why)
    missing = 1 - facts.present / rows if rows else 0
    reason = "number" + (f", {missing:.0%} missing (imputed with the mean)" if missing else "")
    return _encode(Encoding.NUMERIC, reason, optional=missing > 0, implied=True)


def _curate_schema(
    schema: schema_pb2.Schema,
    label: str,
    problem: Problem,
    stats_by_name,
    timestamps: set[str],
    hashed: set[str],
    excluded: set[str],
) -> None:
    """Adjusts TFDV's inferred schema: categorical integer labels, no domains where values are open-ended."""
    for feature in schema.feature:
        if feature.name in timestamps | hashed | excluded and feature.HasField("domain"):
            feature.ClearField("domain")
        if feature.name == label and problem is not Problem.REGRESSION and feature.type == schema_pb2.INT:
            values = _int_values(stats_by_name[label])
            feature.int_domain.min, feature.int_domain.max = values[0], values[-1]
            feature.int_domain.is_categorical = True
        if feature.name == label:
            feature.presence.min_fraction = 1.0
    used = {f.domain for f in schema.feature if f.HasField("domain")}
    kept = [d for d in schema.string_domain if d.name in used]
    del schema.string_domain[:]
    schema.string_domain.extend(kept)
    schema.dataset_constraints.min_examples_count = 1  # an empty split is an anomaly


STARTER_AUC = 0.6  # init's bar for binary labels: clearly better than chance (0.5)
STARTER_SLICE_GAP = 0.05  # the max_slice_gap init suggests (commented out), in auc or accuracy; a share of the
# label's deviation for regression


@dataclasses.dataclass(frozen=True)
class StartingGate:
    """The blessing bar init proposes, with the reasons written beside it."""

    threshold: float
    reason: str
    max_regression: float = evaluation.DEFAULT_MAX_REGRESSION
    regression_reason: str = "how much worse than the last blessed model a new one may be"
    slice_gap: float = STARTER_SLICE_GAP  # an example for max_slice_gap, which is off unless set


def _gate(problem: Problem, label_stats, label_facts: ColumnFacts) -> StartingGate:
    """A starting blessing bar on the problem's gate metric: better than the trivial model the data implies."""
    if problem is Problem.REGRESSION:
        std = label_stats.num_stats.std_dev
        share = evaluation.DEFAULT_MAX_REGRESSION  # the same margin, as a share of the label's deviation
        return StartingGate(
            float(f"{std:.3g}"),
            f"rmse at most {std:.3g}, the label's deviation: better than predicting the mean",
            float(f"{share * std:.2g}"),
            f"a new model's rmse may exceed the last blessed one's by {share:.0%} of the label's deviation",
            float(f"{STARTER_SLICE_GAP * std:.2g}"),
        )
    if problem is Problem.BINARY:
        return StartingGate(STARTER_AUC, f"auc at least {STARTER_AUC}: clearly better than chance (0.5)")
    majority = math.ceil(100 * label_facts.top_share) / 100  # string or integer classes alike
    return StartingGate(majority, f"accuracy at least {majority}: better than always guessing the most common class")


def _toml_value(value) -> str:
    """A TOML literal for a string, number, bool or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings


def _project_text(
    model_name: str,
    data_path: str,
    outside: bool,
    data_format: str,
    label: str,
    problem: Problem,
    problem_reason: str,
    exclude: list[str],
    overrides: dict[str, Override],
    slices: list[str],
    gate: StartingGate,
) -> str:
    """The starter tfxp.toml, with a comment on every setting; defaults are read from the config models."""
    split, training, judged = config.SplitConfig(), config.TrainingConfig(), config.EvaluationConfig()
    delivery, monitoring = config.DeliveryConfig(), config.MonitoringConfig()
    # TOML has no null: a setting that is off by default is written commented out, with an example value.
    gap = [
        "# Fairness gate: block a model when a slice of min_slice_size or more eval examples is worse than overall",
        "# in the gate metric by more than max_slice_gap, in the metric's units."
        + (" Off until set." if judged.max_slice_gap is None else ""),
        f"# max_slice_gap = {_toml_value(gate.slice_gap)}"
        if judged.max_slice_gap is None
        else f"max_slice_gap = {_toml_value(judged.max_slice_gap)}",
    ]
    lines = [
        "# tfxp project file, written by `tfxp init`. Review it, and schema/schema.pbtxt, then `tfxp run`.",
        f"model_name = {_toml_value(model_name)}  # serving path: <output>/serving/<model_name>/<version>/",
        f"output = {_toml_value(config.Project.model_fields['output'].default)}",
        "",
        "[data]",
        f"path = {_toml_value(data_path)}  # a folder of files, or of span-<N>/ folders (newest span is used)",
        f"format = {_toml_value(data_format)}  # csv | parquet | tfrecord",
        f"allow_outside_project = {_toml_value(outside)}  # refuse data outside this folder (.. or symlinks)",
        "",
        "[schema]",
        f"path = {_toml_value(config.SchemaConfig().path)}  # curated: every batch is validated against it",
        "",
        "[label]",
        f"column = {_toml_value(label)}",
        f"problem = {_toml_value(problem.value)}  # {problem_reason}",
        "",
        "[features]",
        f"exclude = {_toml_value(exclude)}  # ids, and leaks computed from the label",
        "",
    ]
    for name, override in overrides.items():
        lines.append(f"[features.overrides.{json.dumps(name)}]")
        lines.append(f"encoding = {_toml_value(override.encoding.value)}  # {' | '.join(e.value for e in Encoding)}")
        if override.buckets:
            lines.append(f"buckets = {override.buckets}")
        lines.append("")
    lines += [
        "[split]",
        f"eval_fraction = {_toml_value(split.eval_fraction)}  # share of each batch held out for evaluation",
        "",
        "[evaluation]",
        f"slices = {_toml_value(slices)}  # metrics are also reported per value of these columns",
        f"metric = {_toml_value(evaluation.DEFAULT_GATE_METRIC[problem])}",
        f"threshold = {_toml_value(gate.threshold)}  # {gate.reason}",
        f"max_regression = {_toml_value(gate.max_regression)}  # {gate.regression_reason}",
        *gap,
        f"min_slice_size = {_toml_value(judged.min_slice_size)}  # smaller slices are reported, never gated",
        "",
        "[training]",
        f"epochs = {_toml_value(training.epochs)}  # at most; training stops when the eval split stops improving",
        f"patience = {_toml_value(training.patience)}  # epochs without improvement before it stops",
        f"max_minutes = {_toml_value(training.max_minutes)}  # and after this long, whatever the epoch",
        f"tuner = {_toml_value(training.tuner)}",
        f"tuner_trials = {_toml_value(training.tuner_trials)}",
        f"tuner_epochs = {_toml_value(training.tuner_epochs)}  # per trial",
        "",
        "[delivery]",
        f"keep_versions = {_toml_value(delivery.keep_versions)}  # newest versions kept; a pinned one never goes",
        f"approval = {_toml_value(delivery.approval)}  # auto | manual: a blessed model waits for `tfxp approve`",
        "",
        "[monitoring]  # each span against the one the serving model trained on; `tfxp monitor` for serving traffic",
        f"drift_threshold = {_toml_value(monitoring.drift_threshold)}  # L-infinity (categories) or Jensen-Shannon "
        "(numbers), 0 to 1",
        f"on_drift = {_toml_value(monitoring.on_drift)}  # warn | stop: with stop, a drifted span trains nothing",
        f"min_rows_ratio = {_toml_value(monitoring.min_rows_ratio)}  # a split under this × the baseline's rows is "
        "reported",
        f"max_rows_ratio = {_toml_value(monitoring.max_rows_ratio)}  # and one over this ×",
        "# max_model_age_days = 30  # `tfxp status` exits 6 when the serving model is older; off until set",
        "",
        "[monitoring.thresholds]  # per-column overrides of drift_threshold, e.g. a noisy column:",
        "# some_column = 0.2",
        "",
        "[card]  # what only you can write on the model card shipped with each version; empty shows as not written",
        'intended_use = ""  # what this model is for, and what decisions it may inform',
        'users = ""  # who should use its predictions',
        'limitations = ""  # where it should not be used: data it never saw, groups it serves worse',
        "",
    ]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Profile:
    """One batch as TFDV sees it: its rows, columns in file order, statistics and inferred schema."""

    folder: Path
    data_format: str
    rows: int
    columns: list[str]
    stats_by_name: dict[str, statistics_pb2.FeatureNameStatistics]
    schema: schema_pb2.Schema
    timestamps: set[str]  # columns Arrow read as dates or times
    facts: dict[str, ColumnFacts]
    row_index: bool = False  # the files start with an unnamed row index column, which is not read

    def kind(self, name: str) -> str:
        """The inferred schema type of a column: INT, FLOAT or BYTES."""
        return next(schema_pb2.FeatureType.Name(f.type) for f in self.schema.feature if f.name == name)

    def missing(self, name: str) -> float:
        """The share of rows without a value in a column."""
        return 1 - self.facts[name].present / self.rows

    def decision(self, name: str, treatment: str, reason: str, encoding: Encoding | None = None) -> Decision:
        """A row of the decision table for a column."""
        facts = self.facts[name]
        return Decision(name, self.kind(name), self.missing(name), facts.distinct, treatment, reason, encoding)


def _find_files(data: Path, data_format: str | None) -> tuple[Path, str, list[Path]]:
    """The folder to profile (the newest span, if any), its format, and its files."""
    if not data.is_dir():
        raise InitError(f"data folder {data} does not exist")
    spans = find_spans(data)
    folder = data / f"span-{spans[-1]}" if spans else data
    if data_format is None:
        data_format = next((f for f, pattern in config.PATTERNS.items() if tables.data_files(folder, pattern)), None)
        if data_format is None:
            raise InitError(f"no CSV, Parquet or TFRecord files in {folder}")
    files = tables.data_files(folder, config.PATTERNS[data_format])
    if not files:
        raise InitError(f"no files match {folder / config.PATTERNS[data_format]}")
    if data_format == "tfrecord":
        raise InitError(
            "init profiles CSV and Parquet; for TFRecord, write the schema with TFDV and the project by hand"
        )
    return folder, data_format, files


def _profile(folder: Path, data_format: str, files: list[Path], label: str, exclude: tuple[str, ...]) -> Profile:
    """Reads the files, checks the named columns exist, and computes TFDV statistics and a schema."""
    import tensorflow_data_validation as tfdv

    batches, timestamps = read_dataset(files, data_format)
    rows = sum(b.num_rows for b in batches)
    if rows == 0:
        raise InitError(f"{folder} has no data rows")
    columns = batches[0].schema.names
    if label not in columns:
        raise InitError(f"the label column '{label}' is not in {files[0]} (columns: {', '.join(columns)})")
    if unknown := [name for name in exclude if name not in columns]:
        raise InitError(
            f"--exclude names {', '.join(map(repr, unknown))}, not in {files[0]} (columns: {', '.join(columns)})"
        )
    if label in exclude:
        raise InitError(f"the label '{label}' cannot also be excluded")
    statistics = compute_statistics(batches)
    schema = tfdv.infer_schema(statistics, infer_feature_shape=True, max_string_domain_size=HASH_ABOVE)
    facts = {name: column_facts(batches, name) for name in columns}
    stats_by_name = _feature_stats(statistics.datasets[0])
    row_index = data_format == "csv" and tables.has_row_index(tables.csv_header(files[0]))
    return Profile(folder, data_format, rows, columns, stats_by_name, schema, timestamps, facts, row_index)


@dataclasses.dataclass
class ColumnPlan:
    """What init decided for every column: the table it prints, the exclusions and the encoding overrides."""

    decisions: list[Decision] = dataclasses.field(default_factory=list)
    exclude: list[str] = dataclasses.field(default_factory=list)
    overrides: dict[str, Override] = dataclasses.field(default_factory=dict)


def _plan_columns(profile: Profile, label: str, label_decision: Decision, given_exclusions: set[str]) -> ColumnPlan:
    """Decides each column's use, in file order."""
    plan = ColumnPlan()
    if profile.row_index:
        why = "the row index pandas and R write: never read"
        plan.decisions.append(Decision("(no name)", "INT", 0.0, profile.rows, "excluded", why))
    for name in profile.columns:
        if name == label:
            plan.decisions.append(label_decision)
            continue
        if name in given_exclusions:
            plan.exclude.append(name)
            plan.decisions.append(profile.decision(name, "excluded", "given with --exclude"))
            continue
        choice = _decide(
            name, profile.kind(name), profile.stats_by_name[name], profile.facts[name], profile.rows, profile.timestamps
        )
        if choice.encoding is None:
            plan.exclude.append(name)
        if choice.override:
            plan.overrides[name] = choice.override
        plan.decisions.append(profile.decision(name, choice.treatment, choice.reason, choice.encoding))
    return plan


def _slices(plan: ColumnPlan) -> list[str]:
    """A few small categorical columns to report metrics for."""
    return [
        d.column
        for d in plan.decisions
        if d.encoding is Encoding.VOCABULARY and (d.distinct or INT_CATEGORY_MAX) <= INT_CATEGORY_MAX
    ][:MAX_SLICES]


def _unlabeled(profile: Profile, label: str) -> str:
    """A note on rows without a label, which the pipeline leaves out; refuses data mostly without one."""
    unlabeled = profile.rows - profile.facts[label].present
    if unlabeled > preflight.MAX_UNLABELED_SHARE * profile.rows:
        raise InitError(f"{unlabeled} of {profile.rows} rows have no value in '{label}'; is it the right label column?")
    return f"; {unlabeled} rows without it are left out" if unlabeled else ""


def _data_path(project_dir: Path, data: Path) -> tuple[str, bool]:
    """The data folder as the project file names it, and whether it lies outside the project."""
    outside = not data.resolve().is_relative_to(project_dir.resolve())
    return (str(data) if outside else str(data.relative_to(project_dir)) if data != project_dir else "."), outside


def build_starter(
    project_dir: Path,
    data: Path,
    label: str,
    data_format: str | None,
    problem: Problem | None,
    model_name: str | None,
    exclude: tuple[str, ...] = (),
) -> Starter:
    """Profiles the data (the newest span, if any) and drafts the schema and project file; `exclude` names leaks."""
    data, project_dir = data.absolute(), project_dir.absolute()
    folder, data_format, files = _find_files(data, data_format)
    profile = _profile(folder, data_format, files, label, exclude)
    label_problem, problem_reason = _infer_problem(label, profile.kind(label), profile.stats_by_name[label], problem)
    label_decision = profile.decision(
        label, f"label: {label_problem.value}", problem_reason + _unlabeled(profile, label)
    )
    plan = _plan_columns(profile, label, label_decision, set(exclude))
    hashed = {n for n, o in plan.overrides.items() if o.encoding is Encoding.HASHED}
    _curate_schema(
        profile.schema, label, label_problem, profile.stats_by_name, profile.timestamps, hashed, set(plan.exclude)
    )
    data_path, outside = _data_path(project_dir, data)
    text = _project_text(
        model_name or _model_name(data),
        data_path,
        outside,
        data_format,
        label,
        label_problem,
        problem_reason,
        plan.exclude,
        plan.overrides,
        _slices(plan),
        _gate(label_problem, profile.stats_by_name[label], profile.facts[label]),
    )
    return Starter(profile.schema, text, plan.decisions, label_problem, problem_reason, profile.rows)


def _model_name(data: Path) -> str:
    """A serving-path-safe model name from the data folder's name."""
    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in data.resolve().name).strip("_.-")
    return name or "model"


def write_starter(starter: Starter, project_dir: Path, force: bool) -> tuple[Path, Path]:
    """Writes tfxp.toml and schema/schema.pbtxt, refusing to overwrite either unless `force`."""
    import tensorflow_data_validation as tfdv

    project_file = project_dir / config.CONFIG_FILE
    schema_file = project_dir / config.SchemaConfig().path
    for path in (project_file, schema_file):
        if path.exists() and not force:
            raise InitError(f"{path} already exists; pass --force to overwrite it")
    schema_file.parent.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(starter.schema, str(schema_file))
    project_file.write_text(starter.project_text, encoding="utf-8")
    return project_file, schema_file
