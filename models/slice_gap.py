"""The fairness gate's measure, as a TFMA cross-slice metric: how far a slice falls short of the overall value.

TFMA compares each slice with the overall slice when the EvalConfig has `cross_slicing_specs`, and its
validator checks `CrossSliceMetricThreshold`s on the result, so a slice that falls too far behind
withholds the Evaluator's blessing. TFMA's built-in comparison (overall minus slice, for every metric)
cannot leave out small slices: nothing in a threshold looks at a slice's size, and `min_slice_size` in
TFMA's options drops small slices' figures from the results altogether. This metric is that comparison
with the two things the gate needs, computed from the figures TFMA already has for both slices (the
gate metric and `example_count`): a direction (positive is always worse) and a size floor.

TFMA imports this module by name when the Evaluator builds its metrics (`MetricConfig.module`).
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from models.evaluation import EXAMPLE_COUNT, SLICE_GAP, gap


class SliceGap(tfma.metrics.Metric):
    """For each (Overall, slice) pair: how much worse the slice's gate metric is than the overall value, in the
    metric's units (positive: worse, negative: better), for slices of at least `min_slice_size` examples.

    A smaller slice gets 0: its own figures are still reported, but it never blocks a model.
    """

    def __init__(self, metric: str, higher_is_better: bool, min_slice_size: int, name: str = SLICE_GAP):
        super().__init__(
            _slice_gap, metric=metric, higher_is_better=higher_is_better, min_slice_size=min_slice_size, name=name
        )


def _find(metrics: dict, name: str, like: metric_types.MetricKey) -> float | None:
    """The value of metric `name` for the same model and output as `like`, or None when it is absent."""
    for key, value in metrics.items():
        if (
            isinstance(key, metric_types.MetricKey)
            and key.name == name
            and key.model_name == like.model_name
            and key.output_name == like.output_name
            and not key.is_diff
            and key.sub_key is None
        ):
            return float(value)
    return None


def _slice_gap(
    metric: str,
    higher_is_better: bool,
    min_slice_size: int,
    name: str = SLICE_GAP,
    model_names: list[str] | None = None,
    output_names: list[str] | None = None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    """One cross-slice computation per model and output (the candidate, and the baseline when there is one)."""
    keys = [
        metric_types.MetricKey(name=name, model_name=model, output_name=output, example_weighted=example_weighted)
        for model in model_names or [""]
        for output in output_names or [""]
    ]

    def compare(overall: dict, comparison: dict) -> dict:
        result = {}
        for key in keys:
            whole, part = _find(overall, metric, key), _find(comparison, metric, key)
            count = _find(comparison, EXAMPLE_COUNT, key)
            if whole is None or part is None or count is None:
                continue  # TFMA's validator reports a threshold on a missing metric as failed: "Metric not found."
            result[key] = gap(whole, part, higher_is_better) if count >= min_slice_size else 0.0
        return result

    return [metric_types.CrossSliceMetricComputation(keys=keys, cross_slice_comparison=compare)]
