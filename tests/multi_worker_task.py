"""The processes of tests/test_multi_worker.py: one process training alone, and a chief and a worker training
together on loopback, each running TFX's own Trainer executor on raw examples and one transform graph made without a
pipeline.

- `python -m tests.multi_worker_task reference SPEC`: takes the Trainer's custom_config for each run from the
  project's own wiring, writes the Transform output (`prepare`), signals it is ready, then trains alone.
- `python -m tests.multi_worker_task cluster SPEC`: run under `unshare --net`, in a network namespace whose only
  interface is loopback (TensorFlow's gRPC server listens on every interface, whatever address the cluster spec
  gives): starts a chief and a worker on 127.0.0.1, as Vertex AI names a two-pool job's replicas in TF_CONFIG,
  and records the sockets listening while they train.
- `python -m tests.multi_worker_task train TASK`: one worker, as each Vertex AI training replica runs: TFX's Trainer
  executor calling `run_fn`, with TF_CONFIG from the environment, once the Transform output is ready.

The workers start importing TensorFlow while the reference process writes the Transform output, so the three
imports and the Transform overlap (the test has a minute on 2 cores).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

if TYPE_CHECKING:
    from pipeline.settings import Settings

STARTED = time.time()

SPLITS = ("train", "eval")
EVAL_EVERY = 3  # every third row is held out for evaluation: 115 of the 344 penguins
WORKER_TIMEOUT = 240  # seconds a worker may take; a hang (a worker waiting for a peer that left) fails the test
READY = "ready.json"  # in the work folder, once the Transform output is written: the Trainer configs and the label
ROLES = (("chief", 0), ("worker", 0))  # Vertex AI's names for the first two worker pools' replicas


def trainer_configs(project: Path, runs: dict[str, dict]) -> tuple[Settings, dict[str, str]]:
    """The project's settings, and the custom_config the pipeline gives its Trainer for each run's overrides."""
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import config, nodes, settings
    from pipeline.wiring import create_pipeline

    configs = {}
    for name, overrides in runs.items():
        resolved = settings.resolve(config.load_project(project / config.CONFIG_FILE, overrides), project)
        components = {c.id: c for c in create_pipeline(resolved, metadata_store_pb2.ConnectionConfig()).components}
        configs[name] = components[nodes.TRAINER].exec_properties["custom_config"]
    return resolved, configs


def prepare(resolved: Settings, work: Path) -> None:
    """Writes the project's rows as raw tf.Examples (`work/raw/Split-*`), gzipped as ExampleGen writes them, and
    Transform's output for them: the transform graph (`work/transform`), analysed on the train split."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tfx_bsl.public import tfxio

    from models import features, preprocessing
    from pipeline import table_example_gen

    csv = resolved.input_folder / resolved.data_files[0]
    rows = list(
        table_example_gen.serialized_examples(
            str(csv), "csv", resolved.example_column_types, resolved.declarations.label.name
        )
    )
    held_out = {"train": lambda i: i % EVAL_EVERY != 0, "eval": lambda i: i % EVAL_EVERY == 0}
    for split in SPLITS:
        folder = work / "raw" / f"Split-{split}"
        folder.mkdir(parents=True)
        with tf.io.TFRecordWriter(str(folder / "data.gz"), options="GZIP") as writer:
            for row in (row for i, row in enumerate(rows) if held_out[split](i)):
                writer.write(row)

    custom_config = {features.CUSTOM_CONFIG_KEY: resolved.declarations.to_json()}
    source = tfxio.TFExampleRecord(str(work / "raw" / "Split-train" / "*"), schema=resolved.imported_schema)
    # TF1-compatible tracing, as the pipeline's Transform does (half the time); no transformed copy, as there.
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(work / "tft_tmp"), force_tf_compat_v1=True):
        train = pipeline | "ReadTrain" >> source.BeamSource()
        transform_fn = (train, source.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing.preprocessing_fn(inputs, custom_config)
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(work / "transform"))
        _ = tft.DatasetMetadata(resolved.imported_schema) | "WriteRawMetadata" >> tft_beam.WriteMetadata(
            str(work / "transform" / "metadata"), pipeline
        )


def _evaluate(serving_dir: str, work: Path, label: str, classes: list[str]) -> dict:
    """The served model's accuracy and log loss on the raw eval examples, through `serving_default`."""
    import numpy as np
    import tensorflow as tf

    from models import features
    from models.features import Problem

    records = tf.data.TFRecordDataset([str(work / "raw" / "Split-eval" / "data.gz")], compression_type="GZIP")
    serialized = [record.numpy() for record in records]
    names = [tf.train.Example.FromString(r).features.feature[label].bytes_list.value[0].decode() for r in serialized]
    truth = np.array([classes.index(name) for name in names])
    outputs = tf.saved_model.load(serving_dir).signatures["serving_default"](tf.constant(serialized))
    probabilities = outputs[features.OUTPUT_NAMES[Problem.MULTICLASS]].numpy()
    picked = probabilities[np.arange(len(truth)), truth]
    return {
        "examples": len(truth),
        "accuracy": float((probabilities.argmax(axis=1) == truth).mean()),
        "log_loss": float(-np.log(np.clip(picked, 1e-7, 1)).mean()),
    }


def _wait_until_ready(work: Path) -> dict:
    """What the reference process wrote once the Transform output was ready."""
    deadline = time.monotonic() + WORKER_TIMEOUT
    while not (work / READY).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no Transform output in {work} after {WORKER_TIMEOUT} s")
        time.sleep(0.1)
    return json.loads((work / READY).read_text())


