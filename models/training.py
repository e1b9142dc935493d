"""TFX entry points `run_fn` and `tuner_fn`, kept thin over small, separately testable steps."""

from __future__ import annotations

import time
from collections.abc import Sequence

import keras_tuner
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging  # the logger TFX and the run log show; stdlib INFO is dropped
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import budget, distribution, encodings, features, hyperparameters, network, signatures
from models.features import Declarations, Problem

SEED = 0  # fixes weight initialisation, the shuffle and the Tuner's draws, so a rerun reproduces a model


def reproducible() -> None:
    """Seeds every draw and makes TensorFlow's kernels and input pipeline deterministic.

    Seeds alone leave thread-scheduling noise (parallel reads, reductions) that changes a model's bits
    from run to run; with it gone, the same data and code retrain the same files, so a run that had to
    re-make its artifacts (lost or damaged ones) finds its model already serving instead of pushing again.
    """
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()


TARGET_SAMPLE = 10_000  # labels read to set a regression output's starting scale
COUNT_BATCH = 4096  # records counted per step: 670k examples in 5 s, against 29 s one by one


def count_examples(file_patterns: list[str]) -> int:
    """How many examples the files matching the patterns hold."""
    files = [path for pattern in file_patterns for path in tf.io.gfile.glob(pattern)]
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(COUNT_BATCH)
    return int(records.reduce(np.int64(0), lambda count, batch: count + tf.cast(tf.shape(batch)[0], tf.int64)))


