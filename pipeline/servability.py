"""The servability check between the Evaluator and the Pusher: TFX's InfraValidator without Docker.

It stamps a copy of the trained model with TF Serving warmup requests built from real eval rows,
then has `serving_probe.py` load and call that copy in a clean interpreter that has TensorFlow and
tensorflow-serving-api and nothing of this project. The verdict and its figures go on a standard
InfraBlessing artifact; when it is blessed, the stamped copy is what the Pusher publishes, so the
bytes that were checked are the bytes that serve.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils
from tfx.v1.dsl.components import InputArtifact, OutputArtifact, Parameter, component

from pipeline import registry, serving

# Run by path in a clean interpreter, never imported here: it blocks imports of this project.
PROBE_SCRIPT = Path(__file__).with_name("serving_probe.py")
SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
PROBE_TIMEOUT_SECONDS = 600
WARMUP_BATCHES = (1,) * 8 + (64,) * 2  # TF Serving replays each at load; both shapes the check times
BLESSED_KEY, HAS_MODEL_KEY = "blessed", "has_model"  # what TFX's Pusher reads (tfx/components/pusher)
BLESSED_FILE, NOT_BLESSED_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED"  # as TFX's InfraValidator marks its verdict


def eval_rows(examples: tfx.types.standard_artifacts.Examples, label: str, limit: int = 64) -> list[bytes]:
    """Up to `limit` serialized tf.Examples from the eval split, without the label, as a client sends them."""
    files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], "eval"), "*"))
    rows = []
    for record in tf.data.TFRecordDataset(sorted(files), compression_type="GZIP").take(limit):
        example = tf.train.Example.FromString(record.numpy())
        if label in example.features.feature:
            del example.features.feature[label]
        rows.append(example.SerializeToString())
    return rows


def serving_input(saved_model: str) -> str:
    """The name of `serving_default`'s input, read from the SavedModel's graph; "examples" if it has no single one.

    A wrong or missing signature is the probe's to report; the warmup file is written either way.
    """
    graph = saved_model_pb2.SavedModel.FromString(Path(saved_model, "saved_model.pb").read_bytes())
    for meta_graph in graph.meta_graphs:
        inputs = meta_graph.signature_def[SIGNATURE].inputs if SIGNATURE in meta_graph.signature_def else {}
        if len(inputs) == 1:
            return next(iter(inputs))
    return "examples"


def write_warmup(saved_model: str, model_name: str, rows: list[bytes]) -> int:
    """Writes `assets.extra/tf_serving_warmup_requests`: PredictionLogs TF Serving replays at load."""
    input_key = serving_input(saved_model)
    logs = []
    for position, size in enumerate(WARMUP_BATCHES):
        batch = [rows[(position + i) % len(rows)] for i in range(size)]
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SIGNATURE
        request.inputs[input_key].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    io_utils.write_tfrecord_file(path_utils.warmup_file_path(saved_model), *logs)
    return len(logs)


def clean_interpreter() -> list[str]:
    """The command prefix of a Python with no site hooks, no user paths and no environment paths (`-I -S`).

    The project's editable install is a site hook; without it, and with only TensorFlow's
    site-packages added back by the probe, `models/` and `pipeline/` cannot be found.
    """
    return [sys.executable, "-I", "-S"]


def site_dirs() -> list[str]:
    """The folders holding TensorFlow and tensorflow-serving-api, for the probe's sys.path."""
    import tensorflow_serving

    return sorted({str(Path(module.__file__).parent.parent) for module in (tf, tensorflow_serving)})


def run_probe(saved_model: str) -> dict:
    """Runs `serving_probe.py` on a SavedModel in a clean process; its JSON verdict, or why it gave none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TF_USE_LEGACY_KERAS"))}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with tempfile.TemporaryDirectory() as scratch:
        result_path = Path(scratch) / "result.json"
        command = [*clean_interpreter(), str(PROBE_SCRIPT), saved_model, str(result_path), *site_dirs()]
        try:
            done = subprocess.run(
                command, env=env, cwd=scratch, capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired:
            return {"servable": False, "stage": "load", "reason": f"no answer within {PROBE_TIMEOUT_SECONDS} s"}
        if not result_path.is_file():
            tail = " ".join(done.stderr.strip().splitlines()[-3:]) or f"exit code {done.returncode}"
            return {"servable": False, "stage": "load", "reason": f"the clean process crashed: {tail}"}
        return json.loads(result_path.read_text(encoding="utf-8"))


def describe(verdict: dict) -> str:
    """One line a user reads: the figures, or where and why the model would fail in TF Serving."""
    if not verdict.get("servable"):
        return f"fails at {verdict.get('stage', '?')}: {verdict.get('reason', 'no reason given')}"
    return (
        f"loads in {verdict['load_seconds']:.2f} s; p50/p99 {verdict['p50_ms_batch_1']:.1f}/"
        f"{verdict['p99_ms_batch_1']:.1f} ms for 1 row, {verdict['p50_ms_batch_64']:.1f}/"
        f"{verdict['p99_ms_batch_64']:.1f} ms for 64"
    )


@component
def ServabilityCheck(  # noqa: N802
    model: InputArtifact[tfx.types.standard_artifacts.Model],
    model_blessing: InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    examples: InputArtifact[tfx.types.standard_artifacts.Examples],
    blessing: OutputArtifact[tfx.types.standard_artifacts.InfraBlessing],
    label: Parameter[str],
    model_name: Parameter[str],
    code_digest: Parameter[str],  # noqa: ARG001  (part of the cache key only)
) -> None:
    """Stamps the model with warmup requests and checks it loads and answers in a clean TensorFlow process.

    A model whose files differ from those the Evaluator evaluated (`model_blessing`'s digest) is not servable:
    what would be pushed is not what passed the gate.
    """
    source = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    stamped = path_utils.stamped_model_path(blessing.uri)
    shutil.rmtree(stamped, ignore_errors=True)  # a retried execution starts clean
    shutil.copytree(source, stamped)
    evaluated = model_blessing.get_string_custom_property(serving.MODEL_DIGEST)
    # An Evaluator cached from before it kept digests recorded none; its model is checked as before.
    changed = serving.digest_mismatch(Path(stamped), evaluated) if evaluated else None
    if changed:
        verdict = {
            "servable": False,
            "stage": "copy",
            "reason": f"the model's files in {source} changed after the Evaluator evaluated them ({changed}); "
            "run `tfxp run --no-cache` to evaluate it again",
        }
    elif not (rows := eval_rows(examples, label)):
        verdict = {"servable": False, "stage": "warmup", "reason": "the eval split has no rows to call the model with"}
    else:
        write_warmup(stamped, model_name, rows)
        verdict = run_probe(stamped)
    servable = bool(verdict.get("servable"))
    blessing.set_int_custom_property(BLESSED_KEY, int(servable))
    blessing.set_int_custom_property(HAS_MODEL_KEY, int(servable))
    blessing.set_string_custom_property("verdict", describe(verdict))
    for key in registry.FIGURES:
        if key in verdict:
            blessing.set_float_custom_property(key, verdict[key])
    if "warmup_requests" in verdict:
        blessing.set_int_custom_property("warmup_requests", verdict["warmup_requests"])
    # What was checked, byte for byte: `tfxp approve` refuses a stamped model that no longer matches.
    blessing.set_string_custom_property(serving.MODEL_DIGEST, serving.saved_model_digest(Path(stamped)))
    Path(blessing.uri, BLESSED_FILE if servable else NOT_BLESSED_FILE).write_text(json.dumps(verdict, indent=1))
