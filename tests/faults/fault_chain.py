"""Crash or kill every component, and the push, then rerun unchanged: the run resumes and pushes once.

One chain per fault kind (test_raise_everywhere.py, test_kill_everywhere.py, one file each so two
test workers run them side by side), in one output folder: the run that faults at place N is also the rerun of the
fault at place N-1. So each rerun shows it reuses every component finished before the fault and
re-executes the one that failed; the last run, with no fault, finishes and pushes exactly once. A
poller watches the serving folder the whole time, as TF Serving would, for a torn version.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from pipeline import faults, lineage, nodes
from pipeline.rerun import RECORD_FILE
from pipeline.serving import ServingFolder
from tests.conftest import FULL_RUN_ARGS, run_tfxp

# Every component of the default DAG in the order LocalDagRunner runs them, with the push's midpoint
# (`push-copy`: the version copied into its hidden folder, not yet renamed into place) before the
# Pusher's own place (the version published, ML Metadata not yet told).
PLACES = (
    nodes.EXAMPLE_GEN,
    nodes.SCHEMA_GEN,
    nodes.STATISTICS_GEN,
    nodes.EXAMPLE_VALIDATOR,
    nodes.ANOMALIES_GATE,
    nodes.TRANSFORM,
    nodes.TUNER,
    nodes.TRAINER,
    nodes.EVALUATOR,
    nodes.MODEL_CARD_GENERATOR,
    nodes.SERVABILITY_CHECK,
    faults.PUSH_COPY,
    nodes.PUSHER,
)
MODEL = "penguins"
SUCCESSFUL = {"COMPLETE", "CACHED"}


def _node(place: str) -> str:
    return nodes.PUSHER if place == faults.PUSH_COPY else place


class TornVersionPoller(threading.Thread):
    """Lists the model's serving folder every couple of milliseconds, as TF Serving polls it, and
    keeps every numeric version folder it ever saw without a whole SavedModel."""

    def __init__(self, model_dir: Path):
        super().__init__(daemon=True)
        self.model_dir, self.torn, self.polls = model_dir, set(), 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.002):
            self.polls += 1
            try:
                names = os.listdir(self.model_dir)
            except FileNotFoundError:
                continue
            for name in (n for n in names if n.isdigit()):
                folder = self.model_dir / name
                whole = (folder / "saved_model.pb").is_file() and (folder / "variables").is_dir()
                if not whole and folder.is_dir():  # gone since the listing means renamed away whole
                    self.torn.add(name)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _integrity(output: Path) -> str:
    """`PRAGMA integrity_check` on the store, as the next run would open it (rolling back a hot journal)."""
    connection = sqlite3.connect(output / "metadata.sqlite")
    try:
        return "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
    finally:
        connection.close()


def _states(output: Path) -> dict[str, str]:
    """Each component's state in the newest run."""
    return {node: e.state for node, e in lineage.latest_run_executions(lineage.open_store(output)).items()}


def _consumed_from_unfinished(output: Path) -> list[str]:
    """Artifacts an unfinished (failed or killed) execution wrote that any execution took as input."""
    store = lineage.open_store(output)
    executions = {e.id: e for e in store.get_executions()}
    events = store.get_events_by_execution_ids(list(executions))
    unfinished = {
        e.artifact_id
        for e in events
        if e.type in lineage.OUTPUT_EVENTS
        and lineage.NodeExecution("", executions[e.execution_id], {}, {}).state not in SUCCESSFUL
    }
    return [
        f"artifact {e.artifact_id} -> execution {e.execution_id}"
        for e in events
        if e.type in lineage.INPUT_EVENTS and e.artifact_id in unfinished
    ]


def _pushed_versions(output: Path) -> set[str]:
    """The versions the PushedModel artifacts of finished Pushers name."""
    store = lineage.open_store(output)
    return {
        lineage.custom_property(a, "pushed_version")
        for a in store.get_artifacts_by_type("PushedModel")
        if lineage.custom_property(a, "pushed")
    }


def every_place_resumes_and_the_model_is_pushed_once(output: Path, fault: str) -> None:
    """Runs the chain for `fault` into `output`, asserting after every run and at the end."""
    folder = ServingFolder(output / "serving", MODEL)
    poller = TornVersionPoller(folder.model_dir)
    poller.start()
    matrix = []
    try:
        for index, place in enumerate(PLACES):
            result = run_tfxp("run", "--output", str(output), *FULL_RUN_ARGS, env={faults.ENV: f"{place}:{fault}"})
            seen = f"{place}:{fault}\n{result.stdout}\n{result.stderr}"
            if fault == "raise":
                assert result.code == 1, seen
                assert f"Error: {_node(place)} failed: InjectedFault: fault injected at {place}" in result.stderr, seen
            else:
                assert result.code == -9, seen  # SIGKILL: no message, no clean-up, no report
            assert _integrity(output) == "ok", seen
            assert not (output / RECORD_FILE).exists(), f"{seen}\nan unfinished run wrote the unchanged-run record"

            states = _states(output)
            assert states[_node(place)] == ("FAILED" if fault == "raise" else "RUNNING"), f"{seen}\n{states}"
            reused = [_node(p) for p in PLACES[: max(index - 1, 0)] if _node(p) != _node(place)]
            assert all(states[n] == "CACHED" for n in reused), f"{seen}\nnot reused: {states}"
            if index and _node(PLACES[index - 1]) != _node(place):
                resumed = states[_node(PLACES[index - 1])]
                assert resumed == "COMPLETE", f"{seen}\nthe component that failed last run: {resumed}"
            assert _consumed_from_unfinished(output) == [], seen
            matrix.append(place)

        final = run_tfxp("run", "--output", str(output), *FULL_RUN_ARGS)
        assert final.code == 0, f"{final.stdout}\n{final.stderr}"
        states = _states(output)
        assert states[nodes.PUSHER] == "COMPLETE"
        assert {n: s for n, s in states.items() if n != nodes.PUSHER and n in map(_node, PLACES)} == {
            n: "CACHED" for n in map(_node, PLACES[:-2])
        }
        assert (output / RECORD_FILE).is_file()
        again = run_tfxp("run", "--output", str(output), *FULL_RUN_ARGS)
        assert again.code == 0 and "Nothing changed since the run" in again.stdout, again.stdout
    finally:
        poller.stop()

    assert poller.polls > 1000  # it really watched
    assert poller.torn == set()
    versions = folder.versions()
    assert len(versions) == 1, versions
    assert _pushed_versions(output) == {str(versions[0])}
    assert [p.name for p in folder.model_dir.iterdir() if not p.name.isdigit()] == []  # no partial push left
    assert _integrity(output) == "ok"
    assert _consumed_from_unfinished(output) == []
    print(json.dumps({"fault": fault, "resumed": matrix, "versions": versions, "polls": poller.polls}))
