"""Past runs read back from ML Metadata: outcomes from hand-recorded runs in a real store, and one real run."""

from __future__ import annotations

import datetime

import pytest
from ml_metadata.proto import metadata_store_pb2

from pipeline import history, lineage, nodes, registry, serving

STATES = metadata_store_pb2.Execution.State
OUTPUT = metadata_store_pb2.Event.OUTPUT
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
    """Records one run as TFX does: each node's execution in the run's and the node's contexts, with its outputs;
    returns the run's context id. MLMD stamps the times itself, from the wall clock."""
    run_type = store.put_context_type(metadata_store_pb2.ContextType(name=lineage.PIPELINE_RUN))
    node_type = store.put_context_type(metadata_store_pb2.ContextType(name=lineage.NODE))
    [run_id] = store.put_contexts([metadata_store_pb2.Context(type_id=run_type, name=f"run-{number}")])
    for node_id, state in states.items():
        context = store.get_context_by_type_and_name(lineage.NODE, f"penguins.{node_id}")
        if context is None:
            [context_id] = store.put_contexts(
                [metadata_store_pb2.Context(type_id=node_type, name=f"penguins.{node_id}")]
            )
            [context] = store.get_contexts_by_id([context_id])
        [run] = store.get_contexts_by_id([run_id])
        kind = store.put_execution_type(metadata_store_pb2.ExecutionType(name=node_id))
        execution = metadata_store_pb2.Execution(type_id=kind, last_known_state=STATES.Value(state))
        links = []
        for key, (type_name, properties) in outputs.get(node_id, {}).items():
            artifact = metadata_store_pb2.Artifact(
                type_id=store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
            )
            for name, value in properties.items():
                field = {int: "int_value", float: "double_value", str: "string_value"}[type(value)]
                setattr(artifact.custom_properties[name], field, value)
            links.append((artifact, metadata_store_pb2.Event(type=OUTPUT, path=registry.event_path(key))))
        store.put_execution(execution, links, [run, context])
    return run_id


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
    [summary] = history.runs(store)  # the unchanged rerun replayed the record: no second TFX run
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
