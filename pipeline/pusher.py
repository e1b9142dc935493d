"""The Pusher's executor: TFX's blessing checks, then an atomic, versioned publish with retention.

Stock TFX copies the model straight into `<serving>/<model>/<version>/`, where a crash leaves a
half-written version TF Serving tries to load. This executor keeps TFX's contract (the same
blessing checks, the same PushedModel properties) and hands the filesystem work to
`pipeline.serving`, which publishes by rename.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfx import v1 as tfx
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils, path_utils, proto_utils

from pipeline import model_card, serving
from pipeline.approval import REJECTED_FILE
from pipeline.model_card_generator import ModelCard

MODEL_CARD = "model_card"  # the extra input: ModelCardGenerator's facts, rendered into each pushed version

KEEP_VERSIONS = "keep_versions"  # custom_config keys: [delivery] keep_versions and approval
APPROVAL = "approval"
AWAITING_APPROVAL = "awaiting_approval"  # PushedModel property: blessed, servable, and held for a person
RECOVERED = "recovered"  # PushedModel properties: unfinished pushes removed, and versions retention removed
REMOVED_VERSIONS = "removed_versions"
REUSED = "reused"  # the newest version already held these files: nothing was copied


class Executor(tfx_pusher.Executor):
    """Pushes the servability-stamped model (with its warmup requests) by rename, then prunes old versions."""

    def GetModelPath(self, input_dict) -> str:  # noqa: N802  (TFX's name)
        """The stamped copy the servability check called, when it made one; else the trained model."""
        infra = input_dict.get(standard_component_specs.INFRA_BLESSING_KEY)
        if infra and artifact_utils.get_single_instance(infra).get_int_custom_property("has_model"):
            return path_utils.stamped_model_path(artifact_utils.get_single_instance(infra).uri)
        return super().GetModelPath(input_dict)

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        """Publishes a blessed model as the next version; records what it did on the PushedModel artifact."""
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        destination = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], pusher_pb2.PushDestination()
        )
        base_directory = destination.filesystem.base_directory
        custom = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}

        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)  # the serving folder stays untouched; `tfxp run` clears leftovers first
            return
        model_path = Path(self.GetModelPath(input_dict))
        if (model_path.parent / REJECTED_FILE).exists() or custom.get(APPROVAL) == "manual":
            # A person decides: `tfxp approve` pushes this same stamped model through ServingFolder.push.
            self._MarkNotPushed(pushed)
            pushed.set_int_custom_property(AWAITING_APPROVAL, int(not (model_path.parent / REJECTED_FILE).exists()))
            return
        _check_unchanged(input_dict, model_path)
        folder = serving_folder(base_directory)
        # A changed [delivery] setting re-keys this component's cache, so it may run again on a model it pushed.
        cards = input_dict.get(MODEL_CARD) or []
        facts = model_card.read_facts(cards[0].uri) if cards else None
        push = folder.push(
            model_path,
            keep_versions=custom[KEEP_VERSIONS],
            reuse_identical=True,
            extra_files=(lambda v: model_card.render(facts, v, model_card.automatic_approval())) if facts else None,
        )
        # As stock TFX: a copy under the pipeline root too, the archive an audit can go back to.
        io_utils.copy_dir(str(model_path), pushed.uri)
        self._MarkPushed(pushed, pushed_destination=str(push.path), pushed_version=str(push.version))
        pushed.set_string_custom_property(RECOVERED, ",".join(push.recovered))
        pushed.set_string_custom_property(REMOVED_VERSIONS, ",".join(map(str, push.removed)))
        pushed.set_int_custom_property(REUSED, int(push.reused))
        pushed.set_string_custom_property(serving.VERSION_DIGEST, push.digest)


def serving_folder(base_directory: str) -> serving.ServingFolder:
    """The serving folder of the push destination `<root>/<model_name>`, which must be a path on this machine.

    ServingFolder publishes by an atomic rename under a file lock and compares digests by reading the versions'
    files, all of which need a filesystem; an object store (gs://, s3://) has neither rename nor lock. A URI
    would otherwise be taken for a relative folder ("gs:/bucket/...") inside the task's container and vanish with
    it, recorded as pushed.
    """
    if "://" in base_directory:
        raise serving.DeliveryError(
            f"cannot publish to {base_directory}: the Pusher publishes to a filesystem path (atomic rename, file "
            "lock), and a remote URI has neither; nothing was pushed"
        )
    base = Path(base_directory)
    return serving.ServingFolder(base.parent, base.name)


def _check_unchanged(input_dict, model_path: Path) -> None:
    """Refuses to publish a stamped model whose files differ from those the servability check called."""
    infra = input_dict.get(standard_component_specs.INFRA_BLESSING_KEY)
    expected = (
        artifact_utils.get_single_instance(infra).get_string_custom_property(serving.MODEL_DIGEST) if infra else ""
    )
    if not expected:  # no servability check in the wiring, or one from before digests were kept: nothing to compare
        return
    changed = serving.digest_mismatch(model_path, expected)
    if changed:
        raise serving.DeliveryError(
            f"the stamped model {model_path} changed after the servability check called it ({changed}); nothing was "
            "pushed. Run `tfxp run --no-cache` to check it again"
        )


class PusherSpec(standard_component_specs.PusherSpec):
    """TFX's Pusher spec, plus the model card to publish with each version."""

    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        MODEL_CARD: ChannelParameter(type=ModelCard, optional=True),
    }


class Pusher(base_component.BaseComponent):
    """TFX's Pusher (same inputs, outputs and properties) with a model card input, running the executor above."""

    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, model_blessing, infra_blessing, model_card, push_destination, custom_config):
        super().__init__(
            spec=PusherSpec(
                model=model,
                model_blessing=model_blessing,
                infra_blessing=infra_blessing,
                model_card=model_card,
                push_destination=push_destination,
                custom_config=json.dumps(custom_config),
                pushed_model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.PushedModel),
            )
        )