def train(task: dict) -> None:
    """Runs TFX's Trainer executor on the prepared Transform output, recording where models were saved and the plan
    run_fn chose; then evaluates the model in the Trainer's serving folder, when `task` says so."""
    import tf_keras as keras
    from tfx.components.trainer import executor
    from tfx.proto import trainer_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from models import budget, distribution

    work, output = Path(task["work"]), Path(task["output"])
    imported = time.time()
    ready = _wait_until_ready(work)
    timeline = {"started": STARTED, "imported": imported, "ready": time.time()}
    saved, plans, strategies = [], [], []
    keras_save, schedule, choose_strategy = keras.Model.save, budget.schedule, distribution.choose_strategy

    def recording_save(model, filepath, *args, **kwargs):
        saved.append(str(filepath))
        return keras_save(model, filepath, *args, **kwargs)

    def recording_schedule(*args, **kwargs):
        plan = schedule(*args, **kwargs)
        plans.append(dataclasses.asdict(plan))
        return plan

    def recording_choice(setting):
        strategies.append(choose_strategy(setting))
        return strategies[-1]

    # Not models.training's own functions: TFX's executor reloads the module it takes run_fn from.
    keras.Model.save = recording_save
    budget.schedule = recording_schedule
    distribution.choose_strategy = recording_choice

    examples = standard_artifacts.Examples()
    examples.uri, examples.split_names = str(work / "raw"), json.dumps(list(SPLITS))
    graph = standard_artifacts.TransformGraph()
    graph.uri = str(work / "transform")
    model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, model_run.uri = str(output / "model"), str(output / "model_run")
    executor.GenericExecutor().Do(
        {"examples": [examples], "transform_graph": [graph]},
        {"model": [model], "model_run": [model_run]},
        {
            "run_fn": "models.training.run_fn",
            "custom_config": ready["configs"][task["run"]],
            "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs()),
            "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs()),
        },
    )
    serving_dir = os.path.join(model.uri, "Format-Serving")
    result = {
        "pid": os.getpid(),
        "saved": saved,
        "saved_still_there": [os.path.exists(path) for path in saved],
        "plans": plans,
        "serving_model_on_return": os.path.isfile(os.path.join(serving_dir, "saved_model.pb")),
    }
    if "vote" in task:  # a flag raised on one worker only: every worker must see it (how StopAfter stops them alike)
        result["votes"] = [distribution.on_any_worker(strategies[0], flag) for flag in (task["vote"], False)]
    timeline["trained"] = time.time()
    if task["evaluate"]:
        result["metrics"] = _evaluate(serving_dir, work, ready["label"], ready["classes"])
    result["timeline"] = {**timeline, "done": time.time()}  # when each phase ended, for a test that runs slow
    Path(task["result"]).write_text(json.dumps(result))


def reference(spec: dict) -> None:
    """Writes the Trainer configs and the Transform output for every run, then trains alone as `spec["single"]` says,
    in the process that ran Transform, as LocalDagRunner runs its components."""
    work = Path(spec["work"])
    resolved, configs = trainer_configs(Path(spec["project"]), spec["overrides"])
    prepare(resolved, work)
    label = resolved.declarations.label
    ready = {"configs": configs, "label": label.name, "classes": list(label.classes)}
    (work / f"{READY}.partial").write_text(json.dumps(ready))
    (work / f"{READY}.partial").rename(work / READY)  # whole or not at all: the workers poll for it
    train({**spec["single"], "work": str(work)})


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1  # from <linux/sockios.h> and <net/if.h>


def _loopback_up() -> None:
    """Brings up `lo`, which a new network namespace starts with down (what `ip link set lo up` does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def _free_ports(count: int) -> list[int]:
    """Ports nothing listens on, on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def listening_sockets() -> list[tuple[str, int]]:
    """(address, port) of every TCP socket listening in this process's network namespace, from /proc/net."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as lines:
            next(lines)
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                if state != "0A":  # TCP_LISTEN
                    continue
                address, port = local.split(":")
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host-order
                family = socket.AF_INET if width == 8 else socket.AF_INET6
                found.append((socket.inet_ntop(family, words), int(port, 16)))
    return found


def cluster(spec: dict) -> None:
    """A chief and a worker on 127.0.0.1 as `spec["cluster"]` says; records the namespace's interfaces and the
    sockets listening once both workers' servers are up."""
    _loopback_up()
    ports = _free_ports(len(ROLES))
    addresses = {role: [f"127.0.0.1:{port}"] for (role, _), port in zip(ROLES, ports, strict=True)}
    runs = spec["cluster"]
    workers, logs = [], []
    for role, index in ROLES:
        task = {"run": "cluster", "work": spec["work"], "output": runs["output"], "result": runs["results"][role]}
        tf_config = {"cluster": addresses, "task": {"type": role, "index": index}}
        logs.append(open(runs["logs"][role], "w"))  # closed once the worker exits
        command = [
            sys.executable,
            "-m",
            "tests.multi_worker_task",
            "train",
            json.dumps({**task, "evaluate": role == "chief", "vote": role == "chief"}),
        ]
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        workers.append(subprocess.Popen(command, env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 2 * WORKER_TIMEOUT  # the Transform output first, then training
    while any(process.poll() is None for process in workers) and time.monotonic() < deadline:
        if not seen:
            now = listening_sockets()
            if set(ports) <= {port for _, port in now}:  # both servers are up: what listens now is what trains
                seen = now
        time.sleep(0.2)
    codes = []
    for process, log in zip(workers, logs, strict=True):
        if process.poll() is None:
            process.kill()
        codes.append(process.wait())
        log.close()
    summary = {"interfaces": [name for _, name in socket.if_nameindex()], "ports": ports, "listening": seen}
    Path(runs["summary"]).write_text(json.dumps({**summary, "exit_codes": codes}))


if __name__ == "__main__":
    {"reference": reference, "cluster": cluster, "train": train}[sys.argv[1]](json.loads(sys.argv[2]))
