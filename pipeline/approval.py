"""A person decides: `tfxp approve` pushes a held model through the pipeline's own push path, `tfxp reject` bars it.

With `[delivery] approval = "manual"` the Pusher holds every blessed, servable model instead of
pushing it. A decision is an MLMD execution linked to the model, its blessings and (for an
approval) the version it pushed; refusals leave the serving folder and the store as they were.
"""

from __future__ import annotations

import datetime
import getpass
from pathlib import Path

from ml_metadata.metadata_store import metadata_store

from pipeline import lineage, model_card, registry, serving

REJECTED_FILE = "REJECTED"  # next to the stamped model, for the Pusher, which cannot query MLMD


class ApprovalError(RuntimeError):
    """A decision that cannot be taken; the message says why and what to do."""


def _stamped(held: registry.Held) -> Path:
    return Path(held.infra_blessing.uri) / "stamped_model"


def held_for_decision(store: metadata_store.MetadataStore, model_id: int) -> registry.Held:
    """The held model `model_id`, or ApprovalError saying why there is nothing to decide."""
    held = registry.held_models(store)
    if model_id not in held:
        found = store.get_artifacts_by_id([model_id])
        kind = store.get_artifact_types_by_id([found[0].type_id])[0].name if found else None
        if kind != "Model":
            raise ApprovalError(f"there is no model {model_id}; `tfxp pending` lists the models awaiting a decision")
        pushed = [v for v in registry.pushed_version_models(store).items() if v[1] == model_id]
        if pushed:
            raise ApprovalError(f"model {model_id} needs no approval: it was pushed as version {pushed[0][0]}")
        raise ApprovalError(
            f"model {model_id} was not blessed (by the Evaluator's gate or the servability check), so it cannot be "
            "pushed; `tfxp pending` lists the models awaiting a decision"
        )
    decided = registry.decisions(store).get(model_id)
    if decided is not None:
        raise ApprovalError(
            f"model {model_id} was already {decided.decision} by {decided.user} at {decided.at:%Y-%m-%d %H:%M:%S}"
            + (f" (version {decided.version})" if decided.version else "")
        )
    return held[model_id]


def approve(
    store: metadata_store.MetadataStore,
    pipeline_name: str,
    folder: serving.ServingFolder,
    model_id: int,
    note: str,
    keep_versions: int,
    force: bool = False,
) -> serving.Push:
    """Checks, pushes and records an approval; returns what the push did."""
    held = held_for_decision(store, model_id)
    serving_id = registry.served_model_id(store, folder.served())
    if serving_id is not None and model_id < serving_id and not force:
        raise ApprovalError(
            f"model {model_id} is older than model {serving_id}, which serves version {folder.served()}; "
            "pass --force to push it anyway"
        )
    stamped = _stamped(held)
    changed = serving.digest_mismatch(stamped, lineage.custom_property(held.infra_blessing, serving.MODEL_DIGEST))
    if changed:
        raise ApprovalError(
            f"the files of model {model_id} changed since it was evaluated ({stamped}: {changed}); "
            "run `tfxp run --no-cache` to evaluate it again"
        )
    card = None
    if held.model_card is not None:
        facts = model_card.read_facts(held.model_card.uri)
        approved = model_card.personal_approval(getpass.getuser(), datetime.datetime.now(), note)
        card = lambda version: model_card.render(facts, version, approved)  # noqa: E731
    push = folder.push(stamped, keep_versions, extra_files=card)
    registry.record_decision(store, pipeline_name, held, "approved", note, push)
    return push


def reject(store: metadata_store.MetadataStore, pipeline_name: str, model_id: int, note: str) -> None:
    """Records a rejection; the model can never be pushed afterwards, by `tfxp approve` or a re-run Pusher."""
    held = held_for_decision(store, model_id)
    registry.record_decision(store, pipeline_name, held, "rejected", note)
    (_stamped(held).parent / REJECTED_FILE).write_text(note + "\n", encoding="utf-8")
