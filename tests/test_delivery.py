"""Delivery through the whole pipeline: the servability check, warmup, models.config, `tfxp models` and `tfxp rollback`."""

import dataclasses
import re
from pathlib import Path

import pytest
import tensorflow as tf
from google.protobuf import text_format
from ml_metadata.proto import metadata_store_pb2
from rich.console import Console
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from models import evaluation
from pipeline import cli, config, lineage, nodes, registry, report, serving
from pipeline import settings as settings_module
from tests import mlmd_records
from tests.conftest import FAST_RUN_ARGS, run_tfxp
from tests.datasets import PROJECT_ROOT

MODEL = "penguins"


def _folder(output: Path) -> serving.ServingFolder:
    return serving.ServingFolder(output / "serving", MODEL)


def _first_run(output: Path) -> dict[str, lineage.NodeExecution]:
    store = lineage.open_store(output)
    return lineage.run_executions(store, lineage.pipeline_runs(store)[0])


def _set(config: Path, default: str, value: str) -> None:
    """Changes one [delivery] setting of the default project file."""
    text = config.read_text()
    assert default in text
    config.write_text(text.replace(default, value))


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.pipeline
def test_the_servability_check_blesses_the_model_and_the_pusher_takes_its_stamped_copy(two_runs):
    run = _first_run(two_runs.output)
    infra = run[nodes.SERVABILITY_CHECK].output("blessing")
    assert lineage.custom_property(infra, "blessed") == 1
    assert lineage.custom_property(infra, "has_model") == 1
    for figure in registry.FIGURES:
        assert lineage.custom_property(infra, figure) > 0, figure
    assert run[nodes.SERVABILITY_CHECK].inputs["model"][0].id == run[nodes.TRAINER].output("model").id
    assert run[nodes.PUSHER].inputs["infra_blessing"][0].id == infra.id
    assert run[nodes.SERVABILITY_CHECK].execution.id > run[nodes.EVALUATOR].execution.id  # the last check
    out = _flat(two_runs.first.stdout)
    assert "Servable in a clean TensorFlow process: loads in" in out and "ms for 64" in out
    assert "with TF Serving warmup requests" in out


@pytest.mark.pipeline
def test_every_warmup_request_replays_against_the_pushed_model(two_runs):
    [version] = _folder(two_runs.output).versions()
    model_dir = _folder(two_runs.output).version_dir(version)
    predict = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    sizes = []
    for record in tf.data.TFRecordDataset(str(model_dir / "assets.extra" / "tf_serving_warmup_requests")):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        assert request.model_spec.name == MODEL
        serialized = tf.make_ndarray(request.inputs["examples"])
        rows = [tf.train.Example.FromString(s) for s in serialized]
        assert all("species" not in r.features.feature and "island" in r.features.feature for r in rows)
        outputs = predict(examples=tf.constant(serialized))
        assert outputs["probabilities"].shape == (len(rows), 3)
        assert tf.reduce_all(tf.math.is_finite(outputs["probabilities"]))
        sizes.append(len(rows))
    assert sorted(set(sizes)) == [1, 64]


@pytest.mark.pipeline
def test_models_config_serves_the_latest_version(two_runs):
    folder = _folder(two_runs.output)
    config = text_format.Parse(folder.config_path.read_text(), model_server_config_pb2.ModelServerConfig())
    [entry] = config.model_config_list.config
    assert entry.name == MODEL and entry.model_platform == "tensorflow"
    assert entry.base_path == str(folder.model_dir)
    assert entry.model_version_policy.latest.num_versions == 1
    assert folder.served() == folder.versions()[-1]


@pytest.mark.pipeline
def test_tfxp_models_lists_the_pushed_version(two_runs):
    result = run_tfxp("models", "--output", str(two_runs.output))
    assert result.code == 0, result.stderr
    [version] = _folder(two_runs.output).versions()
    out = _flat(result.stdout)
    assert str(version) in out and "accuracy" in out and re.search(r" [01]\.\d{4} ", out) and "no baseline" in out
    assert "load " in out and "1 row" in out and "64 rows" in out
    lines = result.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if str(version) in line)
    assert "complete" in lines[row] and "serving" in lines[row + 1]  # the on-disk cell, two lines high
    assert f"TF Serving serves version {version} (the latest)" in out


