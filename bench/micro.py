"""In-process measurements on a finished run's artifacts: Trainer input, serving latency, record counts.

Run `python -m bench.micro trainer_input|serving|record_counts OUTPUT`, where OUTPUT is a
`tfxp run --output` folder; each prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx.components.util import tfxio_utils
from tfx.types import artifact_utils

import models  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from bench.measure import PROJECT_ROOT
from models import budget, hyperparameters, network, training
from pipeline import config, lineage, nodes
from pipeline import settings as settings_module

WARM_STEPS, TIMED_STEPS, ROUNDS = 50, 2000, 3
LATENCY_CALLS, WARM_CALLS = 300, 20


def _latest(output: Path) -> tuple[object, dict[str, lineage.NodeExecution]]:
    """The MLMD store and the newest run's executions."""
    store = lineage.open_store(output)
    return store, lineage.latest_run_executions(store)


def _artifact(store, mlmd_artifact):
    """A TFX Artifact object for an MLMD artifact, as a component's executor receives it."""
    [artifact_type] = store.get_artifact_types_by_id([mlmd_artifact.type_id])
    return artifact_utils.deserialize_artifact(artifact_type, mlmd_artifact)


def _steps_per_second(models_and_data: dict[str, tuple[keras.Model, tf.data.Dataset]]) -> dict[str, float]:
    """Training steps per second of each (model, data), the median of ROUNDS interleaved timings.

    Interleaving puts each side through the same stretches of machine noise.
    """
    for model, data in models_and_data.values():
        model.fit(data, epochs=1, steps_per_epoch=WARM_STEPS, verbose=0)  # traces the step
    rates = {name: [] for name in models_and_data}
    for _ in range(ROUNDS):
        for name, (model, data) in models_and_data.items():
            started = time.perf_counter()
            model.fit(data, epochs=1, steps_per_epoch=TIMED_STEPS, verbose=0)
            rates[name].append(TIMED_STEPS / (time.perf_counter() - started))
    return {name: float(np.median(r)) for name, r in rates.items()}


def _batches_per_second(data: tf.data.Dataset) -> float:
    """How fast `data` yields batches with no training at all, read inside TensorFlow (no Python loop)."""
    data.take(WARM_STEPS).reduce(0, lambda n, _: n + 1)
    started = time.perf_counter()
    data.take(TIMED_STEPS).reduce(0, lambda n, _: n + 1)
    return TIMED_STEPS / (time.perf_counter() - started)


def trainer_input(output: Path) -> dict:
    """`model.fit` fed by the Trainer's tf.data pipeline against the same model on batches already in memory."""
    network.skip_autograph_for_keras()
    settings = settings_module.resolve(config.load_project(PROJECT_ROOT / config.CONFIG_FILE), PROJECT_ROOT)
    label = settings.declarations.label
    store, executions = _latest(output)
    transform = executions[nodes.TRANSFORM]
    tft_output = tft.TFTransformOutput(transform.output("transform_graph").uri)
    examples = _artifact(store, executions[nodes.EXAMPLE_GEN].output("examples"))
    accessor = DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None,
        data_view_decode_fn=None,
    )
    train_files = [f"{examples.uri}/Split-train/*"]
    inputs = training.model_inputs(settings.declarations, tft_output)

    def fresh_model(steps_per_execution: int = network.STEPS_PER_EXECUTION) -> keras.Model:
        keras.utils.set_random_seed(0)
        return network.build_model(
            hyperparameters.search_space(), inputs, label, steps_per_execution=steps_per_execution
        )

    # As run_fn reads it at this size: shuffled across the whole training split.
    batch = budget.batch_size_for(training.count_examples(train_files))
    streamed = training.make_dataset(
        train_files, accessor, tft_output, label, batch, training.count_examples(train_files)
    )
    in_memory = streamed.take(TIMED_STEPS).cache().repeat()
    for _ in in_memory.take(TIMED_STEPS):  # fills the cache before timing
        pass
    alternative = 10 if network.STEPS_PER_EXECUTION == 1 else 1
    rates = _steps_per_second(
        {
            "tf_data": (fresh_model(), streamed),
            "in_memory": (fresh_model(), in_memory),
            f"tf_data_steps_per_execution_{alternative}": (fresh_model(alternative), streamed),
        }
    )
    examples_per_second = {k: v * batch for k, v in rates.items()}
    reading = {
        "shuffled": _batches_per_second(streamed),
        "unshuffled": _batches_per_second(training.make_dataset(train_files, accessor, tft_output, label, batch)),
    }
    return {
        "batch_size": batch,
        "steps": TIMED_STEPS,
        "rounds": ROUNDS,
        "examples_per_second": examples_per_second,
        "ratio": examples_per_second["tf_data"] / examples_per_second["in_memory"],
        "steps_per_execution": {"shipped": network.STEPS_PER_EXECUTION, "alternative": alternative},
        "reading_only_examples_per_second": {k: v * batch for k, v in reading.items()},
    }


