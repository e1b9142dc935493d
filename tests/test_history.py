"""Past runs read back from ML Metadata: outcomes from hand-recorded runs in a real store, and one real run."""

from __future__ import annotations

import datetime

import pytest

from pipeline import history, lineage, nodes, registry, serving
from tests import mlmd_records
from tests.conftest import run_tfxp

ALL_PASSED = {  # node → output key → (artifact type, custom properties): a run that pushed
    nodes.EXAMPLE_GEN: {"examples": ("Examples", {"span": 3})},
    nodes.ANOMALIES_GATE: {},
    nodes.DRIFT_GATE: {},
    nodes.TRAINER: {"model": ("Model", {})},
    nodes.BASELINE_RESOLVER: {},
    nodes.EVALUATOR: {"blessing": ("ModelBlessing", {"blessed": 1})},
    nodes.SERVABILITY_CHECK: {"blessing": ("InfraBlessing", {"blessed": 1})},
    nodes.PUSHER: {
        "pushed_model": (
            "PushedModel",
            {"pushed": 1, "pushed_version": "1700000000", registry.GATE_METRIC: "accuracy", registry.GATE_VALUE: 0.98},
        )
    },
}


def _record_run(store, number: int, states: dict[str, str], outputs=ALL_PASSED) -> int:
    """Records one run of the nodes in `states`, each writing its `outputs`; returns the run's context id."""
    run = mlmd_records.new_run(store, f"run-{number}")
    for node_id, state in states.items():
        written = {
            key: mlmd_records.artifact(store, type_name, **properties)
            for key, (type_name, properties) in outputs.get(node_id, {}).items()
        }
        mlmd_records.execute(store, run, node_id, state, outputs=written)
    return run.id


def _all(state: str) -> dict[str, str]:
    return {node: state for node in ALL_PASSED}


def _with(changes: dict[str, dict]) -> dict:
    """ALL_PASSED with some outputs' custom properties replaced."""
    outputs = dict(ALL_PASSED)
    for node_id, properties in changes.items():
        [(key, (type_name, _))] = ALL_PASSED[node_id].items()
        outputs[node_id] = {key: (type_name, properties)}
    return outputs


@pytest.fixture
def store(tmp_path):
    return lineage.open_store(tmp_path)


def _summary(store, states, outputs=ALL_PASSED) -> history.RunSummary:
    return history.run_summary(store, _record_run(store, 1, states, outputs))


@pytest.mark.parametrize(
    ("failed", "outcome"),
    [
        (nodes.ANOMALIES_GATE, "stopped by anomalies"),
        (nodes.DRIFT_GATE, "stopped by drift"),
        (nodes.TRAINER, "failed at Trainer"),
    ],
)
def test_a_failed_node_names_what_stopped_the_run(store, failed, outcome):
    states = {}
    for node_id in ALL_PASSED:  # nothing after the failed node runs
        states[node_id] = "FAILED" if node_id == failed else "COMPLETE"
        if node_id == failed:
            break
    summary = _summary(store, states)
    assert summary.outcome == outcome
    assert summary.version is None and summary.gate is None
    assert summary.nodes[failed].state == "FAILED"


def test_an_execution_left_running_is_where_the_run_was_interrupted(store):
    summary = _summary(store, {nodes.EXAMPLE_GEN: "COMPLETE", nodes.TRAINER: "RUNNING"})
    assert summary.outcome == "interrupted at Trainer"
    assert summary.span == 3


@pytest.mark.parametrize(
    ("changes", "outcome", "version"),
    [
        ({}, "pushed", 1700000000),
        ({nodes.PUSHER: {"pushed": 1, "pushed_version": "1600000000", "reused": 1}}, "already serving", 1600000000),
        ({nodes.PUSHER: {"pushed": 0, "awaiting_approval": 1}}, "awaiting approval", None),
        (
            {
                nodes.EVALUATOR: {"blessed": 0},
                nodes.SERVABILITY_CHECK: {"blessed": 0},  # as the check stamps a model the Evaluator did not bless
                nodes.PUSHER: {"pushed": 0},
            },
            "not blessed",
            None,
        ),
        ({nodes.SERVABILITY_CHECK: {"blessed": 0}, nodes.PUSHER: {"pushed": 0}}, "not servable", None),
    ],
)
def test_a_finished_run_says_what_the_push_decided(store, changes, outcome, version):
    summary = _summary(store, _all("COMPLETE"), _with(changes))
    assert summary.outcome == outcome
    assert summary.version == version


