"""Manual approval: a run holds a blessed, servable model; `tfxp approve` pushes it, `tfxp reject` bars it, and
each refusal leaves the serving folder and the store as they were. Three runs are shared read-only; a test that
decides works on its own copy of the output folder; one test records a held model by hand instead."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2

from pipeline import approval, lineage, nodes, registry, serving
from tests import mlmd_records
from tests.conftest import CliResult, run_tfxp

MODEL = "penguins"


@dataclasses.dataclass
class Held:
    """The project after three manual-approval runs: two held models and one the gate refused."""

    config: Path
    output: Path
    first: CliResult
    older: int  # held
    newer: int  # held, trained later
    unblessed: int  # missed the gate: never held


@pytest.fixture(scope="module")
def held(tmp_path_factory) -> Held:
    project = tmp_path_factory.mktemp("approval")
    for part in ("tfxp.toml", "schema", "data"):
        source = Path(__file__).resolve().parent.parent / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / part)
    config = project / "tfxp.toml"
    config.write_text(config.read_text().replace('approval = "auto"', 'approval = "manual"'))
    output = project / "outputs"
    args = ("--config", str(config), "--output", str(output), "--no-tuner")
    first = run_tfxp("run", *args)
    assert first.code == 5, first.stdout + first.stderr
    # Only the Trainer and what follows it run again: another model each time.
    assert run_tfxp("run", *args, "--train-steps", "150").code == 5  # held too
    assert run_tfxp("run", *args, "--train-steps", "120", "--threshold", "1.01").code == 3
    store = lineage.open_store(output)
    ids = [lineage.run_executions(store, r)[nodes.TRAINER].output("model").id for r in lineage.pipeline_runs(store)]
    return Held(config, output, first, older=ids[0], newer=ids[1], unblessed=ids[2])


def _copy(held: Held, tmp_path: Path) -> tuple[str, ...]:
    """CLI arguments for a private copy of the held runs' output folder."""
    output = tmp_path / "outputs"
    shutil.copytree(held.output, output)
    return ("--config", str(held.config), "--output", str(output))


