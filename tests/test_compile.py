"""`tfxp compile`: the pipeline as a KFP v2 spec for a cluster, from the README's example [cluster] section.

Compiled once per target (about 10 s, most of it importing TFX), then read by every test. What a cluster would do
with the spec is not run here: the README says what is verified on paper only.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.utils import import_utils

import models
import pipeline
from pipeline import cli, config, evaluator, kubeflow, nodes, pusher, serving, settings, wiring
from tests.conftest import documented_cluster_section
from tests.datasets import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
LOCK = PROJECT_ROOT / "requirements.lock"


@dataclasses.dataclass(frozen=True)
class Compiled:
    """The project compiled, as a user would: its folder, settings, and what `tfxp compile` wrote and printed."""

    project: Path
    settings: settings.Settings
    vertex_text: str
    kubeflow_text: str
    stdout: str

    @property
    def job(self) -> dict:
        return json.loads(self.vertex_text)

    @property
    def spec(self) -> dict:
        return self.job["pipelineSpec"]

    def executors(self) -> dict[str, dict]:
        return self.spec["deploymentSpec"]["executors"]

    def containers(self) -> dict[str, dict]:
        return {label: e["container"] for label, e in self.executors().items() if "container" in e}


def _invoke(*args: str):
    """`tfxp ARGS` in this process (the imports are paid once); the umask the CLI narrows is put back."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        return CliRunner().invoke(cli.main, list(args))
    finally:
        os.umask(umask)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Compiled:
    """The default project with the README's [cluster] section, compiled for both targets through the CLI."""
    project = tmp_path_factory.mktemp("cluster") / "penguins"
    project.mkdir()
    shutil.copytree(PROJECT_ROOT / "schema", project / "schema")  # no data: the cluster reads its own
    project_file = project / config.CONFIG_FILE
    project_file.write_text(
        (PROJECT_ROOT / config.CONFIG_FILE).read_text(encoding="utf-8") + "\n" + documented_cluster_section()
    )
    vertex, kubeflow_spec = project / "out" / "pipeline.json", project / "out" / "pipeline.yaml"
    printed = []
    for target, path in ((kubeflow.VERTEX, vertex), (kubeflow.KUBEFLOW, kubeflow_spec)):
        result = _invoke("compile", "--config", str(project_file), "--target", target, "--output", str(path))
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        printed.append(result.output)
    resolved = settings.resolve_for_cluster(config.load_project(project_file), project, project_file)
    return Compiled(project, resolved, vertex.read_text(), kubeflow_spec.read_text(), "\n".join(printed))


def test_the_spec_parses_strictly_as_a_pipeline_job_and_a_pipeline_spec(compiled):
    job = json_format.Parse(compiled.vertex_text, pipeline_spec_pb2.PipelineJob())  # unknown fields are errors
    assert job.runtime_config.gcs_output_directory == compiled.settings.cluster.pipeline_root
    spec = json_format.ParseDict(compiled.spec, pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == compiled.settings.pipeline_name
    deployment = json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec), pipeline_spec_pb2.PipelineDeploymentConfig()
    )
    assert set(deployment.executors) == {c.executor_label for c in spec.components.values()}
    # The kubeflow target is the same spec, as the YAML the KFP client uploads.
    as_yaml = yaml.safe_load(compiled.kubeflow_text)
    json_format.ParseDict(as_yaml, pipeline_spec_pb2.PipelineSpec())
    assert as_yaml == compiled.spec


def test_every_component_is_a_task_in_the_image_with_the_cluster_beam_args(compiled):
    dag = wiring.create_pipeline(compiled.settings, None)
    expected = {node.id for node in dag.components if node.id != nodes.BASELINE_RESOLVER}
    # TFX compiles LatestBlessedModelStrategy into two queries: the newest blessing, then its model.
    expected |= {f"{nodes.BASELINE_RESOLVER}-model-blessing-resolver", f"{nodes.BASELINE_RESOLVER}-model-resolver"}
    assert set(compiled.spec["root"]["dag"]["tasks"]) == expected
    cluster = compiled.settings.cluster
    beam_args = list(settings.cluster_beam_args(cluster))
    assert f"--setup_file={settings.IMAGE_PROJECT_DIR}/setup.py" in beam_args
    containers = compiled.containers()
    assert len(containers) == len(expected) - 2  # all but the two resolver queries
    for label, container in containers.items():
        assert container["image"] == cluster.image, label
        assert container["command"] == list(kubeflow.TASK_COMMAND), label
        own = [evaluator.WORKER_PLUGIN_ARG] if label == f"{nodes.EVALUATOR}_executor" else []
        assert container["args"][-len(beam_args) - len(own) :] == beam_args + own, label
        hook = container.get("lifecycle", {}).get("preCacheCheck")
        if hook:  # ExampleGen's driver (span, version, fingerprint) gets the same arguments
            assert hook["args"][-len(beam_args) :] == beam_args, label
    assert "direct_running_mode" not in compiled.vertex_text and "direct_num_workers" not in compiled.vertex_text
    assert f"Wrote {compiled.project / 'out' / 'pipeline.json'}: pipeline penguins for Vertex AI Pipelines" in (
        " ".join(compiled.stdout.split())
    )