def make_dataset(
    file_pattern,
    data_accessor,
    tft_output: tft.TFTransformOutput,
    label: features.Label,
    batch_size: int,
    shuffle_rows: int = 0,
) -> tf.data.Dataset:
    """Batches of (transformed features, label): ExampleGen's examples through Transform's graph, repeated forever.

    `shuffle_rows`: the shuffle buffer; the whole training split, so the file's row order (by date,
    by id, by the label) never reaches training.
    """
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=batch_size,
        shuffle=shuffle_rows > 0,
        shuffle_buffer_size=max(1, shuffle_rows),
        shuffle_seed=SEED,
    )
    raw = data_accessor.tf_dataset_factory(file_pattern, options, tft_output.raw_metadata.schema)
    transform = tft_output.transform_features_layer()

    @tf.autograph.experimental.do_not_convert  # plain graph code: converting Keras's layer code costs seconds
    def transformed(raw_batch: dict) -> tuple[dict, tf.Tensor]:
        features = dict(transform(raw_batch))
        return features, features.pop(label.transformed_name)

    dataset = raw.map(transformed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return distribution.shard_by_batch(dataset.prefetch(tf.data.AUTOTUNE).repeat())


def model_inputs(declarations: Declarations, tft_output: tft.TFTransformOutput) -> list[encodings.ModelInput]:
    """Every Transform output the network takes, with each category's number of values."""
    return [
        spec
        for f in declarations.features
        for spec in encodings.of(f.encoding).model_inputs(f, tft_output.vocabulary_size_by_name)
    ]


def target_scale(label: features.Label, train_data: tf.data.Dataset, batch_size: int) -> network.TargetScale:
    """A regression label's mean and deviation over a training sample; identity for classification."""
    if label.problem is not Problem.REGRESSION:
        return network.TargetScale()
    labels = np.concatenate([y.numpy() for _, y in train_data.take(max(1, TARGET_SAMPLE // batch_size))])
    return network.TargetScale(float(labels.mean()), float(labels.std()) or 1.0)


class StopAfter(keras.callbacks.Callback):
    """Stops training once `seconds` have passed, at the end of the current step (Keras has no such limit)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.stopped_early = seconds, False

    def on_train_begin(self, logs=None):
        self._deadline = time.monotonic() + self.seconds

    def on_train_batch_end(self, batch, logs=None):
        late = time.monotonic() > self._deadline
        if distribution.on_any_worker(self.model.distribute_strategy, late):  # every worker stops at the same step
            self.model.stop_training = self.stopped_early = True


def callbacks(plan: budget.Schedule, label: features.Label) -> list[keras.callbacks.Callback]:
    """The wall-clock cap; and, training by epochs, a smaller step when the eval split stops improving,
    then an early stop that keeps the best epoch's weights.

    Binary models watch the eval AUC, which the gate judges: on small tables the eval loss rises
    (overconfidence) while the AUC still improves (modechoice: AUC 0.81 stopping on the loss, 0.87 on
    the AUC). The others watch the loss: accuracy on a small eval split plateaus in steps, and
    stopping on it kept too early an epoch (iris: 0.89 against 0.94).
    """
    stops: list[keras.callbacks.Callback] = [StopAfter(plan.max_seconds)]
    if plan.patience is not None:
        watched = (
            keras_tuner.Objective("val_auc", "max")
            if label.problem is Problem.BINARY
            else keras_tuner.Objective("val_loss", "min")
        )
        stops += [
            keras.callbacks.ReduceLROnPlateau(
                watched.name, factor=0.3, patience=max(1, plan.patience // 2), mode=watched.direction
            ),
            keras.callbacks.EarlyStopping(
                watched.name, patience=plan.patience, mode=watched.direction, restore_best_weights=True
            ),
        ]
    return stops


def fit(
    strategy: tf.distribute.Strategy,
    hp: keras_tuner.HyperParameters,
    inputs: list[encodings.ModelInput],
    label: features.Label,
    train_data: tf.data.Dataset,
    eval_data: tf.data.Dataset,
    plan: budget.Schedule,
    log_dir: str,
    backups: Sequence[keras.callbacks.Callback] = (),
) -> keras.Model:
    """Builds the model under `strategy` and trains it as `plan` says, logging curves to TensorBoard;
    `backups`: `distribution.backup_callbacks`."""
    scale = target_scale(label, train_data, plan.batch_size)
    with strategy.scope():
        model = network.build_model(hp, inputs, label, scale)
    history = model.fit(
        train_data,
        epochs=plan.epochs,
        steps_per_epoch=plan.steps_per_epoch,
        validation_data=eval_data,
        validation_steps=plan.validation_steps,
        callbacks=[
            *backups,
            keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"),
            *callbacks(plan, label),
        ],
        verbose=0,
    )
    logging.info("Trained %d of at most %d epochs of %d steps", len(history.epoch), plan.epochs, plan.steps_per_epoch)
    return model


def plan_for(fn_args: tfx.components.FnArgs, replicas: int) -> budget.Schedule:
    """The project's budget applied to the transformed splits' sizes."""
    train_rows, eval_rows = count_examples(fn_args.train_files), count_examples(fn_args.eval_files)
    plan = budget.schedule(budget.Budget.from_custom_config(fn_args.custom_config), train_rows, eval_rows, replicas)
    logging.info("%d training and %d eval examples: %s", train_rows, eval_rows, plan)
    return plan


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains with the Tuner's best hyperparameters (or the defaults) and exports for serving; in a multi-worker
    cluster, every worker trains and only the chief's model and logs land in the Trainer's folders."""
    strategy = distribution.choose_strategy(distribution.from_custom_config(fn_args.custom_config))  # first: see there
    network.skip_autograph_for_keras()
    reproducible()
    declarations = features.from_custom_config(fn_args.custom_config)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    hp = hyperparameters.resolve(fn_args.hyperparameters)
    plan = plan_for(fn_args, strategy.num_replicas_in_sync)
    logging.info("Training with hyperparameters %s, global batch %d", hp.values, plan.batch_size)
    label = declarations.label
    with distribution.chief_writes(strategy, fn_args.serving_model_dir, fn_args.model_run_dir) as (serving, logs):
        model = fit(
            strategy,
            hp,
            model_inputs(declarations, tft_output),
            label,
            make_dataset(
                fn_args.train_files, fn_args.data_accessor, tft_output, label, plan.batch_size, plan.train_rows
            ),
            make_dataset(fn_args.eval_files, fn_args.data_accessor, tft_output, label, plan.batch_size),
            plan,
            logs,
            distribution.backup_callbacks(strategy, fn_args.model_run_dir),
        )
        model.summary(print_fn=logging.info)
        model.save(serving, save_format="tf", signatures=signatures.make_signatures(model, tft_output, declarations))
    distribution.wait_for_every_worker(strategy)


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """A small random search over the shared search space, scored on the eval split."""
    network.skip_autograph_for_keras()
    reproducible()
    declarations = features.from_custom_config(fn_args.custom_config)
    label = declarations.label
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    inputs = model_inputs(declarations, tft_output)
    plan = plan_for(fn_args, replicas=1)
    train_data = make_dataset(
        fn_args.train_files, fn_args.data_accessor, tft_output, label, plan.batch_size, plan.train_rows
    )
    scale = target_scale(label, train_data, plan.batch_size)
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
            "validation_data": make_dataset(
                fn_args.eval_files, fn_args.data_accessor, tft_output, label, plan.batch_size
            ),
            "epochs": plan.epochs,
            "steps_per_epoch": plan.steps_per_epoch,
            "validation_steps": plan.validation_steps,
            "callbacks": callbacks(plan, label),
            "verbose": 0,
        },
    )
