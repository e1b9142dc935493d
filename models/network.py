"""The Keras network, built from the declared inputs, the label's problem type and a set of hyperparameters."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import keras_tuner
import tf_keras as keras

from models.encodings import ModelInput
from models.features import OUTPUT_NAMES, Label, Problem

ONE_HOT_LIMIT = 64  # categories up to this many are one-hot; more get an embedding
EMBEDDING_L2 = 3e-2
STEPS_PER_EXECUTION = (
    10  # training steps per graph call: tf.data-fed training 44k → 54k examples/s (bench/RESULTS.md §5)
)


@dataclasses.dataclass(frozen=True)
class TargetScale:
    """The regression label's training mean and deviation, so the output layer starts in the label's units."""

    mean: float = 0.0
    std: float = 1.0


def skip_autograph_for_keras() -> None:
    """Stops AutoGraph re-compiling tf_keras's own code on each process's first `fit` (measured: 11.9 s → 0.4 s).

    TensorFlow exempts the `keras` package from AutoGraph, but not `tf_keras`, its Keras 2 copy;
    Keras's training code is graph-safe without conversion, as it was under the old name.
    """
    try:
        from tensorflow.python.autograph.core import config, config_lib  # no public switch exists
    except ImportError:  # a TensorFlow that moved it: training is only slower to start
        logging.warning("AutoGraph's conversion rules were not found; tf_keras code will be converted")
        return
    if not any(isinstance(r, config_lib.DoNotConvert) and r.matches("tf_keras") for r in config.CONVERSION_RULES):
        config.CONVERSION_RULES = (config_lib.DoNotConvert("tf_keras"), *config.CONVERSION_RULES)


def _encoded(spec: ModelInput, tensor) -> keras.layers.Layer:
    """A float input as a column, a small category one-hot, a large one embedded."""
    if spec.cardinality == 0:
        return keras.layers.Reshape((1,))(tensor)
    if spec.cardinality <= ONE_HOT_LIMIT:
        return keras.layers.CategoryEncoding(num_tokens=spec.cardinality, output_mode="one_hot")(tensor)
    width = min(32, round(1.6 * spec.cardinality**0.56))
    # Hashed ids seen a few times each are memorised without a penalty (churn AUC 0.58 → 0.67 with it).
    return keras.layers.Embedding(spec.cardinality, width, embeddings_regularizer=keras.regularizers.l2(EMBEDDING_L2))(
        tensor
    )


def _head(label: Label, x, target: TargetScale):
    """Output layer, loss and metrics that fit the problem type."""
    name = OUTPUT_NAMES[label.problem]
    if label.problem is Problem.MULTICLASS:
        output = keras.layers.Dense(len(label.classes), activation="softmax", name=name)(x)
        return (
            output,
            keras.losses.SparseCategoricalCrossentropy(),
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    if label.problem is Problem.BINARY:
        output = keras.layers.Dense(1, activation="sigmoid", name=name)(x)
        return (
            output,
            keras.losses.BinaryCrossentropy(),
            [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        )
    raw = keras.layers.Dense(1)(x)
    output = keras.layers.Rescaling(scale=target.std, offset=target.mean, name=name)(raw)
    return (
        output,
        keras.losses.MeanSquaredError(),
        [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")],
    )


def build_model(
    hp: keras_tuner.HyperParameters,
    inputs: Sequence[ModelInput],
    label: Label,
    target: TargetScale = TargetScale(),
    steps_per_execution: int = STEPS_PER_EXECUTION,
) -> keras.Model:
    """A small MLP over z-scored numbers and encoded categories, compiled for the label's problem."""
    keras_inputs = {
        spec.name: keras.Input(shape=(), name=spec.name, dtype="int64" if spec.cardinality else "float32")
        for spec in inputs
    }
    x = keras.layers.Concatenate()([_encoded(spec, keras_inputs[spec.name]) for spec in inputs])
    for _ in range(hp.get("hidden_layers")):
        x = keras.layers.Dense(hp.get("hidden_units"), activation="relu")(x)
    output, loss, metrics = _head(label, x, target)
    model = keras.Model(inputs=keras_inputs, outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(hp.get("learning_rate")),
        loss=loss,
        metrics=metrics,
        steps_per_execution=steps_per_execution,
    )
    return model


def tuner_objective(label: Label) -> keras_tuner.Objective:
    """What the Tuner maximises or minimises on the eval split."""
    if label.problem is Problem.MULTICLASS:
        return keras_tuner.Objective("val_accuracy", "max")
    if label.problem is Problem.BINARY:
        return keras_tuner.Objective("val_auc", "max")
    return keras_tuner.Objective("val_loss", "min")
