"""The Evaluator's executor: TFX's own, with TFMA's bookkeeping of cross-slice thresholds corrected, and the
digest of the model it evaluated kept on its ModelBlessing, which the servability check compares.

The fairness gate (`[evaluation] max_slice_gap`) is a `CrossSliceMetricThreshold` that TFMA's validator checks
like any other threshold, and the Evaluator blesses the model only if TFMA's validation passes. TFMA 0.47
checks such thresholds correctly but then loses track of having checked them: it files the record of each
check (`SlicingDetails`, whose spec is a oneof) under its `slicing_spec` only, which for a cross-slice check
is empty, and so always lists the `CrossSlicingSpec` under `missing_cross_slices` and fails validation. Every
model would go unblessed, whatever its slices. While TFX runs this executor, the two helpers that file those
records read whichever spec the record holds; nothing else changes.

The correction is in this process only. Beam's in_memory direct runner (the default) evaluates here; with
`multi_processing` or a distributed runner, TFMA's validation runs in other processes, without it, and a model
with a fairness gate is never blessed: the summary says why. `tests/test_fairness.py` checks the bug is still
there, so the correction goes when a TFMA release fixes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.proto import validation_result_pb2
from tensorflow_model_analysis.slicer import slicer_lib
from tfx import v1 as tfx
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils

from pipeline import serving


def _spec(details: validation_result_pb2.SlicingDetails):
    """The single- or cross-slicing spec a record of checked thresholds is about, as a hashable TFMA object."""
    which = details.WhichOneof("slicing_spec_oneof") or "slicing_spec"  # TFMA leaves the overall slice's unset
    return slicer_lib.deserialize_slice_spec(getattr(details, which))


def _hashed_slicing_details(slicing_details: Iterable[validation_result_pb2.SlicingDetails]) -> dict:
    """TFMA's helper of the same name, keyed by whichever spec each record holds."""
    hashed = {}
    for details in slicing_details:
        hashed.setdefault(_spec(details), details)
    return hashed


def _merge_details(a: validation_result_pb2.ValidationResult, b: validation_result_pb2.ValidationResult) -> None:
    """TFMA's `merge_details` (b's records into a's, counting matches), keyed by whichever spec each record holds."""
    unmatched = _hashed_slicing_details(b.validation_details.slicing_details)
    for details in a.validation_details.slicing_details:
        if (match := unmatched.pop(_spec(details), None)) is not None:
            details.num_matching_slices += match.num_matching_slices
    a.validation_details.slicing_details.extend(unmatched.values())


@contextlib.contextmanager
def cross_slice_bookkeeping() -> Iterator[None]:
    """TFMA's validation, within the block, records cross-slice checks under their own spec."""
    saved = metrics_validator._hashed_slicing_details, metrics_validator.merge_details
    metrics_validator._hashed_slicing_details, metrics_validator.merge_details = _hashed_slicing_details, _merge_details
    try:
        yield
    finally:
        metrics_validator._hashed_slicing_details, metrics_validator.merge_details = saved


class Executor(tfx_evaluator.Executor):
    """TFX's Evaluator executor, run with the correction above."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802  (TFX's name)
        """Evaluates and validates as TFX does; TFMA's validation sees cross-slice checks it made. The blessing
        keeps the digest of the model's files, so a model swapped on disk afterwards is refused before a push."""
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        source = Path(path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model)))
        evaluated = serving.saved_model_digest(source)
        with cross_slice_bookkeeping():
            super().Do(input_dict, output_dict, exec_properties)
        changed = serving.digest_mismatch(source, evaluated)
        if changed:  # TFMA may have read either version: no verdict can stand
            raise RuntimeError(f"the model's files in {source} changed while it was evaluated ({changed})")
        blessing = artifact_utils.get_single_instance(output_dict[standard_component_specs.BLESSING_KEY])
        blessing.set_string_custom_property(serving.MODEL_DIGEST, evaluated)


class Evaluator(tfx.components.Evaluator):
    """TFX's Evaluator, same inputs, outputs and properties, running the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