def test_no_local_path_leaks_into_the_spec(compiled):
    text = compiled.vertex_text + compiled.kubeflow_text
    here = {
        str(compiled.project),
        str(PROJECT_ROOT),
        str(Path.home()),
        tempfile.gettempdir(),
        os.getcwd(),
        sys.prefix,
        "/work",
        "/tmp",
    }
    assert [place for place in here if place in text] == []
    # Any absolute path at all must be in the image's layout: the project's folder there, for --setup_file.
    paths = set(re.findall(r"(?<![\w:/.\\-])/[\w.-]+(?:/[\w.-]+)+", text))
    assert {p for p in paths if not p.startswith(f"{settings.IMAGE_PROJECT_DIR}/")} == set(), paths
    for uri in ("pipeline_root", "data", "serving"):
        assert getattr(compiled.settings.cluster, uri).startswith("gs://")


def _parameter(compiled: Compiled, task: str, name: str) -> str:
    value = compiled.spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]["runtimeValue"]
    return value["constant"] if "constant" in value else value["constantValue"]["stringValue"]


def test_user_code_and_every_executor_import_from_the_installed_package(compiled):
    user_code = {
        _parameter(compiled, nodes.TRANSFORM, "preprocessing_fn"): settings.PREPROCESSING_FN,
        _parameter(compiled, nodes.TRAINER, "run_fn"): wiring.RUN_FN,
        _parameter(compiled, nodes.TUNER, "tuner_fn"): wiring.TUNER_FN,
    }
    assert list(user_code) == list(user_code.values())
    package_root = Path(pipeline.__file__).parent.parent
    assert Path(models.__file__).parent.parent == package_root
    for dotted in user_code:
        module, function = dotted.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), function)), dotted
        assert Path(sys.modules[module].__file__).is_relative_to(package_root), dotted
    for task in (nodes.TRAINER, nodes.TUNER):  # no wheel of this machine's files: the cache key is the code digest
        config_json = json.loads(_parameter(compiled, task, "custom_config"))
        assert config_json[wiring.MODEL_CODE_DIGEST] == compiled.settings.model_code_digest
        assert "module_file" not in compiled.spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
    ours = []
    for container in compiled.containers().values():
        path = container["args"][container["args"].index("--executor_class_path") + 1]
        executor = import_utils.import_class_by_path(path)
        assert executor.__module__.split(".")[0] in ("pipeline", "tfx"), path
        ours += [path] if path.startswith("pipeline.") else []
        hook = container.get("lifecycle", {}).get("preCacheCheck")
        if hook:
            assert importlib.util.find_spec(hook["command"][-1]) is not None
    assert importlib.util.find_spec(kubeflow.TASK_COMMAND[-1]) is not None
    assert len(ours) >= 6  # ExampleGen, the gates, the Evaluator, the checks, the card and the Pusher are ours


def test_the_schema_is_staged_under_its_content_digest_with_the_command_to_upload_it(compiled):
    staged = compiled.settings.imported_schema_file
    assert staged.read_text() == compiled.settings.imported_schema_text
    uri = _parameter(compiled, nodes.SCHEMA_GEN, "schema_file")
    assert uri == compiled.settings.schema_uri
    assert uri.startswith(compiled.settings.cluster.pipeline_root + "/")
    assert f"/{compiled.settings.schema_digest}/" in uri
    upload = next(line for line in compiled.stdout.splitlines() if line.strip().startswith("gcloud storage cp"))
    assert shlex.split(upload) == ["gcloud", "storage", "cp", str(staged), uri]


def test_the_push_destination_and_data_are_the_cluster_uris(compiled):
    destination = json.loads(_parameter(compiled, nodes.PUSHER, "push_destination"))
    cluster = compiled.settings.cluster
    assert destination["filesystem"]["base_directory"] == f"{cluster.serving}/{compiled.settings.model_name}"
    assert _parameter(compiled, nodes.EXAMPLE_GEN, "input_base") == cluster.data
    assert json.loads(_parameter(compiled, nodes.EXAMPLE_GEN, "input_config"))["splits"][0]["pattern"] == "*.csv"


def test_the_kubeflow_target_says_its_backend_does_not_run_resolvers(compiled):
    assert "does not run resolver tasks" in " ".join(compiled.stdout.split())


def test_here_the_pipeline_keeps_its_own_baseline_and_packages_the_training_module(project):
    local = settings.resolve(config.load_project(project / config.CONFIG_FILE), project)
    here = {node.id: node for node in wiring.create_pipeline(local, None).components}
    strategy = here[nodes.BASELINE_RESOLVER].exec_properties["resolver_class"]
    assert strategy.__name__ == "PreviousBlessedModelStrategy"
    assert here[nodes.TRAINER].exec_properties["module_file"] == str(Path(models.__file__).parent / "training.py")
    assert wiring.MODEL_CODE_DIGEST not in json.loads(here[nodes.TRAINER].exec_properties["custom_config"])
    assert local.beam_args[: len(settings.DEFAULT_BEAM_ARGS)] == settings.DEFAULT_BEAM_ARGS


