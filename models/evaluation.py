"""The TFMA evaluation config, derived from the feature declarations and the serving outputs."""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from models import features

PREDICTION_KEY = "probabilities"  # the serving_default output TFMA scores
ACCURACY = "sparse_categorical_accuracy"


def eval_config(min_accuracy: float, max_accuracy_drop: float) -> tfma.EvalConfig:
    """Accuracy must reach `min_accuracy` and may not fall more than `max_accuracy_drop` below the baseline."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max_accuracy_drop},
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=features.transformed_name(features.LABEL),
                prediction_key=PREDICTION_KEY,
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[f.name]) for f in features.CATEGORICAL_FEATURES],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="SparseCategoricalAccuracy",
                        # Gate on the overall slice; small per-island slices are reported, not gated.
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=accuracy_threshold)
                        ],
                    ),
                    tfma.MetricConfig(class_name="SparseCategoricalCrossentropy"),
                ]
            )
        ],
    )
