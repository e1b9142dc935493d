"""The Keras network, built from the feature declarations and a set of hyperparameters."""

from __future__ import annotations

import keras_tuner
import tf_keras as keras

from models import features


def model_inputs() -> dict[str, keras.Input]:
    """One Keras input per transformed feature, typed to match `preprocessing_fn`'s output."""
    inputs = {f.transformed_name: keras.Input(shape=(), name=f.transformed_name) for f in features.NUMERIC_FEATURES}
    for f in features.CATEGORICAL_FEATURES:
        inputs[f.transformed_name] = keras.Input(shape=(), name=f.transformed_name, dtype="int64")
    return inputs


def build_model(
    hp: keras_tuner.HyperParameters,
    category_sizes: dict[str, int],
    num_classes: int,
) -> keras.Model:
    """A small MLP over z-scored numbers and one-hot categories, compiled for multi-class output.

    `category_sizes` maps each categorical feature's transformed name to its vocabulary size
    including out-of-vocabulary buckets.
    """
    inputs = model_inputs()
    columns = [keras.layers.Reshape((1,))(inputs[f.transformed_name]) for f in features.NUMERIC_FEATURES]
    for f in features.CATEGORICAL_FEATURES:
        encode = keras.layers.CategoryEncoding(num_tokens=category_sizes[f.transformed_name], output_mode="one_hot")
        columns.append(encode(inputs[f.transformed_name]))
    x = keras.layers.Concatenate()(columns)
    for _ in range(hp.get("hidden_layers")):
        x = keras.layers.Dense(hp.get("hidden_units"), activation="relu")(x)
    probabilities = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs=inputs, outputs=probabilities)
    model.compile(
        optimizer=keras.optimizers.Adam(hp.get("learning_rate")),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model