def test_a_project_file_without_cluster_is_refused_in_one_line_naming_what_to_add(project):
    result = _invoke("compile", "--config", str(project / config.CONFIG_FILE))
    assert result.exit_code == cli.EXIT_BAD_INPUT
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "has no [cluster] section; add one naming the image, pipeline_root, data, serving" in result.output
    assert not (project / "pipeline.json").exists()


@pytest.mark.parametrize(
    "setting, message",
    [
        (
            'pipeline_root = "/srv/pipeline"',
            "[cluster] pipeline_root: Value error, '/srv/pipeline' is not a remote URI",
        ),
        (
            'serving = "file://host/serving"',
            "[cluster] serving: Value error, 'file://host/serving' is not a remote URI",
        ),
        ('project = ""', "[cluster] project: String should have at least 1 character"),
    ],
)
def test_a_cluster_setting_a_cluster_cannot_use_is_refused_naming_the_key(project, setting, message):
    key = setting.split(" = ")[0]
    section = re.sub(rf"^{key} = .*$", setting, documented_cluster_section(), flags=re.M)
    (project / config.CONFIG_FILE).write_text((project / config.CONFIG_FILE).read_text() + "\n" + section)
    with pytest.raises(config.ConfigError) as refused:
        config.load_project(project / config.CONFIG_FILE)
    assert message in str(refused.value)


def test_a_secret_in_the_clusters_beam_args_is_compiled_with_a_warning_naming_it(tmp_path, project):
    section = documented_cluster_section() + 'beam_args = ["--db_password=hunter2", "--max_num_workers=8"]\n'
    project_file = project / config.CONFIG_FILE
    project_file.write_text(project_file.read_text() + "\n" + section)
    spec = tmp_path / "pipeline.json"
    result = _invoke("compile", "--config", str(project_file), "--output", str(spec))
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert "Warning: the spec holds the value of --db_password in clear text" in printed
    assert "hunter2" not in result.output and "max_num_workers" not in printed
    assert "--db_password=hunter2" in spec.read_text()  # what the warning is about


def test_the_pusher_refuses_a_remote_destination_rather_than_a_folder_named_gs():
    with pytest.raises(serving.DeliveryError, match="cannot publish to gs://bucket/serving/penguins"):
        pusher.serving_folder("gs://bucket/serving/penguins")
    assert pusher.serving_folder("/srv/serving/penguins") == serving.ServingFolder(Path("/srv/serving"), "penguins")


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined and comments dropped."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def _pins() -> dict[str, str]:
    return dict(line.split("==") for line in LOCK.read_text().splitlines() if "==" in line)


def test_the_dockerfile_builds_the_image_from_the_lock_with_no_deps_and_installs_the_project():
    steps = _instructions(DOCKERFILE.read_text())
    froms = [args for kind, args in steps if kind == "FROM"]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert re.fullmatch(rf"python:{re.escape(python)}\.\d+-bookworm", froms[0]), froms  # a patch release, glibc 2.36
    beam = _pins()["apache-beam"]
    assert f"--from=apache/beam_python{python}_sdk:{beam} /opt/apache/beam /opt/apache/beam" in [
        args for kind, args in steps if kind == "COPY"
    ]
    assert ("WORKDIR", str(settings.IMAGE_PROJECT_DIR)) in steps
    copied = " ".join(args for kind, args in steps if kind == "COPY")
    for needed in ("requirements.lock", "setup.py", "models", "pipeline"):
        assert needed in copied, needed
    installs = [
        command
        for kind, args in steps
        if kind == "RUN"
        for command in re.split(r"&&|;", args)
        if re.search(r"pip install", command)
    ]
    targets = []
    for command in installs:
        words = shlex.split(command)
        assert "--no-deps" in words, command
        rest = words[words.index("install") + 1 :]
        targets += [rest[i + 1] for i, w in enumerate(rest) if w == "-r"]
        targets += [w for i, w in enumerate(rest) if not w.startswith("-") and (i == 0 or rest[i - 1] != "-r")]
    # Only files of pins taken from the lock, and the project itself: nothing unpinned.
    assert targets == ["build-tools.lock", "requirements.lock", "."], targets
    # build-tools.lock is the lock's own pip, setuptools and wheel, for the packages that ship only sources.
    assert any("grep -E '^(pip|setuptools|wheel)==' requirements.lock > build-tools.lock" in a for _, a in steps)
    assert not any("apt-get install" in args or "apk add" in args for kind, args in steps if kind == "RUN")
    assert steps[-1] == ("ENTRYPOINT", '["/opt/apache/beam/boot"]')
    assert "kfp-pipeline-spec" in _pins()  # what the task containers parse their spec with


def test_the_docker_build_context_holds_only_what_the_dockerfile_copies():
    ignore = [line for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert ignore[0] == "*"
    kept = {line.lstrip("!").rstrip("/") for line in ignore if line.startswith("!")}
    assert kept == {"requirements.lock", "setup.py", "pyproject.toml", "models", "pipeline"}
