"""ML Metadata queries: what a run executed, what it produced, and what a model was made from."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.settings import METADATA_FILE

PIPELINE_RUN = "pipeline_run"  # context types TFX attaches to every execution
NODE = "node"

_EXECUTION_STATES = metadata_store_pb2.Execution.State
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


@dataclasses.dataclass
class NodeExecution:
    """One component's execution in a run, with its state and its artifacts by key."""

    node_id: str
    execution: metadata_store_pb2.Execution
    inputs: dict[str, list[metadata_store_pb2.Artifact]]
    outputs: dict[str, list[metadata_store_pb2.Artifact]]

    @property
    def state(self) -> str:
        """COMPLETE, CACHED, FAILED, … as MLMD records it."""
        return _EXECUTION_STATES.Name(self.execution.last_known_state)

    def output(self, key: str) -> metadata_store_pb2.Artifact | None:
        """The single artifact under output `key`, or None."""
        artifacts = self.outputs.get(key, [])
        return artifacts[0] if artifacts else None


def open_store(output_root: Path) -> metadata_store.MetadataStore:
    """A read/write handle on the sqlite MLMD store of an output folder, the one the runner uses."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(output_root / METADATA_FILE)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def pipeline_runs(store: metadata_store.MetadataStore) -> list[metadata_store_pb2.Context]:
    """Every recorded run of every pipeline in the store, oldest first."""
    return sorted(store.get_contexts_by_type(PIPELINE_RUN), key=lambda c: c.id)


def _keyed(events, artifacts_by_id, kinds) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """Groups an execution's artifacts by the input/output key recorded on each event."""
    grouped = collections.defaultdict(list)
    for event in events:
        if event.type in kinds and event.artifact_id in artifacts_by_id:
            key = event.path.steps[0].key if event.path.steps else ""
            grouped[key].append(artifacts_by_id[event.artifact_id])
    return dict(grouped)


def run_executions(store: metadata_store.MetadataStore, run: metadata_store_pb2.Context) -> dict[str, NodeExecution]:
    """Each component's execution in `run`, by node id, with its input and output artifacts."""
    executions = {e.id: e for e in store.get_executions_by_context(run.id)}
    node_of = {}
    for node in store.get_contexts_by_type(NODE):
        node_id = node.name.split(".", 1)[-1]
        for execution in store.get_executions_by_context(node.id):
            if execution.id in executions:
                node_of[execution.id] = node_id
    events = collections.defaultdict(list)
    for event in store.get_events_by_execution_ids(list(executions)):
        events[event.execution_id].append(event)
    artifact_ids = {event.artifact_id for evs in events.values() for event in evs}
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list(artifact_ids))}
    return {
        node_of[eid]: NodeExecution(
            node_of[eid],
            execution,
            _keyed(events[eid], artifacts, INPUT_EVENTS),
            _keyed(events[eid], artifacts, OUTPUT_EVENTS),
        )
        for eid, execution in executions.items()
        if eid in node_of
    }


def latest_run_executions(store: metadata_store.MetadataStore) -> dict[str, NodeExecution]:
    """Each component's execution in the newest recorded run."""
    return run_executions(store, pipeline_runs(store)[-1])


def upstream_artifacts(store: metadata_store.MetadataStore, artifact_id: int) -> list[metadata_store_pb2.Artifact]:
    """Every artifact that `artifact_id` was derived from, following MLMD events back to the data."""
    types = {t.id: t.name for t in store.get_artifact_types()}
    seen, frontier, found = {artifact_id}, [artifact_id], []
    while frontier:
        producers = {e.execution_id for e in store.get_events_by_artifact_ids(frontier) if e.type in OUTPUT_EVENTS}
        frontier = []
        if not producers:
            break
        for event in store.get_events_by_execution_ids(list(producers)):
            if event.type in INPUT_EVENTS and event.artifact_id not in seen:
                seen.add(event.artifact_id)
                frontier.append(event.artifact_id)
        found.extend(store.get_artifacts_by_id(frontier))
    for artifact in found:
        artifact.type = types.get(artifact.type_id, artifact.type)
    return found


def span(artifact: metadata_store_pb2.Artifact) -> int | None:
    """The span an artifact carries: ExampleGen records it as a custom property, other components as a property."""
    if "span" in artifact.properties:
        return int(artifact.properties["span"].int_value)
    value = custom_property(artifact, "span")
    return None if value is None else int(value)


def custom_property(artifact: metadata_store_pb2.Artifact, name: str):
    """An artifact's custom property as a plain Python value, or None."""
    if name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))


def inputs_of(store: metadata_store.MetadataStore, artifact_id: int) -> dict[str, metadata_store_pb2.Artifact]:
    """The input artifacts, by key, of the execution that produced `artifact_id` (one per key)."""
    producers = [e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in OUTPUT_EVENTS]
    if not producers:
        return {}
    events = [e for e in store.get_events_by_execution_ids(producers[:1]) if e.type in INPUT_EVENTS]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    return {
        e.path.steps[0].key: artifacts[e.artifact_id] for e in events if e.path.steps and e.artifact_id in artifacts
    }


def training_examples(store: metadata_store.MetadataStore, model_id: int) -> metadata_store_pb2.Artifact | None:
    """ExampleGen's Examples a Trainer's model was made from: its transformed examples' own input."""
    transformed = inputs_of(store, model_id).get("examples")
    return inputs_of(store, transformed.id).get("examples") if transformed is not None else None


def statistics_of(store: metadata_store.MetadataStore, examples_id: int) -> metadata_store_pb2.Artifact | None:
    """The newest live ExampleStatistics StatisticsGen computed from an Examples artifact."""
    readers = {e.execution_id for e in store.get_events_by_artifact_ids([examples_id]) if e.type in INPUT_EVENTS}
    if not readers:
        return None
    produced = [e.artifact_id for e in store.get_events_by_execution_ids(list(readers)) if e.type in OUTPUT_EVENTS]
    types = {t.id: t.name for t in store.get_artifact_types()}
    found = [
        a
        for a in store.get_artifacts_by_id(produced)
        if types.get(a.type_id) == "ExampleStatistics" and a.state == metadata_store_pb2.Artifact.LIVE
    ]
    return max(found, key=lambda a: a.id) if found else None