def _folder(args: tuple[str, ...]) -> serving.ServingFolder:
    return serving.ServingFolder(Path(args[-1]) / "serving", MODEL)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _refused(args: tuple[str, ...], *command: str) -> str:
    """Runs a command that must be refused: exit 2, one message, nothing pushed; returns the message."""
    before = _folder(args).versions()
    result = run_tfxp(*command, *args)
    assert result.code == 2, (command, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.startswith("Error: ")
    assert _folder(args).versions() == before
    return _flat(result.stderr)


@pytest.mark.pipeline
def test_a_manual_run_holds_the_model_and_says_how_to_decide(held):
    out = _flat(held.first.stdout)
    assert f"Awaiting approval: model {held.older} is blessed and servable" in out
    assert f"tfxp approve {held.older} --note TEXT" in out and f"tfxp reject {held.older} --note TEXT" in out
    assert not (held.output / "serving" / MODEL).exists()


@pytest.mark.pipeline
def test_pending_lists_the_held_models_only(held):
    listed = _flat(run_tfxp("pending", "--config", str(held.config), "--output", str(held.output)).stdout)
    assert f" {held.older} " in listed and f" {held.newer} " in listed and f" {held.unblessed} " not in listed
    assert "accuracy" in listed and "Nothing serves yet." in listed


@pytest.mark.pipeline
def test_approve_pushes_the_checked_model_and_records_who_when_and_why(held, tmp_path):
    args = _copy(held, tmp_path)
    approved = run_tfxp("approve", str(held.newer), "--note", "better on Dream", *args)
    assert approved.code == 0, approved.stderr
    folder = _folder(args)
    [version] = folder.versions()
    assert f"Approved model {held.newer}: pushed to {folder.version_dir(version)}" in _flat(approved.stdout)
    assert (folder.version_dir(version) / "assets.extra" / "tf_serving_warmup_requests").is_file()
    card = (folder.version_dir(version) / "assets.extra" / "model_card.md").read_text()
    assert "Approved by **" in card and "better on Dream" in card

    store = lineage.open_store(Path(args[-1]))
    [decision] = store.get_executions_by_type(registry.APPROVAL)
    assert decision.properties["decision"].string_value == "approved"
    assert decision.properties["note"].string_value == "better on Dream" and decision.properties["user"].string_value
    events = store.get_events_by_execution_ids([decision.id])
    linked = {e.path.steps[0].key: store.get_artifacts_by_id([e.artifact_id])[0] for e in events}
    assert linked["model"].id == held.newer
    assert lineage.custom_property(linked["pushed_model"], "pushed_version") == str(version)
    assert lineage.custom_property(linked["model_blessing"], "blessed") == 1
    assert lineage.custom_property(linked["infra_blessing"], "blessed") == 1
    listed = _flat(run_tfxp("models", *args).stdout)
    assert str(version) in listed and "complete" in listed
    assert "No model is awaiting approval." not in run_tfxp("pending", *args).stdout  # the older one still waits


@pytest.mark.pipeline
def test_approve_refuses_an_unknown_id(held, tmp_path):
    args = _copy(held, tmp_path)
    assert "there is no model 99999" in _refused(args, "approve", "99999")
    assert "there is no model 1;" in _refused(args, "approve", "1")  # an artifact, but ExampleGen's examples


@pytest.mark.pipeline
def test_approve_refuses_a_model_that_was_not_blessed(held, tmp_path):
    args = _copy(held, tmp_path)
    assert f"model {held.unblessed} was not blessed" in _refused(args, "approve", str(held.unblessed))


@pytest.mark.pipeline
def test_approve_refuses_a_model_already_approved(held, tmp_path):
    args = _copy(held, tmp_path)
    assert run_tfxp("approve", str(held.newer), *args).code == 0
    assert f"model {held.newer} was already approved by" in _refused(args, "approve", str(held.newer))


@pytest.mark.pipeline
def test_a_rejected_model_can_never_be_approved(held, tmp_path):
    args = _copy(held, tmp_path)
    rejected = run_tfxp("reject", str(held.older), "--note", "superseded", *args)
    assert rejected.code == 0, rejected.stderr
    assert f"model {held.older} was already rejected by" in _refused(args, "approve", str(held.older), "--force")
    assert "already rejected" in _refused(args, "reject", str(held.older), "--note", "again")
    [decision] = lineage.open_store(Path(args[-1])).get_executions_by_type(registry.APPROVAL)
    assert decision.properties["decision"].string_value == "rejected"
    assert decision.properties["note"].string_value == "superseded"


@pytest.mark.pipeline
def test_approve_refuses_a_model_older_than_the_one_serving_unless_forced(held, tmp_path):
    args = _copy(held, tmp_path)
    assert run_tfxp("approve", str(held.newer), *args).code == 0
    message = _refused(args, "approve", str(held.older))
    assert f"model {held.older} is older than model {held.newer}, which serves version" in message
    assert "--force" in message
    forced = run_tfxp("approve", str(held.older), "--force", "--note", "newer one mislabels Gentoo", *args)
    assert forced.code == 0, forced.stderr
    assert len(_folder(args).versions()) == 2


@pytest.mark.pipeline
def test_approve_refuses_a_model_whose_files_changed_since_they_were_checked(held, tmp_path):
    args = _copy(held, tmp_path)
    store = lineage.open_store(held.output)
    stamped = Path(registry.held_models(store)[held.newer].infra_blessing.uri) / "stamped_model" / "saved_model.pb"
    original = stamped.read_bytes()
    try:
        stamped.write_bytes(original + b"\0")  # the files someone approves must be the files that were checked
        assert "changed since it was evaluated" in _refused(args, "approve", str(held.newer))
    finally:
        stamped.write_bytes(original)


def test_an_approved_push_records_the_digest_of_the_version_as_the_pusher_does(tmp_path):
    """A held model recorded by hand, as the Pusher holds one; approving it records the published version's digest,
    which `tfxp models` verifies like any other push."""
    output = tmp_path / "outputs"
    stamped = tmp_path / "infra" / "stamped_model"
    (stamped / serving.VARIABLES).mkdir(parents=True)
    (stamped / serving.SAVED_MODEL).write_bytes(b"graph")
    (stamped / serving.VARIABLES / "variables.index").write_bytes(b"weights")
    output.mkdir()
    store = lineage.open_store(output)
    pipeline_type = store.put_context_type(metadata_store_pb2.ContextType(name=registry.PIPELINE))
    store.put_contexts([metadata_store_pb2.Context(type_id=pipeline_type, name=MODEL)])
    infra = mlmd_records.artifact(
        store,
        "InfraBlessing",
        str(stamped.parent),
        blessed=1,
        **{serving.MODEL_DIGEST: serving.saved_model_digest(stamped)},
    )
    inputs = {"model": mlmd_records.artifact(store, registry.MODEL), "infra_blessing": infra}
    inputs["model_blessing"] = mlmd_records.artifact(store, "ModelBlessing", blessed=1)
    held = mlmd_records.artifact(store, registry.PUSHED_MODEL, pushed=0, awaiting_approval=1)
    run = mlmd_records.new_run(store, "run-1")
    mlmd_records.execute(store, run, nodes.PUSHER, "COMPLETE", inputs, {"pushed_model": held})
    [model_id] = registry.held_models(store)

    folder = serving.ServingFolder(output / "serving", MODEL)
    push = approval.approve(store, MODEL, folder, model_id, "checked by hand", keep_versions=5)
    [pushed] = [a for a in store.get_artifacts_by_type(registry.PUSHED_MODEL) if lineage.custom_property(a, "pushed")]
    assert lineage.custom_property(pushed, serving.VERSION_DIGEST) == push.digest
    assert push.digest == serving.saved_model_digest(folder.version_dir(push.version))
    listed = run_tfxp("models", "--output", str(output))
    assert listed.code == 0 and registry.CHANGED_ON_DISK not in listed.stdout, listed.stdout + listed.stderr
