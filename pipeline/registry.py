"""The model registry: every pushed version, read from ML Metadata and the serving folder, and rollbacks recorded there.

Nothing here keeps a side file: a version's lineage, gate figures and servability figures are
MLMD artifacts and properties; what TF Serving serves is `models.config` and the version folders.
"""

from __future__ import annotations

import dataclasses
import datetime
import getpass

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import lineage, serving

# The servability check's figures on its InfraBlessing (written by pipeline/servability.py, which imports TFX).
FIGURES = ("load_seconds", "p50_ms_batch_1", "p99_ms_batch_1", "p50_ms_batch_64", "p99_ms_batch_64")

PUSHED_MODEL = "PushedModel"
MODEL = "Model"  # the Trainer's output artifact type
PIPELINE = "pipeline"  # the context type TFX gives a pipeline; its name is the pipeline's
ROLLBACK = "Rollback"  # execution type of a `tfxp rollback`
CHANGED_ON_DISK = "changed on disk!"  # a version whose files no longer match the digest recorded when it was pushed
# What the end-of-run summary records on the Pusher's PushedModel, so listings need not load TFMA. Not on
# the ModelBlessing: TFX's cache key hashes input artifacts whole, so editing one would re-run the Pusher.
GATE_METRIC, GATE_VALUE, GATE_CHANGE = "gate_metric", "gate_value", "gate_change"


class RegistryError(RuntimeError):
    """A registry request cannot be met; the message says why."""


@dataclasses.dataclass
class PushedVersion:
    """One version the Pusher published, as MLMD and the serving folder describe it."""

    version: int
    pushed_at: datetime.datetime
    span: int | None
    examples: str  # the ExampleGen artifact the model was checked against
    model_id: int
    gate: str  # "accuracy 0.9800, +0.0100 vs baseline"
    servability: dict[str, float]  # the servability check's figures (servability.FIGURES)
    on_disk: str  # "complete", CHANGED_ON_DISK, "removed by retention", "missing", or "corrupt"