@pytest.mark.pipeline
def test_a_rollback_pins_a_version_retention_keeps_it_and_clear_undoes_it(project):
    config = project / "tfxp.toml"
    _set(config, "keep_versions = 5", "keep_versions = 1")
    _set(config, "max_regression = 0.02", "max_regression = 1.0")  # about rollback, not the gate: any retrain serves
    output = project / "outputs"
    args = ("--config", str(config), "--output", str(output))
    first = run_tfxp("run", *args, *FAST_RUN_ARGS)
    assert first.code == 0, first.stderr
    folder = _folder(output)
    [v1] = folder.versions()

    alone = run_tfxp("rollback", *args)
    assert alone.code == 2 and f"no complete version older than {v1}" in alone.stderr

    pin = run_tfxp("rollback", *args, "--to", str(v1), "--reason", "hold v1 while we retrain")
    assert pin.code == 0, pin.stderr
    assert folder.pinned() == v1

    # Training is seeded, so a retrain needs a change to make different files (an identical one is not re-pushed).
    second = run_tfxp("run", *args, *FAST_RUN_ARGS, "--epochs", "20")
    assert second.code == 0, second.stderr
    v2 = folder.versions()[-1]
    assert folder.versions() == [v1, v2]  # keep_versions = 1, but v1 is pinned
    assert folder.served() == v1
    assert f"TF Serving serves version {v1} (pinned" in _flat(second.stdout)

    listed = _flat(run_tfxp("models", *args).stdout)
    assert f"TF Serving serves version {v1} (pinned" in listed
    assert "hold v1 while we retrain" in listed

    clear = run_tfxp("rollback", *args, "--clear", "--reason", "v2 looks fine")
    assert clear.code == 0, clear.stderr
    assert f"Serving the latest version again: {v2} (was {v1})" in _flat(clear.stdout)
    assert folder.pinned() is None and folder.served() == v2

    back = run_tfxp("rollback", *args, "--reason", "v2 misbehaves")
    assert back.code == 0, back.stderr
    assert folder.served() == v1

    store = lineage.open_store(output)
    history = registry.rollbacks(store)
    assert [(r.action, r.from_version, r.to_version, r.reason) for r in history] == [
        ("pin", v2, v1, "v2 misbehaves"),
        ("clear", v1, v2, "v2 looks fine"),
        ("pin", v1, v1, "hold v1 while we retrain"),
    ]
    assert all(r.user for r in history)
    [latest] = [
        e
        for e in store.get_executions_by_type(registry.ROLLBACK)
        if e.properties["reason"].string_value == "v2 misbehaves"
    ]
    linked = {
        (event.type, store.get_artifacts_by_id([event.artifact_id])[0].custom_properties["pushed_version"].string_value)
        for event in store.get_events_by_execution_ids([latest.id])
    }
    assert linked == {(metadata_store_pb2.Event.INPUT, str(v2)), (metadata_store_pb2.Event.OUTPUT, str(v1))}

    before = folder.config_path.read_bytes()
    missing = run_tfxp("rollback", *args, "--to", "123")
    assert missing.code == 2 and "there is no version 123" in missing.stderr and "nothing changed" in missing.stderr
    (folder.version_dir(v2) / "saved_model.pb").unlink()
    corrupt = run_tfxp("rollback", *args, "--to", str(v2))
    assert corrupt.code == 2 and f"version {v2}" in corrupt.stderr and "corrupt" in corrupt.stderr
    assert folder.config_path.read_bytes() == before
    assert "Traceback" not in missing.stderr + corrupt.stderr


def _row(stdout: str, version: int) -> str:
    """The first line of a version's row in `tfxp models`' table."""
    return next(line for line in stdout.splitlines() if line.lstrip().startswith(str(version)))


