"""The TFMA evaluation config: metrics that fit the problem type, the blessing gate, and the slices."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from models.features import OUTPUT_NAMES, Declarations, Problem

if TYPE_CHECKING:  # TFMA takes seconds to import; only building the config needs it
    import tensorflow_model_analysis as tfma


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric TFMA computes, named as the project config and the run summary name it."""

    name: str
    class_name: str  # Keras/TFMA metric class
    key: str  # its key in TFMA's results
    higher_is_better: bool


METRICS: dict[Problem, tuple[Metric, ...]] = {
    Problem.MULTICLASS: (
        Metric("accuracy", "SparseCategoricalAccuracy", "sparse_categorical_accuracy", True),
        Metric("log_loss", "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", False),
    ),
    Problem.BINARY: (
        Metric("auc", "AUC", "auc", True),
        Metric("accuracy", "BinaryAccuracy", "binary_accuracy", True),
        Metric("log_loss", "BinaryCrossentropy", "binary_crossentropy", False),
    ),
    Problem.REGRESSION: (
        Metric("rmse", "RootMeanSquaredError", "root_mean_squared_error", False),
        Metric("mae", "MeanAbsoluteError", "mean_absolute_error", False),
    ),
}
# Reported per slice for binary problems, at the 0.5 cut the class names are predicted with; never a gate.
ERROR_RATES = (
    Metric("fpr", "FPR", "fpr", False),  # false-positive rate: negatives predicted positive
    Metric("fnr", "FNR", "fnr", False),  # false-negative rate: positives predicted negative
)
ERROR_RATE_CUT = 0.5
# TFMA plots of the eval split that the run report draws; regression has none TFMA can bound without the label's range.
PLOTS = {Problem.MULTICLASS: "MultiClassConfusionMatrixPlot", Problem.BINARY: "ConfusionMatrixPlot"}
DEFAULT_GATE_METRIC = {Problem.MULTICLASS: "accuracy", Problem.BINARY: "auc", Problem.REGRESSION: "rmse"}
DEFAULT_THRESHOLDS = {"accuracy": 0.7, "auc": 0.7}  # higher-is-better gates; error metrics need a stated bound
DEFAULT_MAX_REGRESSION = 0.02  # how much worse than the last blessed model a candidate may be, in the metric's units
EXAMPLE_COUNT = "example_count"
# A slice needs this many eval examples before the fairness gate judges it; smaller ones are only reported.
DEFAULT_MIN_SLICE_SIZE = 30
SLICE_GAP_MODULE = "models.slice_gap"  # TFMA imports the cross-slice metric by name (MetricConfig.module)
SLICE_GAP_CLASS = "SliceGap"
SLICE_GAP = "slice_gap"  # its key in TFMA's results (cross-slice entries only)


def reported_metrics(problem: Problem) -> dict[str, str]:
    """TFMA metric key → the short name the run summary and the model card show, for a problem type."""
    return {EXAMPLE_COUNT: "examples", **{m.key: m.name for m in reported(problem)}}


def metric(problem: Problem, name: str) -> Metric:
    """The named metric for a problem type, or a ValueError listing the ones that exist."""
    for candidate in METRICS[problem]:
        if candidate.name == name:
            return candidate
    known = ", ".join(m.name for m in METRICS[problem])
    raise ValueError(f"metric '{name}' does not apply to {problem.value} problems; choose one of: {known}")


def gap(overall: float, part: float, higher_is_better: bool) -> float:
    """How much worse `part` is than `overall`, in the metric's units: positive when worse, negative when better."""
    return overall - part if higher_is_better else part - overall


def worst_slice(
    slices: dict[str, dict[str, float]], key: str, count_key: str, higher_is_better: bool, min_size: int
) -> str | None:
    """The slice of at least `min_size` examples furthest behind "Overall" in metric `key`, or None when none is
    behind it. `slices` maps slice name → metric → value, under whatever names the caller uses."""
    overall = slices.get("Overall", {}).get(key, float("nan"))
    behind = {
        name: gap(overall, values[key], higher_is_better)
        for name, values in sorted(slices.items())  # ties go to the first name
        if name != "Overall" and values.get(count_key, 0) >= min_size and key in values
    }
    behind = {name: distance for name, distance in behind.items() if distance > 0}  # NaN is never behind
    return max(behind, key=behind.get) if behind else None


