"""The network per problem type, and the shared hyperparameter space, on a few rows."""

import numpy as np
import pytest
import tensorflow as tf

from models import encodings, hyperparameters, network
from models.features import OUTPUT_NAMES, Label, Problem

INPUTS = [
    encodings.ModelInput("length_xf"),
    encodings.ModelInput("island_xf", cardinality=4),
    encodings.ModelInput("company_xf", cardinality=1000),  # above the one-hot limit: embedded
]
MULTICLASS = Label("species", Problem.MULTICLASS, ("a", "b", "c"))
BINARY = Label("churned", Problem.BINARY, ("no", "yes"))
REGRESSION = Label("price", Problem.REGRESSION)


def _rows(n: int) -> dict:
    """n rows of transformed features, as Transform would produce them."""
    rng = np.random.default_rng(0)
    return {
        "length_xf": rng.normal(size=n).astype("float32"),
        "island_xf": rng.integers(0, 4, size=n),
        "company_xf": rng.integers(0, 1000, size=n),
    }


def _model(label: Label, target: network.TargetScale | None = None):
    return network.build_model(hyperparameters.search_space(), INPUTS, label, target or network.TargetScale())


def test_multiclass_outputs_one_probability_row_per_example():
    model = _model(MULTICLASS)
    probabilities = model.predict(_rows(5), verbose=0)
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), np.ones(5), rtol=1e-5)
    assert model.output_names == [OUTPUT_NAMES[Problem.MULTICLASS]]


def test_binary_outputs_one_probability_and_tracks_auc():
    model = _model(BINARY)
    probability = model.predict(_rows(5), verbose=0)
    assert probability.shape == (5, 1)
    assert ((probability > 0) & (probability < 1)).all()
    assert {m.name for m in model.compiled_metrics._user_metrics} == {"accuracy", "auc"}
    assert isinstance(model.loss, tf.keras.losses.BinaryCrossentropy)


def test_regression_output_starts_in_the_label_units():
    model = _model(REGRESSION, network.TargetScale(mean=150.0, std=75.0))
    prediction = model.predict(_rows(200), verbose=0)
    assert prediction.shape == (200, 1)
    assert 100 < prediction.mean() < 200  # untrained, yet centred on the label's mean, not on 0
    assert {m.name for m in model.compiled_metrics._user_metrics} == {"rmse", "mae"}


def test_inputs_are_exactly_the_declared_ones_with_their_types():
    model = _model(MULTICLASS)
    assert set(model.input) == {spec.name for spec in INPUTS}
    assert model.input["island_xf"].dtype == tf.int64
    assert model.input["length_xf"].dtype == tf.float32
    assert any(isinstance(layer, tf.keras.layers.Embedding) for layer in model.layers)


@pytest.mark.parametrize(
    "label, objective",
    [
        (MULTICLASS, ("val_accuracy", "max")),
        (BINARY, ("val_auc", "max")),
        (REGRESSION, ("val_loss", "min")),
    ],
)
def test_tuner_objective_fits_the_problem(label, objective):
    chosen = network.tuner_objective(label)
    assert (chosen.name, chosen.direction) == objective


def test_model_learns_a_separable_toy_problem():
    rows = _rows(64)
    labels = (rows["length_xf"] > 0).astype("int64")
    model = _model(BINARY)
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
    model = network.build_model(hp, INPUTS, MULTICLASS)
    assert sum(isinstance(layer, tf.keras.layers.Dense) for layer in model.layers) == 4  # 3 hidden + output


def test_autograph_leaves_tf_keras_code_alone_once_told():
    import tf_keras as keras
    from tensorflow.python.autograph.core import config
    from tensorflow.python.autograph.impl import conversion

    network.skip_autograph_for_keras()
    network.skip_autograph_for_keras()  # idempotent: one rule, however often training starts
    assert conversion.is_allowlisted(keras.layers.Dense.call)
    assert sum(rule.matches("tf_keras") for rule in config.CONVERSION_RULES) == 1
