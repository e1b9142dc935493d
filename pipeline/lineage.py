"""ML Metadata queries: what a run executed, what it produced, and what a model was made from."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import integrity
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
    """A read/write handle on the sqlite MLMD store of an output folder, the one the runner uses.

    Raises integrity.StoreError, one line for the user, when the file there is not a database.
    """
    integrity.check_store(output_root)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(output_root / METADATA_FILE)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def node_id_of(node: metadata_store_pb2.Context) -> str:
    """The component id in a node context's name, "<pipeline>.<node id>"."""
    return node.name.split(".", 1)[-1]


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
        node_id = node_id_of(node)
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


@dataclasses.dataclass
class LineageNode:
    """An artifact or an execution in a lineage graph."""

    key: str  # "artifact:12" or "execution:7": unique across both kinds, unlike MLMD ids
    kind: str  # "artifact" or "execution"
    type: str  # artifact type (Model, Examples, …), or for an execution its node id (Trainer, Approval, …)
    mlmd_id: int
    label: str  # an artifact's span ("span 3") or the tail of its uri; an execution's state (COMPLETE, CACHED, …)
    uri: str | None  # an artifact's; None for an execution


@dataclasses.dataclass
class LineageGraph:
    """What an artifact was made from: artifacts and the executions between them, back to the data."""

    root: str  # the key of the artifact asked about
    nodes: list[LineageNode]
    edges: list[tuple[str, str]]  # input artifact → execution, execution → output artifact

    def node(self, key: str) -> LineageNode:
        """The node with this key."""
        return next(n for n in self.nodes if n.key == key)

    def inputs(self, key: str) -> list[str]:
        """The keys with an edge into `key`: an execution's inputs, or the execution that made an artifact."""
        return [source for source, target in self.edges if target == key]


def _artifact_key(artifact_id: int) -> str:
    return f"artifact:{artifact_id}"


def _execution_key(execution_id: int) -> str:
    return f"execution:{execution_id}"


def _walk_upstream(store: metadata_store.MetadataStore, artifact_id: int):
    """Follows MLMD events back from `artifact_id` to the data: the artifacts found on the way (the start
    excluded), the executions that made them, and the edges. An artifact's producer is the first execution
    that output it; a cached execution records the same output again, from the same inputs."""
    seen, frontier, found = {artifact_id}, [artifact_id], []
    executions, edges = {}, []
    while frontier:
        producer_of = {}
        for event in sorted(store.get_events_by_artifact_ids(frontier), key=lambda e: e.execution_id):
            if event.type in OUTPUT_EVENTS:
                producer_of.setdefault(event.artifact_id, event.execution_id)
        edges.extend((_execution_key(e), _artifact_key(a)) for a, e in producer_of.items())
        new = sorted(set(producer_of.values()) - set(executions))
        frontier = []
        if not new:
            break
        executions.update((e.id, e) for e in store.get_executions_by_id(new))
        for event in store.get_events_by_execution_ids(new):
            if event.type in INPUT_EVENTS:
                edges.append((_artifact_key(event.artifact_id), _execution_key(event.execution_id)))
                if event.artifact_id not in seen:
                    seen.add(event.artifact_id)
                    frontier.append(event.artifact_id)
        found.extend(store.get_artifacts_by_id(frontier))
    types = {t.id: t.name for t in store.get_artifact_types()}
    for artifact in found:
        artifact.type = types.get(artifact.type_id, artifact.type)
    return found, list(executions.values()), list(dict.fromkeys(edges))


def upstream_artifacts(store: metadata_store.MetadataStore, artifact_id: int) -> list[metadata_store_pb2.Artifact]:
    """Every artifact that `artifact_id` was derived from, following MLMD events back to the data."""
    return _walk_upstream(store, artifact_id)[0]


def upstream_graph(store: metadata_store.MetadataStore, artifact_id: int) -> LineageGraph:
    """The graph of what `artifact_id` (a Model, a PushedModel, …) was made from; LookupError if no such artifact."""
    [root] = store.get_artifacts_by_id([artifact_id]) or [None]
    if root is None:
        raise LookupError(f"no artifact {artifact_id} in ML Metadata")
    root.type = {t.id: t.name for t in store.get_artifact_types()}.get(root.type_id, root.type)
    artifacts, executions, edges = _walk_upstream(store, artifact_id)
    graph_nodes = [_artifact_node(a) for a in [root, *artifacts]]
    for execution in executions:
        node_id, state = _node_id(store, execution), _EXECUTION_STATES.Name(execution.last_known_state)
        graph_nodes.append(LineageNode(_execution_key(execution.id), "execution", node_id, execution.id, state, None))
    return LineageGraph(_artifact_key(artifact_id), graph_nodes, edges)


def _artifact_node(artifact: metadata_store_pb2.Artifact) -> LineageNode:
    found = span(artifact)
    label = f"span {found}" if found is not None else "/".join(Path(artifact.uri).parts[-2:])
    return LineageNode(_artifact_key(artifact.id), "artifact", artifact.type, artifact.id, label, artifact.uri)


def _node_id(store: metadata_store.MetadataStore, execution: metadata_store_pb2.Execution) -> str:
    """The pipeline node an execution ran (its node context), or for a decision recorded outside a run
    (`tfxp approve`, `tfxp rollback`) the last part of its execution type."""
    for context in store.get_contexts_by_execution(execution.id):
        if context.type == NODE:
            return node_id_of(context)
    return execution.type.rsplit(".", 1)[-1]


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
    """ExampleGen's Examples a Trainer's model was made from.

    The Trainer reads them itself; models trained before Transform stopped materializing read Transform's
    transformed examples, whose own input they are.
    """
    examples = inputs_of(store, model_id).get("examples")
    if examples is None:
        return None
    return inputs_of(store, examples.id).get("examples") or examples


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
