"""Runs recorded by hand into a real MLMD store, the way TFX records them, for tests that need no pipeline."""

from __future__ import annotations

from ml_metadata.proto import metadata_store_pb2

from pipeline import lineage, registry

PIPELINE = "penguins"
STATES = metadata_store_pb2.Execution.State


def new_run(store, name: str) -> metadata_store_pb2.Context:
    """A pipeline_run context, as TFX opens one per `tfxp run`."""
    kind = store.put_context_type(metadata_store_pb2.ContextType(name=lineage.PIPELINE_RUN))
    [run_id] = store.put_contexts([metadata_store_pb2.Context(type_id=kind, name=name)])
    return store.get_contexts_by_id([run_id])[0]


def artifact(store, type_name: str, uri: str = "", **properties) -> metadata_store_pb2.Artifact:
    """An artifact, not yet stored, with custom properties (int, float or str)."""
    found = metadata_store_pb2.Artifact(
        type_id=store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name)), uri=uri
    )
    for name, value in properties.items():
        field = {int: "int_value", float: "double_value", str: "string_value"}[type(value)]
        setattr(found.custom_properties[name], field, value)
    return found


def execute(store, run, node_id: str, state: str, inputs=None, outputs=None) -> list[int]:
    """Records `node_id`'s execution in `run` and in its node context, reading `inputs` and writing `outputs`
    ({key: artifact}); returns the ids of the output artifacts. MLMD stamps the times from the wall clock."""
    node_type = store.put_context_type(metadata_store_pb2.ContextType(name=lineage.NODE))
    node = store.get_context_by_type_and_name(lineage.NODE, f"{PIPELINE}.{node_id}")
    if node is None:
        [context_id] = store.put_contexts([metadata_store_pb2.Context(type_id=node_type, name=f"{PIPELINE}.{node_id}")])
        [node] = store.get_contexts_by_id([context_id])
    kind = store.put_execution_type(metadata_store_pb2.ExecutionType(name=f"tfx.components.{node_id}"))
    execution = metadata_store_pb2.Execution(type_id=kind, last_known_state=STATES.Value(state))
    links = [
        (a, metadata_store_pb2.Event(type=event, path=registry.event_path(key)))
        for event, keyed in ((metadata_store_pb2.Event.INPUT, inputs), (metadata_store_pb2.Event.OUTPUT, outputs))
        for key, a in (keyed or {}).items()
    ]
    _, artifact_ids, _ = store.put_execution(execution, links, [run, node])
    return artifact_ids[len(inputs or {}) :]
