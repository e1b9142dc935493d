"""The GPU code path, exercised without a GPU: MirroredStrategy over two logical CPU devices."""

import json
import subprocess
import sys
import textwrap

import pytest

from models import budget, distribution
from tests.datasets import PROJECT_ROOT

# Logical devices must be configured before TensorFlow initialises, hence a fresh process.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import models
    import numpy as np
    import tensorflow as tf
    from models import budget, distribution, encodings, features, hyperparameters, training

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = distribution.strategy_for(devices)

    rng = np.random.default_rng(0)
    n = 256
    x = {"length_xf": rng.normal(size=n).astype("float32"), "island_xf": rng.integers(0, 3, size=n)}
    y = (x["length_xf"] > 0).astype("int64")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
    inputs = [encodings.ModelInput("length_xf"), encodings.ModelInput("island_xf", 3)]
    label = features.Label("y", features.Problem.MULTICLASS, ("no", "yes"))

    rules = budget.Budget(epochs=8, patience=3, max_seconds=600)
    plan = budget.Schedule(32, n, epochs=8, steps_per_epoch=10, validation_steps=4, patience=None, max_seconds=600)
    model = training.fit(strategy, hyperparameters.search_space(), inputs, label, data, data, plan, sys.argv[1])
    print(json.dumps({
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "devices": list(strategy.extended.worker_devices),
        "mirrored": type(model.trainable_variables[0]).__name__,
        "accuracy": float(model.evaluate(data, steps=8, verbose=0)[1]),
        "default_here": type(distribution.choose_strategy(distribution.Strategy.AUTO)).__name__,
        "mirrored_here": type(distribution.choose_strategy(distribution.Strategy.MIRRORED)).__name__,
        "global_batch": budget.schedule(rules, 1000, 500, strategy.num_replicas_in_sync).batch_size,
        "default_batch": budget.schedule(rules, 1000, 500).batch_size,
    }))
    """
)


@pytest.mark.slow
def test_training_runs_mirrored_over_two_logical_devices(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "logs")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["strategy"] == "MirroredStrategy"
    assert result["replicas"] == 2
    assert len(set(result["devices"])) == 2 and all("CPU" in d for d in result["devices"])
    assert result["mirrored"] == "MirroredVariable"
    assert result["accuracy"] > 0.9
    # No GPU on this machine: choose_strategy falls back to the default strategy.
    assert result["default_here"] == "_DefaultDistributionStrategy"
    assert result["mirrored_here"] == "MirroredStrategy"  # asked for: mirrored, over the CPU when there is no GPU
    # Each replica keeps its batch, so the global batch grows with the replicas.
    assert result["global_batch"] == 2 * result["default_batch"] == 2 * budget.MIN_BATCH
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))


def test_the_strategy_comes_from_the_pipeline():
    assert distribution.from_custom_config({"strategy": "multi_worker"}) is distribution.Strategy.MULTI_WORKER
    with pytest.raises(ValueError, match="custom_config has no 'strategy'; the pipeline passes it to the Trainer"):
        distribution.from_custom_config({"budget": "{}"})


@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, 'strategy = "multi_worker" needs the TF_CONFIG environment variable'),
        ("", "got nothing"),
        ("{'cluster': ", "TF_CONFIG is not JSON"),
        ('{"cluster": {"chief": ["10.0.0.2:2222"]}}', '"task" (this worker\'s type and index)'),
        ('{"cluster": {}, "task": {"type": "chief", "index": 0}}', '"cluster" (task type → addresses)'),
    ],
)
def test_multi_worker_training_without_a_cluster_says_what_is_missing(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv(distribution.TF_CONFIG, raising=False)
    else:
        monkeypatch.setenv(distribution.TF_CONFIG, tf_config)
    with pytest.raises(ValueError) as error:
        distribution.cluster_from_environment()
    assert message in str(error.value)


def test_a_vertex_style_tf_config_is_read(monkeypatch):
    cluster = {"chief": ["cmle-training-workerpool0-0:2222"], "worker": ["cmle-training-workerpool1-0:2222"]}
    tf_config = {"cluster": cluster, "task": {"type": "worker", "index": 0}, "environment": "cloud"}
    monkeypatch.setenv(distribution.TF_CONFIG, json.dumps(tf_config))
    assert distribution.cluster_from_environment() == tf_config
