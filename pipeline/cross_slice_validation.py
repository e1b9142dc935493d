"""TFMA 0.47's record of checked cross-slice thresholds, corrected, so the fairness gate can bless a model.

The fairness gate (`[evaluation] max_slice_gap`) is a `CrossSliceMetricThreshold` that TFMA's validator checks
like any other threshold, and the Evaluator blesses the model only if TFMA's validation passes. TFMA 0.47
checks such thresholds correctly but then loses track of having checked them: it files the record of each
check (`SlicingDetails`, whose spec is a oneof) under its `slicing_spec` only, which for a cross-slice check
is empty, and so always lists the `CrossSlicingSpec` under `missing_cross_slices` and fails validation. Every
model would go unblessed, whatever its slices. The correction swaps TFMA's two helpers that file those
records for ones that read whichever spec the record holds; nothing else changes.

TFMA validates wherever Beam runs its bundles: in the Evaluator's process on Beam's in_memory direct runner
(`corrected()`, around the executor), in worker processes on every other runner (`install()`, at a worker's
start: pipeline/beam_worker.py). `tests/test_fairness.py` checks the bug is still there, so the correction
goes when a TFMA release fixes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.proto import validation_result_pb2
from tensorflow_model_analysis.slicer import slicer_lib


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


def install() -> None:
    """Corrects TFMA's validation for the rest of this process's life: for a Beam worker, which runs nothing else."""
    metrics_validator._hashed_slicing_details, metrics_validator.merge_details = _hashed_slicing_details, _merge_details


@contextlib.contextmanager
def corrected() -> Iterator[None]:
    """TFMA's validation, within the block, records cross-slice checks under their own spec."""
    saved = metrics_validator._hashed_slicing_details, metrics_validator.merge_details
    install()
    try:
        yield
    finally:
        metrics_validator._hashed_slicing_details, metrics_validator.merge_details = saved
