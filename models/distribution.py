"""Picks the `tf.distribute` strategy that training runs under, from the devices present."""

from __future__ import annotations

import tensorflow as tf
from absl import logging  # the logger TFX and the run log show; stdlib INFO is dropped


def strategy_for(devices: list[str]) -> tf.distribute.Strategy:
    """MirroredStrategy across `devices` when there is more than one, else the default strategy."""
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices=devices)
    if len(devices) == 1:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.get_strategy()


def choose_strategy() -> tf.distribute.Strategy:
    """Mirrors over every visible GPU when there are any; the default strategy otherwise."""
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    strategy = strategy_for(gpus)
    logging.info("Training with %s over %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy
