"""Picks the `tf.distribute` strategy that training runs under, as `[training] strategy` says.

TensorFlow-free at import (TensorFlow is imported where a strategy is built), so the project file can
name the choices without loading it.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from absl import logging  # the logger TFX and the run log show; stdlib INFO is dropped

if TYPE_CHECKING:
    import tensorflow as tf

CUSTOM_CONFIG_KEY = "strategy"  # where run_fn finds the project's choice in the Trainer's custom_config
TF_CONFIG = "TF_CONFIG"  # the cluster and this worker's place in it, set on every worker by Vertex AI or a TFJob


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
