"""Picks the `tf.distribute` strategy that training runs under, as `[training] strategy` says, and what each
worker of a multi-worker cluster writes.

Every worker of a cluster runs the same `run_fn` with the same output folders (on Vertex AI, TFX's Trainer
executor runs on every replica), so the chief alone writes the model and the TensorBoard logs; the others
write theirs to temporary folders that are deleted, as Keras's multi-worker guide does.

TensorFlow-free at import (TensorFlow is imported where a strategy is built), so the project file can
name the choices without loading it.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from absl import logging  # the logger TFX and the run log show; stdlib INFO is dropped

if TYPE_CHECKING:
    import tensorflow as tf
    import tf_keras as keras

CUSTOM_CONFIG_KEY = "strategy"  # where run_fn finds the project's choice in the Trainer's custom_config
TF_CONFIG = "TF_CONFIG"  # the cluster and this worker's place in it, set on every worker by Vertex AI or a TFJob
BACKUP_FOLDER = "backup"  # in the Trainer's model_run folder: one per execution, the same for all its workers


class Strategy(str, enum.Enum):
    """How training is spread over devices and machines (`[training] strategy`)."""

    AUTO = "auto"  # MirroredStrategy over the visible GPUs when there are several; one device otherwise
    MIRRORED = "mirrored"  # MirroredStrategy over every visible GPU, or the CPU when there is none
    MULTI_WORKER = "multi_worker"  # MultiWorkerMirroredStrategy over the cluster that TF_CONFIG describes


def from_custom_config(custom_config: Mapping | None) -> Strategy:
    """The strategy the pipeline passed to the Trainer."""
    if not custom_config or CUSTOM_CONFIG_KEY not in custom_config:
        raise ValueError(f"custom_config has no '{CUSTOM_CONFIG_KEY}'; the pipeline passes it to the Trainer")
    return Strategy(custom_config[CUSTOM_CONFIG_KEY])


def strategy_for(devices: list[str]) -> tf.distribute.Strategy:
    """MirroredStrategy across `devices` when there is more than one, else the default strategy."""
    import tensorflow as tf

    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices=devices)
    if len(devices) == 1:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.get_strategy()


def cluster_from_environment() -> dict:
    """TF_CONFIG, parsed, or a ValueError saying what is missing: multi-worker training needs to know its cluster."""
    text = os.environ.get(TF_CONFIG, "")
    try:
        tf_config = json.loads(text) if text else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"{TF_CONFIG} is not JSON ({error}): {text[:200]}") from None
    if not isinstance(tf_config, dict) or not tf_config.get("cluster") or "task" not in tf_config:
        raise ValueError(
            f'[training] strategy = "{Strategy.MULTI_WORKER.value}" needs the {TF_CONFIG} environment variable, '
            'with "cluster" (task type → addresses) and "task" (this worker\'s type and index), as Vertex AI '
            f"training sets it on every worker; got {text[:200] or 'nothing'}"
        )
    return tf_config


def choose_strategy(setting: Strategy = Strategy.AUTO) -> tf.distribute.Strategy:
    """The strategy for `setting`. Build it before TensorFlow runs anything: a multi-worker strategy starts this
    worker's gRPC server and configures collective ops, which TensorFlow allows only before its runtime starts."""
    import tensorflow as tf

    if setting is Strategy.MULTI_WORKER:
        task = cluster_from_environment()["task"]
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        logging.info(
            "Multi-worker training as %s %s of the cluster in %s", task.get("type"), task.get("index"), TF_CONFIG
        )
    elif setting is Strategy.MIRRORED:
        strategy = tf.distribute.MirroredStrategy()  # every visible GPU, else the CPU
    else:
        strategy = strategy_for([device.name for device in tf.config.list_logical_devices("GPU")])
    logging.info("Training with %s over %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` trains in step with other worker processes."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@contextlib.contextmanager
def chief_writes(strategy: tf.distribute.Strategy, *folders: str) -> Iterator[list[str]]:
    """`folders` on the chief (and on one machine); fresh local temporary folders on any other worker, deleted on
    exit. Every worker must still save: reading a synced variable (a metric's running total) takes all of them."""
    if strategy.extended.should_checkpoint:
        yield list(folders)
        return
    with tempfile.TemporaryDirectory(prefix="tfxp-worker-") as scratch:
        yield [os.path.join(scratch, str(number)) for number, _ in enumerate(folders)]


def backup_callbacks(strategy: tf.distribute.Strategy, run_dir: str) -> list[keras.callbacks.Callback]:
    """A multi-worker run backs its state up after every epoch, in `run_dir`'s backup folder, so a worker that dies
    and comes back resumes from the last finished epoch, and its peers with it, instead of starting over. The folder
    is the same for every worker of one Trainer execution and new for the next, so no run resumes another's state.

    Nothing on one machine: TFX runs a failed Trainer again from the start, in a new folder.
    """
    if not is_multi_worker(strategy):
        return []
    import tf_keras as keras

    return [keras.callbacks.BackupAndRestore(os.path.join(run_dir, BACKUP_FOLDER))]


def shard_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset`, read whole by every worker, each keeping its share of every global batch (tf.data's DATA sharding).

    With the same seeded shuffle on every worker, the workers' shares make up the batch one process would train on.
    tf.data's default tries to give each worker its own files first, which fails when Transform wrote fewer files
    than there are workers (penguins: one), and splits unevenly when the files differ in size.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def on_any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether `flag` holds on this worker or on any other, for a decision every worker must take alike (a time
    limit: each worker reads its own clock, and one that stopped alone would leave the others waiting for it)."""
    if not is_multi_worker(strategy):
        return flag
    import tensorflow as tf

    votes = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None) > 0)


def wait_for_every_worker(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker has got here: after the export, no worker returns before the chief has written the
    model (TFX's Trainer executor checks on every worker that it exists). Immediate on one machine."""
    on_any_worker(strategy, False)
