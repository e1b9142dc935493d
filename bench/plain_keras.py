"""The baseline the pipeline is timed against: what a careful person would write without TFX.

It does the pipeline's modelling work and nothing else: read the CSV, split off the same third
for evaluation, impute and z-score the measurements (with missing indicators), vocabulary-encode
the categories, optionally run the same KerasTuner search, train the same network for the same
steps, evaluate on the eval split, and save a SavedModel whose `serving_default` takes serialized
tf.Examples. It has no statistics, validation, lineage, cache or push.

Run `python -m bench.plain_keras CSV OUTPUT_DIR [--tuner]`; it prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from models import encodings, hyperparameters, network  # noqa: E402  (the pipeline's network and search space)
from models.features import Label, Problem  # noqa: E402

LABEL = "species"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex", "year"]
INTEGER = {"flipper_length_mm", "body_mass_g", "year"}  # int64 in the tf.Examples, as in the schema
MISSING = "__missing__"
EVAL_PERCENT = 33  # the project's [split] eval_fraction
BATCH_SIZE, TRAIN_STEPS, EVAL_STEPS, TUNER_STEPS, TUNER_TRIALS = 32, 200, 20, 60, 3
SEED = 0


def split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stable hash split of whole rows: the same rows are held out on every run."""
    held_out = pd.util.hash_pandas_object(table, index=False).to_numpy() % 100 < EVAL_PERCENT
    return table[~held_out], table[held_out]