def test_tfxp_models_flags_a_version_changed_on_disk_and_exits_4_when_it_serves(tmp_path):
    """Versions recorded by hand, as the Pusher records them: each with the digest of its files."""
    output = tmp_path / "outputs"
    output.mkdir()
    folder = _folder(output)
    store = lineage.open_store(output)
    run = mlmd_records.new_run(store, "run-1")
    older, newer = 1795000000, 1795000100
    for version in (older, newer):
        (folder.version_dir(version) / "variables").mkdir(parents=True)
        (folder.version_dir(version) / serving.SAVED_MODEL).write_bytes(b"graph %d" % version)
        (folder.version_dir(version) / "variables" / "variables.data-00000-of-00001").write_bytes(b"weights")
        digest = serving.saved_model_digest(folder.version_dir(version))
        pushed = mlmd_records.artifact(
            store, registry.PUSHED_MODEL, pushed=1, pushed_version=str(version), **{serving.VERSION_DIGEST: digest}
        )
        model = mlmd_records.artifact(store, registry.MODEL)
        mlmd_records.execute(store, run, nodes.PUSHER, "COMPLETE", {"model": model}, {"pushed_model": pushed})

    untouched = run_tfxp("models", "--output", str(output))
    assert untouched.code == 0, untouched.stderr
    assert "complete" in _row(untouched.stdout, older) and "changed" not in untouched.stdout

    (folder.version_dir(older) / "variables" / "variables.data-00000-of-00001").write_bytes(b"weightz")  # same size
    older_changed = run_tfxp("models", "--output", str(output))
    assert older_changed.code == 0, older_changed.stderr  # what serves is still what was pushed
    assert registry.CHANGED_ON_DISK in _row(older_changed.stdout, older)
    assert "complete" in _row(older_changed.stdout, newer)
    assert f"Changed on disk: version {older}: the files differ from those pushed" in _flat(older_changed.stdout)

    (folder.version_dir(newer) / "assets.extra").mkdir()
    (folder.version_dir(newer) / "assets.extra" / "added.txt").write_text("a file the push never wrote")
    serving_changed = run_tfxp("models", "--output", str(output))
    assert serving_changed.code == cli.EXIT_NOT_SERVABLE, serving_changed.stderr
    assert registry.CHANGED_ON_DISK in _row(serving_changed.stdout, newer)
    assert f"Changed on disk: version {newer}, {older}:" in _flat(serving_changed.stdout)  # newest first, as listed


@pytest.mark.pipeline
def test_every_check_keeps_the_digest_of_the_model_and_tfxp_models_verifies_the_pushed_one(two_runs):
    """The Evaluator's blessing holds the digest of the model it evaluated, the servability check checked those
    files, and the Pusher recorded the published version's digest, model card included, which `tfxp models` finds
    unchanged."""
    run = _first_run(two_runs.output)
    trained = Path(run[nodes.TRAINER].output("model").uri) / "Format-Serving"
    evaluated = lineage.custom_property(run[nodes.EVALUATOR].output("blessing"), serving.MODEL_DIGEST)
    assert evaluated == serving.saved_model_digest(trained)
    assert lineage.custom_property(run[nodes.SERVABILITY_CHECK].output("blessing"), "blessed") == 1
    [version] = _folder(two_runs.output).versions()
    published = _folder(two_runs.output).version_dir(version)
    assert (published / "assets.extra" / "model_card.md").is_file()
    recorded = lineage.custom_property(run[nodes.PUSHER].output("pushed_model"), serving.VERSION_DIGEST)
    assert recorded == serving.saved_model_digest(published)

    listed = run_tfxp("models", "--output", str(two_runs.output))
    assert listed.code == 0 and "complete" in _row(listed.stdout, version), listed.stdout + listed.stderr
    # An edit after the push is flagged: test_tfxp_models_flags_a_version_changed_on_disk_and_exits_4_when_it_serves.


def test_models_and_rollback_without_runs_say_what_to_do(tmp_path):
    for command in ("models", "rollback"):
        result = run_tfxp(command, "--output", str(tmp_path))
        assert result.code == 2
        assert result.stderr.strip() == f"Error: no runs in {tmp_path}; run `tfxp run` first"


def test_rollback_refuses_to_and_clear_together(tmp_path):
    result = run_tfxp("rollback", "--output", str(tmp_path), "--to", "1", "--clear")
    assert result.code == 2 and "--to and --clear" in result.stderr