def _percentiles(call, argument, calls: int = LATENCY_CALLS) -> dict[str, float]:
    """p50 and p99 latency of `call(argument)` in milliseconds, after a warm-up."""
    for _ in range(WARM_CALLS):
        call(argument)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call(argument)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def serving(output: Path) -> dict:
    """Latency of the pushed `serving_default` on serialized tf.Examples against the model on ready tensors.

    The ready-tensor side calls the SavedModel's restored Keras forward pass on Transform's
    outputs: the model's own work, without parsing or preprocessing.
    """
    _, executions = _latest(output)
    model_dir = lineage.custom_property(executions[nodes.PUSHER].output("pushed_model"), "pushed_destination")
    examples_uri = executions[nodes.EXAMPLE_GEN].output("examples").uri
    files = tf.io.gfile.glob(f"{examples_uri}/Split-eval/*")
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(64)]
    loaded = tf.saved_model.load(model_dir)
    serve, transform = loaded.signatures["serving_default"], loaded.signatures["transform_features"]
    # The forward pass traced for inference (training=False), called directly as serving_default is.
    [forward] = [f for f in loaded.__call__.concrete_functions if f.structured_input_signature[0][1] is False]
    model_inputs = set(forward.structured_input_signature[0][0])
    results = {"model_dir": model_dir}
    for batch in (1, 64):
        examples = tf.constant(serialized[:batch])
        ready = {k: v for k, v in transform(examples=examples).items() if k in model_inputs}
        signature = _percentiles(lambda x: serve(examples=x), examples)
        keras_call = _percentiles(lambda x: forward(x, False, None), ready)
        results[f"batch_{batch}"] = {
            "serving_default": signature,
            "keras_on_ready_tensors": keras_call,
            "p50_ratio": signature["p50_ms"] / keras_call["p50_ms"],
        }
    return results


def record_counts(output: Path) -> dict:
    """Examples per split as StatisticsGen counted them, and as ExampleGen wrote them."""
    import tensorflow_data_validation as tfdv

    _, executions = _latest(output)
    statistics_uri = executions[nodes.STATISTICS_GEN].output("statistics").uri
    examples_uri = executions[nodes.EXAMPLE_GEN].output("examples").uri
    counts = {}
    for split in ("train", "eval"):
        stats = tfdv.load_stats_binary(f"{statistics_uri}/Split-{split}/FeatureStats.pb")
        files = tf.io.gfile.glob(f"{examples_uri}/Split-{split}/*")
        counts[split] = {
            "statistics": int(stats.datasets[0].num_examples),
            "written": int(tf.data.TFRecordDataset(files, compression_type="GZIP").reduce(0, lambda n, _: n + 1)),
        }
    return counts


if __name__ == "__main__":
    commands = {"trainer_input": trainer_input, "serving": serving, "record_counts": record_counts}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        sys.exit(f"usage: python -m bench.micro {{{'|'.join(commands)}}} OUTPUT")
    print(json.dumps(commands[sys.argv[1]](Path(sys.argv[2]))))
