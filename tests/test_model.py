"""The network and the shared hyperparameter space, on a few rows."""

import numpy as np
import tensorflow as tf

from models import features, hyperparameters, network

SIZES = {f.transformed_name: 4 for f in features.CATEGORICAL_FEATURES}


def _rows(n: int) -> dict:
    """n rows of transformed features, as Transform would produce them."""
    rng = np.random.default_rng(0)
    batch = {f.transformed_name: rng.normal(size=n).astype("float32") for f in features.NUMERIC_FEATURES}
    batch.update({f.transformed_name: rng.integers(0, 4, size=n) for f in features.CATEGORICAL_FEATURES})
    return batch


def test_model_outputs_one_probability_row_per_example():
    model = network.build_model(hyperparameters.search_space(), SIZES, num_classes=3)
    probabilities = model.predict(_rows(5), verbose=0)
    assert probabilities.shape == (5, 3)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), np.ones(5), rtol=1e-5)


def test_model_inputs_are_exactly_the_transformed_features():
    model = network.build_model(hyperparameters.search_space(), SIZES, num_classes=3)
    assert set(model.input) == {f.transformed_name for f in features.FEATURES}
    assert model.input[features.CATEGORICAL_FEATURES[0].transformed_name].dtype == tf.int64


def test_model_learns_a_separable_toy_problem():
    rows = _rows(64)
    labels = (rows[features.NUMERIC_FEATURES[0].transformed_name] > 0).astype("int64")
    model = network.build_model(hyperparameters.search_space(), SIZES, num_classes=2)
    history = model.fit(rows, labels, epochs=30, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_defaults_are_used_when_no_tuner_ran():
    hp = hyperparameters.resolve(None)
    assert (hp.get("hidden_layers"), hp.get("hidden_units"), hp.get("learning_rate")) == (2, 16, 1e-2)


def test_tuned_values_override_the_defaults():
    tuned = hyperparameters.search_space()
    tuned.values.update({"hidden_layers": 3, "hidden_units": 32, "learning_rate": 3e-3})
    hp = hyperparameters.resolve(tuned.get_config())
    assert (hp.get("hidden_layers"), hp.get("hidden_units"), hp.get("learning_rate")) == (3, 32, 3e-3)
    model = network.build_model(hp, SIZES, num_classes=3)
    assert sum(isinstance(layer, tf.keras.layers.Dense) for layer in model.layers) == 4  # 3 hidden + output
