"""The TFMA evaluation config: metrics that fit the problem type, the blessing gate, and the slices."""

from __future__ import annotations

import dataclasses
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
DEFAULT_GATE_METRIC = {Problem.MULTICLASS: "accuracy", Problem.BINARY: "auc", Problem.REGRESSION: "rmse"}
DEFAULT_THRESHOLDS = {"accuracy": 0.7, "auc": 0.7}  # higher-is-better gates; error metrics need a stated bound
DEFAULT_MAX_REGRESSION = 0.02  # how much worse than the last blessed model a candidate may be, in the metric's units
EXAMPLE_COUNT = "example_count"


def reported_metrics(problem: Problem) -> dict[str, str]:
    """TFMA metric key → the short name the run summary and the model card show, for a problem type."""
    return {EXAMPLE_COUNT: "examples", **{m.key: m.name for m in METRICS[problem]}}


def metric(problem: Problem, name: str) -> Metric:
    """The named metric for a problem type, or a ValueError listing the ones that exist."""
    for candidate in METRICS[problem]:
        if candidate.name == name:
            return candidate
    known = ", ".join(m.name for m in METRICS[problem])
    raise ValueError(f"metric '{name}' does not apply to {problem.value} problems; choose one of: {known}")


@dataclasses.dataclass(frozen=True)
class Gate:
    """What a candidate must reach to be blessed: a bound, and no regression beyond a margin."""

    metric: str
    threshold: float  # at least this for higher-is-better metrics, at most this otherwise
    max_regression: float  # how much worse than the last blessed model it may be


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


def eval_config(declarations: Declarations, gate: Gate, slices: Sequence[str]) -> tfma.EvalConfig:
    """Scores `serving_default` on the eval split, overall and per slicing feature; gates on the overall slice."""
    import tensorflow_model_analysis as tfma
    from google.protobuf.wrappers_pb2 import BoolValue

    problem = declarations.label.problem
    gate_metric = metric(problem, gate.metric)
    metric_configs = [tfma.MetricConfig(class_name="ExampleCount")]
    for m in METRICS[problem]:
        config = tfma.MetricConfig(class_name=m.class_name)
        if m is gate_metric:
            # Gate on the overall slice; small slices are reported, not gated.
            config.per_slice_thresholds.append(
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=_threshold(m, gate))
            )
        metric_configs.append(config)
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
        metrics_specs=[tfma.MetricsSpec(metrics=metric_configs)],
        # TFMA would otherwise also load the Keras model and recompute its compiled loss and metrics,
        # a second inference pass over the eval split for figures the metrics above already give.
        options=tfma.Options(include_default_metrics=BoolValue(value=False)),
    )
