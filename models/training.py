"""TFX entry points `run_fn` and `tuner_fn`, kept thin over small, separately testable steps."""

from __future__ import annotations

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import distribution, features, hyperparameters, network, signatures

BATCH_SIZE = 32
SEED = 0  # fixes weight initialisation and the Tuner's draws, so a rerun reproduces a model
TUNER_MAX_TRIALS = "max_trials"  # Tuner custom_config key


def make_dataset(file_pattern, data_accessor, tft_output: tft.TFTransformOutput, batch_size: int = BATCH_SIZE):
    """Batches of (transformed features, label) read from Transform's output, repeated forever."""
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=features.transformed_name(features.LABEL)),
        tft_output.transformed_metadata.schema,
    ).repeat()


def vocabulary_sizes(tft_output: tft.TFTransformOutput) -> tuple[dict[str, int], int]:
    """Each categorical input's size including OOV buckets, and the number of label classes."""
    sizes = {
        f.transformed_name: tft_output.vocabulary_size_by_name(f.name) + f.oov_buckets
        for f in features.CATEGORICAL_FEATURES
    }
    return sizes, tft_output.vocabulary_size_by_name(features.LABEL_VOCABULARY)


def fit(
    strategy: tf.distribute.Strategy,
    hp: keras_tuner.HyperParameters,
    category_sizes: dict[str, int],
    num_classes: int,
    train_data: tf.data.Dataset,
    eval_data: tf.data.Dataset,
    train_steps: int,
    eval_steps: int,
    log_dir: str,
) -> keras.Model:
    """Builds the model under `strategy` and trains it, logging curves to TensorBoard."""
    with strategy.scope():
        model = network.build_model(hp, category_sizes, num_classes)
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
    keras.utils.set_random_seed(SEED)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    category_sizes, num_classes = vocabulary_sizes(tft_output)
    model = fit(
        distribution.choose_strategy(),
        hyperparameters.resolve(fn_args.hyperparameters),
        category_sizes,
        num_classes,
        make_dataset(fn_args.train_files, fn_args.data_accessor, tft_output),
        make_dataset(fn_args.eval_files, fn_args.data_accessor, tft_output),
        fn_args.train_steps,
        fn_args.eval_steps,
        fn_args.model_run_dir,
    )
    model.save(fn_args.serving_model_dir, save_format="tf", signatures=signatures.make_signatures(model, tft_output))


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """A small random search over the shared search space, scored on eval accuracy."""
    keras.utils.set_random_seed(SEED)
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    category_sizes, num_classes = vocabulary_sizes(tft_output)
    tuner = keras_tuner.RandomSearch(
        lambda hp: network.build_model(hp, category_sizes, num_classes),
        hyperparameters=hyperparameters.search_space(),
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=int(fn_args.custom_config[TUNER_MAX_TRIALS]),
        directory=fn_args.working_dir,
        project_name="search",
        seed=SEED,
    )
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "x": make_dataset(fn_args.train_files, fn_args.data_accessor, tft_output),
            "validation_data": make_dataset(fn_args.eval_files, fn_args.data_accessor, tft_output),
            "steps_per_epoch": fn_args.train_steps,
            "validation_steps": fn_args.eval_steps,
            "verbose": 0,
        },
    )