@pytest.mark.pipeline
def test_a_run_removes_an_unfinished_push_and_says_so(finished_run):
    leftover = _folder(finished_run).model_dir / f"{serving.PARTIAL}1795000000"
    (leftover / "variables").mkdir(parents=True)  # what a push killed mid-copy leaves
    result = run_tfxp("run", "--output", str(finished_run), *FAST_RUN_ARGS)
    assert result.code == 0, result.stderr
    assert f"Removed {leftover.name}, an unfinished push an interrupted run left in" in _flat(result.stdout)
    assert not leftover.exists()
    assert len(_folder(finished_run).versions()) == 1  # and nothing was pushed twice


def test_a_model_tf_serving_cannot_call_ends_the_run_with_its_own_exit_code_and_reason():
    summary = report.RunReport(
        slices={"Overall": {"example_count": 104.0, "sparse_categorical_accuracy": 0.99}},
        changes={},
        blessed=True,
        reasons=[],
        pushed=False,
        serving_model_dir=None,
        trained_on=[],
        states={nodes.PUSHER: "COMPLETE"},
        servable=False,
        servability="fails at call: InvalidArgumentError: ValueError: Could not find callback with key=pyfunc_0",
        recovered=[],
        removed_versions=[],
        served_version=None,
        pinned=False,
        model_id=9,
        awaiting_approval=False,
        reused=False,
    )
    console = Console(record=True, width=200)
    report.render(
        summary, settings_module.resolve(config.load_project(PROJECT_ROOT / "tfxp.toml"), PROJECT_ROOT), console
    )
    out = _flat(console.export_text())
    assert "Not servable: TF Serving would fail on this model; it fails at call: InvalidArgumentError" in out
    assert "Not pushed;" in out and "untouched" in out
    assert cli._exit_code(summary) == cli.EXIT_NOT_SERVABLE == 4
    assert cli._exit_code(dataclasses.replace(summary, servable=True)) == cli.EXIT_OK
    assert cli._exit_code(dataclasses.replace(summary, servable=True, blessed=False)) == cli.EXIT_NOT_BLESSED
    held = dataclasses.replace(summary, servable=True, awaiting_approval=True)
    assert cli._exit_code(held) == cli.EXIT_AWAITING_APPROVAL == 5


@pytest.mark.pipeline
def test_the_pushed_version_carries_a_model_card_with_tfmas_numbers(two_runs):
    import tensorflow_model_analysis as tfma

    [version] = _folder(two_runs.output).versions()
    extra = _folder(two_runs.output).version_dir(version) / "assets.extra"
    card = (extra / "model_card.md").read_text()
    page = (extra / "model_card.html").read_text()
    assert f"# Model card: {MODEL}, version {version}" in card
    assert "multiclass on `species` (classes: Adelie, Chinstrap, Gentoo)" in card
    assert "Tell the species of an adult penguin" in card and "Palmer Station" in card  # tfxp.toml's [card]
    assert "| Span 0: penguins.csv" in card or "Span 0: penguins.csv" in card
    assert "Automatic" in card and "Rows per split: train " in card and "| island | vocabulary |" in card
    run = _first_run(two_runs.output)
    shown = {}
    for metrics in tfma.load_metrics(run[nodes.EVALUATOR].output("evaluation").uri):
        name = report.slice_name(metrics.slice_key)
        values = {kv.key.name: kv.value.double_value.value for kv in metrics.metric_keys_and_values}
        row = next(line for line in card.splitlines() if line.startswith(f"| {name} "))
        assert f"| {int(values['example_count'])} | {values['sparse_categorical_accuracy']:.4f} |" in row, row
        shown[name] = {"examples": values["example_count"], "accuracy": values["sparse_categorical_accuracy"]}
    worst = evaluation.worst_slice(shown, "accuracy", "examples", True, 30)  # the run summary's rule
    if worst is None:
        assert "(worst)" not in card
    else:
        assert f"| {worst} **(worst)** |" in card and card.count("(worst)") == 1
    assert "<table>" in page and "island=Biscoe" in page
    assert not re.search(r"(src|href)=\"?https?:", page)  # opens offline