def test_a_run_that_reused_the_push_decision_is_cached_though_its_resolver_and_drift_check_ran(store):
    states = {**_all("CACHED"), nodes.BASELINE_RESOLVER: "COMPLETE", nodes.DRIFT_GATE: "COMPLETE"}
    summary = _summary(store, states)
    assert summary.outcome == "cached"
    assert summary.version is None  # the PushedModel is the earlier run's
    assert summary.gate == "accuracy 0.9800, no baseline"


def test_runs_are_listed_newest_first_with_their_times_and_span(store):
    before = datetime.datetime.now().replace(microsecond=0)
    first = _record_run(store, 1, _all("COMPLETE"))
    second = _record_run(store, 2, {nodes.EXAMPLE_GEN: "COMPLETE", nodes.ANOMALIES_GATE: "FAILED"})
    found = history.runs(store)
    assert [r.run_id for r in found] == [second, first]
    newest = found[0]
    assert before <= found[1].started <= found[1].finished <= newest.started <= newest.finished
    assert newest.finished <= datetime.datetime.now()
    assert newest.span == 3
    assert list(newest.nodes) == [nodes.EXAMPLE_GEN, nodes.ANOMALIES_GATE]  # in the order they started
    assert [n.state for n in newest.nodes.values()] == ["COMPLETE", "FAILED"]
    assert all(n.seconds >= 0 for n in newest.nodes.values())
    assert found[1].gate == "accuracy 0.9800, no baseline"


def test_an_id_that_is_no_run_has_no_summary(store):
    run_id = _record_run(store, 1, _all("COMPLETE"))
    [model_context] = [c for c in store.get_contexts() if c.type == lineage.NODE][:1]
    assert history.run_summary(store, run_id + 1000) is None
    assert history.run_summary(store, model_context.id) is None  # a node's context, not a run's


@pytest.mark.pipeline
def test_a_real_run_reads_back_pushed_with_its_span_gate_and_version(two_runs):
    store = lineage.open_store(two_runs.output)
    summary = history.runs(store)[-1]  # the cold run (a code change between the two makes the rerun run too)
    folder = serving.ServingFolder(two_runs.output / "serving", "penguins")
    assert summary.outcome == "pushed"
    assert summary.span == 0
    assert summary.version == folder.served()
    assert summary.gate == registry.served_gate(store, folder.served())
    assert {n.state for n in summary.nodes.values()} == {"COMPLETE"}
    assert list(summary.nodes)[0] == nodes.EXAMPLE_GEN and list(summary.nodes)[-1] == nodes.PUSHER
    assert summary.started < summary.finished
    assert sum(n.seconds for n in summary.nodes.values()) <= (summary.finished - summary.started).total_seconds()
    assert history.run_summary(store, summary.run_id) == summary


def test_tfxp_runs_lists_runs_newest_first(tmp_path):
    store = lineage.open_store(tmp_path)
    first = _record_run(store, 1, _all("COMPLETE"))
    second = _record_run(store, 2, {nodes.EXAMPLE_GEN: "COMPLETE", nodes.DRIFT_GATE: "FAILED"})
    result = run_tfxp("runs", "--output", str(tmp_path))
    assert result.code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in ([str(first)], [str(second)])]
    assert [row[0] for row in rows] == [str(second), str(first)]
    assert " ".join(rows[0]).endswith("0 s 3 stopped by drift")
    assert " ".join(rows[1]).endswith("3 pushed accuracy 0.9800, no baseline 1700000000")


def test_tfxp_runs_without_a_store_says_to_run_first(tmp_path):
    result = run_tfxp("runs", "--output", str(tmp_path))
    assert result.code == 2
    assert "run `tfxp run` first" in result.stderr


@pytest.mark.pipeline
def test_tfxp_runs_shows_the_real_run(two_runs):
    summary = history.runs(lineage.open_store(two_runs.output))[-1]
    result = run_tfxp("runs", "--output", str(two_runs.output))
    assert result.code == 0, result.stderr
    [row] = [line for line in result.stdout.splitlines() if line.split()[:1] == [str(summary.run_id)]]
    assert f"{summary.started:%Y-%m-%d %H:%M}" in row
    assert " ".join(row.split()).endswith(f" 0 pushed {summary.gate} {summary.version}")