def when(milliseconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(milliseconds / 1000)


def gate_text(pushed: metadata_store_pb2.Artifact) -> str:
    """The gate metric and its change against the baseline, as the run summary recorded them."""
    metric = lineage.custom_property(pushed, GATE_METRIC)
    if metric is None:
        return "not recorded"
    text = f"{metric} {lineage.custom_property(pushed, GATE_VALUE):.4f}"
    change = lineage.custom_property(pushed, GATE_CHANGE)
    return text + (f", {change:+.4f} vs baseline" if change is not None else ", no baseline")


def record_gate(
    store: metadata_store.MetadataStore, pushed_id: int, metric: str, value: float, change: float | None
) -> None:
    """Writes the gate figures onto the Pusher's PushedModel artifact, which no component consumes."""
    [pushed] = store.get_artifacts_by_id([pushed_id])
    pushed.custom_properties[GATE_METRIC].string_value = metric
    pushed.custom_properties[GATE_VALUE].double_value = value
    if change is not None:
        pushed.custom_properties[GATE_CHANGE].double_value = change
    store.put_artifacts([pushed])


def _pushed_by_version(store: metadata_store.MetadataStore) -> dict[int, metadata_store_pb2.Artifact]:
    """The PushedModel artifact of every version the Pusher published (one store per output folder)."""
    try:
        artifacts = store.get_artifacts_by_type(PUSHED_MODEL)
    except Exception:  # noqa: BLE001  (MLMD raises NotFound before the first push)
        return {}
    return {
        int(lineage.custom_property(a, "pushed_version")): a
        for a in artifacts
        if lineage.custom_property(a, "pushed") == 1
    }


def pushed_versions(store: metadata_store.MetadataStore, folder: serving.ServingFolder) -> list[PushedVersion]:
    """Every version pushed to `folder`, newest first."""
    pushed = _pushed_by_version(store)
    removed = {
        int(v)
        for artifact in pushed.values()
        for v in (lineage.custom_property(artifact, "removed_versions") or "").split(",")
        if v
    }
    found = []
    for version, artifact in pushed.items():
        inputs = lineage.inputs_of(store, artifact.id)
        infra = inputs.get("infra_blessing")
        checked = lineage.inputs_of(store, infra.id).get("examples") if infra else None
        if version in folder.versions():
            on_disk = _on_disk(folder, version, lineage.custom_property(artifact, serving.VERSION_DIGEST))
        else:
            on_disk = "removed by retention" if version in removed else "missing"
        found.append(
            PushedVersion(
                version=version,
                pushed_at=when(artifact.create_time_since_epoch),
                span=lineage.custom_property(checked, "span") if checked else None,
                examples=checked.uri if checked else "",
                model_id=inputs["model"].id if "model" in inputs else 0,
                gate=gate_text(artifact),
                servability={k: v for k in FIGURES if infra and (v := lineage.custom_property(infra, k)) is not None},
                on_disk=on_disk,
            )
        )
    return sorted(found, key=lambda v: v.version, reverse=True)


def _on_disk(folder: serving.ServingFolder, version: int, recorded: str | None) -> str:
    """Whether a version still in the serving folder is whole and holds the files it was published with.

    Versions pushed before digests were recorded are only checked for completeness.
    """
    if not folder.is_complete(version):
        return "corrupt"
    if recorded and serving.digest_mismatch(folder.version_dir(version), recorded):
        return CHANGED_ON_DISK
    return "complete"


def pipeline_context(store: metadata_store.MetadataStore, pipeline_name: str) -> metadata_store_pb2.Context:
    """The pipeline's MLMD context, which every record of a decision or check outside a run joins."""
    context = store.get_context_by_type_and_name(PIPELINE, pipeline_name)
    if context is None:
        raise RegistryError(f"nothing was ever run for {pipeline_name!r} in this output folder; run `tfxp run` first")
    return context


def execution_type(store: metadata_store.MetadataStore, name: str, ints: tuple, strings: tuple) -> int:
    """Registers (or finds) an execution type for a decision or check made outside the pipeline."""
    kind = metadata_store_pb2.ExecutionType(name=name)
    for prop in ints:
        kind.properties[prop] = metadata_store_pb2.INT
    for prop in strings:
        kind.properties[prop] = metadata_store_pb2.STRING
    return store.put_execution_type(kind)


@dataclasses.dataclass
class Rollback:
    """A change of the served version, as recorded in MLMD."""

    at: datetime.datetime
    action: str  # "pin" or "clear"
    from_version: int | None
    to_version: int | None
    reason: str
    user: str


def record_rollback(
    store: metadata_store.MetadataStore,
    pipeline_name: str,
    before: int | None,
    after: int | None,
    action: str,
    reason: str,
) -> None:
    """Records who changed the served version, when, from which to which, and why; linked to both versions."""
    context = pipeline_context(store, pipeline_name)
    kind = execution_type(store, ROLLBACK, ("from_version", "to_version"), ("reason", "user", "action"))
    execution = metadata_store_pb2.Execution(type_id=kind)
    execution.last_known_state = metadata_store_pb2.Execution.COMPLETE
    execution.properties["action"].string_value = action
    execution.properties["reason"].string_value = reason
    execution.properties["user"].string_value = getpass.getuser()
    if before is not None:
        execution.properties["from_version"].int_value = before
    if after is not None:
        execution.properties["to_version"].int_value = after
    by_version = _pushed_by_version(store)
    links = []
    for version, kind in ((before, metadata_store_pb2.Event.INPUT), (after, metadata_store_pb2.Event.OUTPUT)):
        if version in by_version:
            links.append((by_version[version], metadata_store_pb2.Event(type=kind)))
    store.put_execution(execution, links, [context])


def rollbacks(store: metadata_store.MetadataStore) -> list[Rollback]:
    """Every recorded rollback, newest first."""
    try:
        executions = store.get_executions_by_type(ROLLBACK)
    except Exception:  # noqa: BLE001  (the type does not exist until the first rollback)
        return []

    def number(execution, name):
        return execution.properties[name].int_value if name in execution.properties else None

    return [
        Rollback(
            at=when(e.create_time_since_epoch),
            action=e.properties["action"].string_value,
            from_version=number(e, "from_version"),
            to_version=number(e, "to_version"),
            reason=e.properties["reason"].string_value,
            user=e.properties["user"].string_value,
        )
        for e in sorted(executions, key=lambda e: e.id, reverse=True)
    ]


APPROVAL = "Approval"  # execution type of `tfxp approve` and `tfxp reject`: a person's decision on a model


@dataclasses.dataclass
class Decision:
    """A person's approval or rejection of one model, as recorded in MLMD."""

    model_id: int
    decision: str  # "approved" or "rejected"
    user: str
    at: datetime.datetime
    note: str
    version: int | None  # what the approval pushed


def decisions(store: metadata_store.MetadataStore) -> dict[int, Decision]:
    """Every recorded decision, by model id."""
    try:
        executions = store.get_executions_by_type(APPROVAL)
    except Exception:  # noqa: BLE001  (the type does not exist before the first decision)
        return {}
    found = {}
    for execution in executions:
        properties = execution.properties
        found[properties["model_id"].int_value] = Decision(
            model_id=properties["model_id"].int_value,
            decision=properties["decision"].string_value,
            user=properties["user"].string_value,
            at=when(execution.create_time_since_epoch),
            note=properties["note"].string_value,
            version=properties["version"].int_value if "version" in properties else None,
        )
    return found


@dataclasses.dataclass
class Held:
    """A blessed, servable model the Pusher held for a person's decision ([delivery] approval = "manual")."""

    model: metadata_store_pb2.Artifact
    held_by: metadata_store_pb2.Artifact  # the Pusher's PushedModel (pushed = 0, awaiting_approval = 1)
    model_blessing: metadata_store_pb2.Artifact
    infra_blessing: metadata_store_pb2.Artifact
    gate: str
    model_card: metadata_store_pb2.Artifact | None  # ModelCardGenerator's facts, rendered into the version


def held_models(store: metadata_store.MetadataStore) -> dict[int, Held]:
    """Every model a Pusher held for approval, by model id, decided or not."""
    try:
        artifacts = store.get_artifacts_by_type(PUSHED_MODEL)
    except Exception:  # noqa: BLE001
        return {}
    found = {}
    for artifact in artifacts:
        if lineage.custom_property(artifact, "awaiting_approval") != 1:
            continue
        inputs = lineage.inputs_of(store, artifact.id)
        if {"model", "model_blessing", "infra_blessing"} <= set(inputs):
            found[inputs["model"].id] = Held(
                inputs["model"],
                artifact,
                inputs["model_blessing"],
                inputs["infra_blessing"],
                gate_text(artifact),
                inputs.get("model_card"),
            )
    return found


def pushed_version_models(store: metadata_store.MetadataStore) -> dict[int, int]:
    """Version → the id of the model it was pushed from, for every pushed version."""
    found = {}
    for version, artifact in _pushed_by_version(store).items():
        model = lineage.inputs_of(store, artifact.id).get("model")
        if model is not None:
            found[version] = model.id
    return found


def served_gate(store: metadata_store.MetadataStore, version: int | None) -> str:
    """The gate figures recorded for the version serving now."""
    artifact = _pushed_by_version(store).get(version) if version is not None else None
    return gate_text(artifact) if artifact is not None else "no gate figures recorded"


def served_model_id(store: metadata_store.MetadataStore, version: int | None) -> int | None:
    """The id of the model a version in the serving folder was pushed from."""
    return pushed_version_models(store).get(version) if version is not None else None


def lineage_root(store: metadata_store.MetadataStore, version_or_model_id: int) -> int | None:
    """The artifact to trace a number back from: a pushed version's PushedModel, else the Model artifact with that
    id; None when it is neither. Versions are push times in seconds, far above any artifact id."""
    pushed = _pushed_by_version(store).get(version_or_model_id)
    if pushed is not None:
        return pushed.id
    types = {t.id: t.name for t in store.get_artifact_types()}
    found = store.get_artifacts_by_id([version_or_model_id])
    return version_or_model_id if found and types.get(found[0].type_id) == MODEL else None


def record_decision(
    store: metadata_store.MetadataStore,
    pipeline_name: str,
    held: Held,
    decision: str,
    note: str,
    push: serving.Push | None = None,
) -> None:
    """Records who decided what about a held model, when and why; an approval also records the version it pushed
    as a PushedModel artifact, so the registry lists it like any other push."""
    context = pipeline_context(store, pipeline_name)
    kind = execution_type(store, APPROVAL, ("model_id", "version"), ("decision", "user", "note"))
    execution = metadata_store_pb2.Execution(type_id=kind)
    execution.last_known_state = metadata_store_pb2.Execution.COMPLETE
    execution.properties["model_id"].int_value = held.model.id
    execution.properties["decision"].string_value = decision
    execution.properties["user"].string_value = getpass.getuser()
    execution.properties["note"].string_value = note
    links = [
        (artifact, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT, path=event_path(key)))
        for key, artifact in (
            ("model", held.model),
            ("model_blessing", held.model_blessing),
            ("infra_blessing", held.infra_blessing),
        )
    ]
    if push is not None:
        execution.properties["version"].int_value = push.version
        pushed = metadata_store_pb2.Artifact(type_id=held.held_by.type_id, uri=str(push.path))
        pushed.state = metadata_store_pb2.Artifact.LIVE
        for name in (GATE_METRIC, GATE_VALUE, GATE_CHANGE):
            if name in held.held_by.custom_properties:
                pushed.custom_properties[name].CopyFrom(held.held_by.custom_properties[name])
        pushed.custom_properties["pushed"].int_value = 1
        pushed.custom_properties["pushed_version"].string_value = str(push.version)
        pushed.custom_properties["pushed_destination"].string_value = str(push.path)
        pushed.custom_properties["removed_versions"].string_value = ",".join(map(str, push.removed))
        pushed.custom_properties[serving.VERSION_DIGEST].string_value = push.digest  # as the Pusher records it
        links.append(
            (pushed, metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT, path=event_path("pushed_model")))
        )
    store.put_execution(execution, links, [context])


def event_path(name: str) -> metadata_store_pb2.Event.Path:
    """An event path naming the input or output key, as TFX records them (lineage reads them back)."""
    return metadata_store_pb2.Event.Path(steps=[metadata_store_pb2.Event.Path.Step(key=name)])