class Encoder:
    """Imputation, z-scores and vocabularies learned on the training rows."""

    def __init__(self, train: pd.DataFrame):
        self.mean = {c: float(train[c].mean()) for c in NUMERIC}
        self.std = {c: float(train[c].std(ddof=0)) or 1.0 for c in NUMERIC}
        self.vocab = {c: sorted(train[c].astype(str).where(train[c].notna(), MISSING).unique()) for c in CATEGORICAL}
        self.classes = sorted(train[LABEL].unique())

    def inputs(self) -> list[encodings.ModelInput]:
        """The network's inputs: each measurement and its missing flag, each category with an OOV slot."""
        return [encodings.ModelInput(name) for c in NUMERIC for name in (c, f"{c}_missing")] + [
            encodings.ModelInput(c, len(self.vocab[c]) + 1) for c in CATEGORICAL
        ]

    def encode(self, table: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Model-ready arrays and class indices for a table."""
        x = {}
        for c in NUMERIC:
            missing = table[c].isna().to_numpy()
            x[c] = ((table[c].fillna(self.mean[c]).to_numpy() - self.mean[c]) / self.std[c]).astype(np.float32)
            x[f"{c}_missing"] = missing.astype(np.float32)
        for c in CATEGORICAL:
            index = {v: i for i, v in enumerate(self.vocab[c])}
            text = table[c].astype(str).where(table[c].notna(), MISSING)
            x[c] = text.map(index).fillna(len(index)).to_numpy(np.int64)
        y = table[LABEL].map({v: i for i, v in enumerate(self.classes)}).to_numpy(np.int64)
        return x, y

    def serving_function(self, model: keras.Model):
        """`serving_default`: serialized tf.Examples in, class probabilities and names out."""
        spec = {c: tf.io.VarLenFeature(tf.int64 if c in INTEGER else tf.float32) for c in NUMERIC}
        spec.update({c: tf.io.VarLenFeature(tf.int64 if c in INTEGER else tf.string) for c in CATEGORICAL})
        tables = {
            c: tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(self.vocab[c], tf.range(len(self.vocab[c]), dtype=tf.int64)),
                default_value=len(self.vocab[c]),
            )
            for c in CATEGORICAL
        }
        model.lookup_tables = list(tables.values())  # tracked, so the SavedModel keeps them
        names = tf.constant(self.classes)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(serialized):
            parsed = tf.io.parse_example(serialized, spec)
            rows = tf.shape(serialized, out_type=tf.int64)[0]

            def column(name, default):  # at most one value per example: the values, and where there were none
                values = tf.sparse.reset_shape(parsed[name], [rows, 1])
                present = tf.sparse.to_dense(
                    tf.SparseTensor(values.indices, tf.ones_like(values.indices[:, 0]), values.dense_shape)
                )
                return tf.reshape(tf.sparse.to_dense(values, default), [-1]), tf.reshape(present, [-1]) == 0

            x = {}
            for c in NUMERIC:
                value, missing = column(c, 0)
                value = tf.cast(value, tf.float32)
                x[c] = (tf.where(missing, self.mean[c], value) - self.mean[c]) / self.std[c]
                x[f"{c}_missing"] = tf.cast(missing, tf.float32)
            for c in CATEGORICAL:
                value, missing = column(c, 0 if c in INTEGER else "")
                text = tf.strings.as_string(value) if c in INTEGER else value
                x[c] = tables[c].lookup(tf.where(missing, MISSING, text))
            probabilities = model(x)
            return {"probabilities": probabilities, "class_name": tf.gather(names, tf.argmax(probabilities, axis=-1))}

        return serve.get_concrete_function()


def dataset(x: dict[str, np.ndarray], y: np.ndarray, shuffle: bool) -> tf.data.Dataset:
    """Batches of in-memory arrays, repeated forever."""
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(min(len(y), 10_000), seed=SEED)
    return data.batch(BATCH_SIZE).repeat().prefetch(tf.data.AUTOTUNE)


def tune(encoder: Encoder, label: Label, train_data, eval_data, work_dir: str) -> keras_tuner.HyperParameters:
    """The same random search as the pipeline's Tuner: same space, trials, steps and objective."""
    tuner = keras_tuner.RandomSearch(
        lambda hp: network.build_model(hp, encoder.inputs(), label),
        hyperparameters=hyperparameters.search_space(),
        objective=network.tuner_objective(label),
        max_trials=TUNER_TRIALS,
        directory=work_dir,
        project_name="search",
        seed=SEED,
    )
    tuner.search(
        train_data, validation_data=eval_data, steps_per_epoch=TUNER_STEPS, validation_steps=EVAL_STEPS, verbose=0
    )
    return tuner.get_best_hyperparameters()[0]


def main() -> None:
    """Reads, encodes, (tunes,) trains, evaluates and saves; prints what it measured."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("output_dir")
    parser.add_argument("--tuner", action="store_true", help="run the same KerasTuner search first")
    parser.add_argument(
        "--skip-keras-autograph",
        action="store_true",
        help="apply the pipeline's AutoGraph fix for tf_keras (off: the script as a user writes it)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    if args.skip_keras_autograph:
        network.skip_autograph_for_keras()
    keras.utils.set_random_seed(SEED)

    train, held_out = split(pd.read_csv(args.csv))
    encoder = Encoder(train)
    label = Label(LABEL, Problem.MULTICLASS, tuple(encoder.classes))
    train_x, train_y = encoder.encode(train)
    eval_x, eval_y = encoder.encode(held_out)
    train_data, eval_data = dataset(train_x, train_y, shuffle=True), dataset(eval_x, eval_y, shuffle=False)

    with tempfile.TemporaryDirectory() as work_dir:
        hp = tune(encoder, label, train_data, eval_data, work_dir) if args.tuner else hyperparameters.search_space()
    model = network.build_model(hp, encoder.inputs(), label)
    epochs = max(1, min(10, TRAIN_STEPS // 10))  # as the pipeline's Trainer
    model.fit(
        train_data,
        epochs=epochs,
        steps_per_epoch=TRAIN_STEPS // epochs,
        validation_data=eval_data,
        validation_steps=EVAL_STEPS,
        verbose=0,
    )
    accuracy = model.evaluate(eval_x, eval_y, batch_size=1024, verbose=0, return_dict=True)["accuracy"]
    model.save(args.output_dir, save_format="tf", signatures={"serving_default": encoder.serving_function(model)})
    print(
        json.dumps(
            {
                "rows": len(train) + len(held_out),
                "eval_rows": len(held_out),
                "accuracy": accuracy,
                "seconds_in_script": time.monotonic() - started,
            }
        )
    )


if __name__ == "__main__":
    main()