@dataclasses.dataclass(frozen=True)
class Gate:
    """What a candidate must reach to be blessed: a bound, no regression beyond a margin, and, when set, no large
    enough slice falling too far behind the overall value."""

    metric: str
    threshold: float  # at least this for higher-is-better metrics, at most this otherwise
    max_regression: float  # how much worse than the last blessed model it may be
    max_slice_gap: float | None = None  # how much worse than overall a slice may be; None: no fairness gate
    min_slice_size: int = DEFAULT_MIN_SLICE_SIZE  # eval examples a slice needs to be judged by that gate


def _threshold(gate_metric: Metric, gate: Gate) -> tfma.MetricThreshold:
    """TFMA's value and change thresholds for the gate, pointing the right way for the metric."""
    import tensorflow_model_analysis as tfma

    if gate_metric.higher_is_better:
        bound = tfma.GenericValueThreshold(lower_bound={"value": gate.threshold})
        change = tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -gate.max_regression}
        )
    else:
        bound = tfma.GenericValueThreshold(upper_bound={"value": gate.threshold})
        change = tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER, absolute={"value": gate.max_regression}
        )
    return tfma.MetricThreshold(value_threshold=bound, change_threshold=change)


def _slice_gap_config(gate_metric: Metric, gate: Gate, slices: Sequence[str]) -> tfma.MetricConfig:
    """TFMA's cross-slice threshold for the fairness gate: no slice of `min_slice_size` examples or more may fall
    more than `max_slice_gap` behind the overall value of the gate metric (models/slice_gap.py measures it)."""
    import tensorflow_model_analysis as tfma

    measure = {"metric": gate_metric.key, "higher_is_better": gate_metric.higher_is_better}
    config = tfma.MetricConfig(
        class_name=SLICE_GAP_CLASS,
        module=SLICE_GAP_MODULE,
        config=json.dumps({**measure, "min_slice_size": gate.min_slice_size, "name": SLICE_GAP}, sort_keys=True),
    )
    config.cross_slice_thresholds.append(
        tfma.CrossSliceMetricThreshold(
            cross_slicing_specs=[_cross_slicing_spec(slices)],
            threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(upper_bound={"value": gate.max_slice_gap})
            ),
        )
    )
    return config


def _cross_slicing_spec(slices: Sequence[str]) -> tfma.CrossSlicingSpec:
    """Every value of every slicing column, each compared with the overall slice."""
    import tensorflow_model_analysis as tfma

    return tfma.CrossSlicingSpec(
        baseline_spec=tfma.SlicingSpec(), slicing_specs=[tfma.SlicingSpec(feature_keys=[name]) for name in slices]
    )


def reported(problem: Problem) -> tuple[Metric, ...]:
    """The metrics TFMA computes for a problem type, overall and per slice: the gate candidates, and for binary
    problems the false-positive and false-negative rates."""
    return METRICS[problem] + (ERROR_RATES if problem is Problem.BINARY else ())


def eval_config(declarations: Declarations, gate: Gate, slices: Sequence[str]) -> tfma.EvalConfig:
    """Scores `serving_default` on the eval split, overall and per slicing feature; gates on the overall slice and,
    with `max_slice_gap`, on how far any large enough slice falls behind it."""
    import tensorflow_model_analysis as tfma
    from google.protobuf.wrappers_pb2 import BoolValue

    problem = declarations.label.problem
    gate_metric = metric(problem, gate.metric)
    metric_configs = [tfma.MetricConfig(class_name="ExampleCount")]
    for m in reported(problem):
        config = tfma.MetricConfig(class_name=m.class_name)
        if m in ERROR_RATES:
            config.config = json.dumps({"thresholds": [ERROR_RATE_CUT]})
        if m is gate_metric:
            # Gate on the overall slice; small slices are reported, not gated.
            config.per_slice_thresholds.append(
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=_threshold(m, gate))
            )
        metric_configs.append(config)
    if problem in PLOTS:
        metric_configs.append(tfma.MetricConfig(class_name=PLOTS[problem]))
    cross_slicing_specs = []
    if gate.max_slice_gap is not None and slices:
        metric_configs.append(_slice_gap_config(gate_metric, gate, slices))
        cross_slicing_specs.append(_cross_slicing_spec(slices))
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=declarations.label.transformed_name,
                prediction_key=OUTPUT_NAMES[problem],
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[name]) for name in slices],
        cross_slicing_specs=cross_slicing_specs,
        metrics_specs=[tfma.MetricsSpec(metrics=metric_configs)],
        # TFMA would otherwise also load the Keras model and recompute its compiled loss and metrics,
        # a second inference pass over the eval split for figures the metrics above already give.
        options=tfma.Options(include_default_metrics=BoolValue(value=False)),
    )
