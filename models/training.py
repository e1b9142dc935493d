"""TFX entry points `run_fn` and `tuner_fn`, kept thin over small, separately testable steps."""

from __future__ import annotations

import keras_tuner
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging  # the logger TFX and the run log show; stdlib INFO is dropped
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import distribution, encodings, features, hyperparameters, network, signatures
from models.features import Declarations, Problem

BATCH_SIZE = 32
SEED = 0  # fixes weight initialisation and the Tuner's draws, so a rerun reproduces a model
TARGET_SAMPLE = 10_000  # labels read to set a regression output's starting scale


def make_dataset(
    file_pattern, data_accessor, tft_output: tft.TFTransformOutput, label: features.Label, batch_size: int = BATCH_SIZE
) -> tf.data.Dataset:
    """Batches of (transformed features, label) read from Transform's output, repeated forever."""
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=label.transformed_name),
        tft_output.transformed_metadata.schema,
    ).repeat()


def global_batch_size(strategy: tf.distribute.Strategy) -> int:
    """Examples per step across replicas: each replica keeps BATCH_SIZE, so more devices train faster per step."""
    return BATCH_SIZE * strategy.num_replicas_in_sync


def model_inputs(declarations: Declarations, tft_output: tft.TFTransformOutput) -> list[encodings.ModelInput]:
    """Every Transform output the network takes, with each category's number of values."""
    return [
        spec
        for f in declarations.features
        for spec in encodings.of(f.encoding).model_inputs(f, tft_output.vocabulary_size_by_name)
    ]


def target_scale(label: features.Label, train_data: tf.data.Dataset) -> network.TargetScale:
    """A regression label's mean and deviation over a training sample; identity for classification."""
    if label.problem is not Problem.REGRESSION:
        return network.TargetScale()
    labels = np.concatenate([y.numpy() for _, y in train_data.take(max(1, TARGET_SAMPLE // BATCH_SIZE))])
    return network.TargetScale(float(labels.mean()), float(labels.std()) or 1.0)


def fit(
    strategy: tf.distribute.Strategy,
    hp: keras_tuner.HyperParameters,
    inputs: list[encodings.ModelInput],
    label: features.Label,
    train_data: tf.data.Dataset,
    eval_data: tf.data.Dataset,
    train_steps: int,
    eval_steps: int,
    log_dir: str,
) -> keras.Model:
    """Builds the model under `strategy` and trains it, logging curves to TensorBoard."""
    scale = target_scale(label, train_data)
    with strategy.scope():
        model = network.build_model(hp, inputs, label, scale)
    epochs = max(1, min(10, train_steps // 10))
    model.fit(
        train_data,
        epochs=epochs,
        steps_per_epoch=max(1, train_steps // epochs),
        validation_data=eval_data,
        validation_steps=eval_steps,
        callbacks=[keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch")],
        verbose=0,
    )
    return model


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains with the Tuner's best hyperparameters (or the defaults) and exports for serving."""
    network.skip_autograph_for_keras()
    keras.utils.set_random_seed(SEED)
    declarations = features.from_custom_config(fn_args.custom_config)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    strategy = distribution.choose_strategy()
    hp = hyperparameters.resolve(fn_args.hyperparameters)
    batch_size = global_batch_size(strategy)
    logging.info("Training with hyperparameters %s, global batch %d", hp.values, batch_size)
    model = fit(
        strategy,
        hp,
        model_inputs(declarations, tft_output),
        declarations.label,
        make_dataset(fn_args.train_files, fn_args.data_accessor, tft_output, declarations.label, batch_size),
        make_dataset(fn_args.eval_files, fn_args.data_accessor, tft_output, declarations.label, batch_size),
        fn_args.train_steps,
        fn_args.eval_steps,
        fn_args.model_run_dir,
    )
    model.summary(print_fn=logging.info)
    exported = signatures.make_signatures(model, tft_output, declarations)
    model.save(fn_args.serving_model_dir, save_format="tf", signatures=exported)


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """A small random search over the shared search space, scored on the eval split."""
    network.skip_autograph_for_keras()
    keras.utils.set_random_seed(SEED)
    declarations = features.from_custom_config(fn_args.custom_config)
    label = declarations.label
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    inputs = model_inputs(declarations, tft_output)
    train_data = make_dataset(fn_args.train_files, fn_args.data_accessor, tft_output, label)
    scale = target_scale(label, train_data)
    tuner = keras_tuner.RandomSearch(
        lambda hp: network.build_model(hp, inputs, label, scale),
        hyperparameters=hyperparameters.search_space(),
        objective=network.tuner_objective(label),
        max_trials=int(fn_args.custom_config[features.TUNER_MAX_TRIALS]),
        directory=fn_args.working_dir,
        project_name="search",
        seed=SEED,
    )
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "x": train_data,
            "validation_data": make_dataset(fn_args.eval_files, fn_args.data_accessor, tft_output, label),
            "steps_per_epoch": fn_args.train_steps,
            "validation_steps": fn_args.eval_steps,
            "verbose": 0,
        },
    )
