"""Corrupt or missing state: each case gets one clear line or a clean recovery, never a traceback or a bad push."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import config, integrity, lineage, nodes, rerun, settings
from pipeline.serving import ServingFolder
from tests.conftest import FAST_RUN_ARGS, cold_run, run_tfxp
from tests.datasets import PROJECT_ROOT

pytestmark = pytest.mark.faults
MODEL = "penguins"
COMMANDS = (
    ("run", *FAST_RUN_ARGS),
    ("runs",),
    ("models",),
    ("status",),
    ("pending",),
    ("lineage",),
    ("report",),
    ("rollback", "--clear"),
    ("approve", "1"),
    ("reject", "1", "--note", "no"),
)


def _states(output: Path) -> dict[str, str]:
    return {node: e.state for node, e in lineage.latest_run_executions(lineage.open_store(output)).items()}


def _versions(output: Path) -> list[int]:
    return ServingFolder(output / "serving", MODEL).versions()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_metadata_file_that_is_not_a_database_gets_one_line_from_every_command(tmp_path, command):
    output = tmp_path / "outputs"
    output.mkdir()
    (output / settings.METADATA_FILE).write_text("not a database, whatever the name says\n")
    result = run_tfxp(command[0], "--output", str(output), *command[1:])
    assert result.code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(
        f"Error: {output / settings.METADATA_FILE} is not an ML Metadata store (file is not a database)"
    )
    assert not (output / "serving").exists()


def _project_settings(project: Path) -> settings.Settings:
    return settings.resolve(config.load_project(project / config.CONFIG_FILE), project)


@pytest.mark.parametrize(
    "text", ["}{ not json", "[1, 2, 3]", '{"fingerprint": 7}', json.dumps({"fingerprint": "x", "finished_at": "y"})]
)
def test_a_garbage_unchanged_run_record_is_ignored(project, text):
    record = project / "outputs" / rerun.RECORD_FILE
    record.parent.mkdir(parents=True)
    record.write_text(text)
    assert rerun.unchanged_since(_project_settings(project)) is None


def test_a_record_of_a_store_since_deleted_is_ignored(project):
    metadata = project / "outputs" / settings.METADATA_FILE
    metadata.parent.mkdir()
    with sqlite3.connect(metadata) as db:  # the table MLMD's sqlite schema keeps executions in
        db.execute("CREATE TABLE Execution (id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO Execution DEFAULT VALUES")
    rerun.record(_project_settings(project), {"blessed": True}, "then")
    assert rerun.unchanged_since(_project_settings(project)) is not None
    metadata.unlink()
    assert rerun.unchanged_since(_project_settings(project)) is None


@pytest.mark.pipeline
def test_a_deleted_artifact_folder_and_a_truncated_tfrecord_are_made_again(finished_run):
    output = finished_run
    versions = _versions(output)
    runs = lineage.latest_run_executions(lineage.open_store(output))
    examples = runs[nodes.EXAMPLE_GEN].output("examples")
    statistics = runs[nodes.STATISTICS_GEN].output("statistics")
    [train] = Path(examples.uri, "Split-train").iterdir()
    os.truncate(train, train.stat().st_size // 2)  # a TFRecord cut short, as a full disk or a bad copy leaves it
    for path in sorted(Path(statistics.uri).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    os.rmdir(statistics.uri)

    result = run_tfxp("run", "--output", str(output), *FAST_RUN_ARGS)
    assert result.code == 0, result.stdout + result.stderr
    assert f"Damaged: Examples #{examples.id} ({examples.uri}): Split-train/{train.name} is " in result.stdout
    assert f"Damaged: ExampleStatistics #{statistics.id} ({statistics.uri}): its folder is gone." in result.stdout
    states = _states(output)
    assert states[nodes.EXAMPLE_GEN] == states[nodes.STATISTICS_GEN] == "COMPLETE", states
    store = lineage.open_store(output)
    assert {a.state for a in store.get_artifacts_by_id([examples.id, statistics.id])} == {4}  # DELETED
    [check] = store.get_executions_by_type(integrity.CHECK)
    assert {e.artifact_id for e in store.get_events_by_execution_ids([check.id])} == {examples.id, statistics.id}
    # Made again from the same data, the model is the one already serving: nothing new reaches serving.
    assert _versions(output) == versions
    assert "Already in the serving folder with identical files" in result.stdout


@pytest.mark.pipeline
def test_a_removed_baseline_model_is_not_compared_with_and_nothing_new_is_pushed(finished_run):
    output = finished_run
    second = cold_run(output, "--train-steps", "150")  # a second model, compared with the first
    assert "Against the last blessed model" in second.stdout
    versions = _versions(output)
    runs = lineage.latest_run_executions(lineage.open_store(output))
    [baseline] = runs[nodes.EVALUATOR].inputs["baseline_model"]
    os.rename(baseline.uri, f"{baseline.uri}-moved-away")

    result = run_tfxp("run", "--output", str(output), *FAST_RUN_ARGS, "--train-steps", "150")
    assert result.code == 0, result.stdout + result.stderr
    assert f"Damaged: Model #{baseline.id} ({baseline.uri}): its folder is gone." in result.stdout
    states = _states(output)
    assert states[nodes.TRAINER] == "CACHED" and states[nodes.EVALUATOR] == "COMPLETE", states
    evaluator = lineage.latest_run_executions(lineage.open_store(output))[nodes.EVALUATOR]
    assert evaluator.inputs.get("baseline_model", []) == []
    assert _versions(output) == versions


@pytest.mark.pipeline
def test_a_full_disk_fails_the_run_in_one_line_and_the_next_run_resumes(tmp_path):
    """Simulated with RLIMIT_FSIZE (no root needed): writing a file past 400 KB fails with EFBIG, as the
    Trainer's 500 KB saved_model.pb does, while every earlier component's files fit."""
    output = tmp_path / "outputs"
    limit = 400_000

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--output", str(output), *FAST_RUN_ARGS],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=small_disk,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert full.returncode == 1, full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    assert "Error: Trainer failed: OutOfRangeError: " in full.stderr and "File too large" in full.stderr, full.stderr
    assert not (output / "serving").exists()
    assert not (output / rerun.RECORD_FILE).exists()

    resumed = run_tfxp("run", "--output", str(output), *FAST_RUN_ARGS)
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    states = _states(output)
    assert states[nodes.TRANSFORM] == "CACHED" and states[nodes.TRAINER] == "COMPLETE"
    assert len(_versions(output)) == 1
