"""The Evaluator's executor: TFX's own, with TFMA's bookkeeping of cross-slice thresholds corrected wherever TFMA
validates (pipeline/cross_slice_validation.py), and the digest of the model it evaluated kept on its
ModelBlessing, which the servability check compares.

On Beam's in_memory direct runner (the default) TFMA validates in this process, around which the executor
corrects it. On any other runner it validates in Beam's workers, which the Evaluator's Beam arguments tell to
import pipeline/beam_worker.py as they start (`--beam_plugin`); that module corrects it there.
"""

from __future__ import annotations

from pathlib import Path

from tfx import v1 as tfx
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils

from pipeline import cross_slice_validation, serving

# By name: importing pipeline.beam_worker here would correct TFMA for this whole process, not just the executor.
WORKER_PLUGIN = "pipeline.beam_worker"
WORKER_PLUGIN_ARG = f"--beam_plugin={WORKER_PLUGIN}"  # the Evaluator's own Beam argument


class Executor(tfx_evaluator.Executor):
    """TFX's Evaluator executor, with TFMA's validation corrected in this process while it runs."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802  (TFX's name)
        """Evaluates and validates as TFX does; TFMA's validation sees cross-slice checks it made. The blessing
        keeps the digest of the model's files, so a model swapped on disk afterwards is refused before a push."""
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        source = Path(path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model)))
        evaluated = serving.saved_model_digest(source)
        with cross_slice_validation.corrected():
            super().Do(input_dict, output_dict, exec_properties)
        changed = serving.digest_mismatch(source, evaluated)
        if changed:  # TFMA may have read either version: no verdict can stand
            raise RuntimeError(f"the model's files in {source} changed while it was evaluated ({changed})")
        blessing = artifact_utils.get_single_instance(output_dict[standard_component_specs.BLESSING_KEY])
        blessing.set_string_custom_property(serving.MODEL_DIGEST, evaluated)


class Evaluator(tfx.components.Evaluator):
    """TFX's Evaluator, same inputs, outputs and properties, running the executor above; Beam's workers, when
    there are any, import WORKER_PLUGIN first."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.with_beam_pipeline_args([WORKER_PLUGIN_ARG])
