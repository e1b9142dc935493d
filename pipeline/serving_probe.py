"""Loads and calls a SavedModel the way TF Serving does, in a clean interpreter: `python -I -S serving_probe.py`.

TF Serving has TensorFlow's runtime and nothing of this project: no `models/`, `pipeline/`, Keras
or TFX. So this script runs as its own process, imports only TensorFlow and tensorflow-serving-api,
and makes the project's packages unimportable before TensorFlow loads. It loads the model with the
`serve` tag through a session, as the server's SavedModel bundle does, replays the warmup requests
the model carries, then calls `serving_default` on batches of 1 and of 64 of those real rows.

Usage: serving_probe.py SAVED_MODEL RESULT_JSON SITE_DIR...   (writes the verdict to RESULT_JSON)
"""

import json
import sys
import time

# A name mapped to None in sys.modules cannot be imported; TensorFlow's own `import keras` then
# falls back as it does in a server without Keras.
UNIMPORTABLE = (
    "keras",
    "tf_keras",
    "models",
    "pipeline",
    "tfx",
    "tensorflow_transform",
    "tensorflow_model_analysis",
    "tensorflow_data_validation",
)
SIGNATURE = "serving_default"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"  # where TF Serving looks for warmup requests
BATCH_SIZES = (1, 64)
CALLS = {1: 50, 64: 20}  # timed calls per batch size, for p50/p99


class NotServable(Exception):
    """The model would fail in TF Serving; `stage` says where."""

    def __init__(self, stage, reason):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def _reason(error):
    """A TensorFlow error in one line: its own lines, without Python tracebacks or the generic header."""
    lines = []
    for line in str(getattr(error, "message", error)).splitlines():
        line = line.strip()
        if not line or line.startswith(("Traceback", "File ", "raise ")) or line == "Graph execution error:":
            continue
        if line not in lines:
            lines.append(line)
    return f"{type(error).__name__}: {' '.join(lines[:3])}"


def _warmup_inputs(model_dir, tf, prediction_log_pb2):
    """The PredictRequest inputs of every warmup record, as TF Serving replays them at load."""
    path = f"{model_dir}/{WARMUP_FILE}"
    if not tf.io.gfile.exists(path):
        raise NotServable("warmup", f"no warmup requests at {WARMUP_FILE}")
    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        if request.model_spec.signature_name not in ("", SIGNATURE):
            raise NotServable("warmup", f"a warmup request calls {request.model_spec.signature_name!r}")
        requests.append({key: tf.make_ndarray(proto) for key, proto in request.inputs.items()})
    if not requests:
        raise NotServable("warmup", "the warmup file holds no requests")
    return requests


def _check_outputs(signature, outputs, batch, np, tf):
    """Every output has its declared dtype, one row per example, the declared shape, and finite values."""
    for key, info in signature.outputs.items():
        value = np.asarray(outputs[key])
        dtype = tf.dtypes.as_dtype(info.dtype)
        if dtype == tf.string:
            if value.dtype.kind not in "OS":
                raise NotServable("call", f"output {key!r} is {value.dtype}, the signature says string")
        elif value.dtype != dtype.as_numpy_dtype:
            raise NotServable("call", f"output {key!r} is {value.dtype}, the signature says {dtype.name}")
        declared = [d.size for d in info.tensor_shape.dim]
        if not value.shape or value.shape[0] != batch:
            raise NotServable("call", f"output {key!r} has shape {value.shape} for a batch of {batch}")
        if not info.tensor_shape.unknown_rank and (
            len(declared) != value.ndim or any(d >= 0 and d != s for d, s in zip(declared, value.shape, strict=False))
        ):
            raise NotServable("call", f"output {key!r} has shape {value.shape}, the signature says {declared}")
        if dtype.is_floating and not np.isfinite(value).all():
            raise NotServable("call", f"output {key!r} has NaN or infinite values for a batch of {batch}")


def probe(model_dir):
    """The verdict and figures for one SavedModel folder."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    result = {}
    requests = _warmup_inputs(model_dir, tf, prediction_log_pb2)  # eagerly, before the session's graph mode
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        started = time.perf_counter()
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], model_dir)
        except Exception as error:  # noqa: BLE001  (any load failure is the verdict)
            raise NotServable("load", _reason(error)) from None
        result["load_seconds"] = time.perf_counter() - started

        if SIGNATURE not in meta_graph.signature_def:
            raise NotServable("signature", f"no {SIGNATURE!r} signature (has: {sorted(meta_graph.signature_def)})")
        signature = meta_graph.signature_def[SIGNATURE]
        inputs = list(signature.inputs.items())
        if len(inputs) != 1 or inputs[0][1].dtype != tf.string.as_datatype_enum:
            described = {k: tf.dtypes.as_dtype(v.dtype).name for k, v in inputs}
            raise NotServable(
                "signature", f"{SIGNATURE} must take one string input of serialized tf.Examples, not {described}"
            )
        input_key, input_info = inputs[0]
        fetches = {key: info.name for key, info in signature.outputs.items()}

        def call(serialized):
            try:
                outputs = session.run(fetches, {input_info.name: serialized})
            except Exception as error:  # noqa: BLE001
                raise NotServable("call", _reason(error)) from None
            _check_outputs(signature, outputs, len(serialized), np, tf)

        rows = []
        for request in requests:
            if set(request) != {input_key}:
                raise NotServable(
                    "warmup", f"a warmup request sends {sorted(request)}, {SIGNATURE} takes {input_key!r}"
                )
            call(request[input_key])
            rows.extend(request[input_key].tolist())
        result["warmup_requests"] = len(requests)

        for batch in BATCH_SIZES:
            serialized = [rows[i % len(rows)] for i in range(batch)]
            seconds = []
            for _ in range(CALLS[batch]):
                started = time.perf_counter()
                call(serialized)
                seconds.append(time.perf_counter() - started)
            result[f"p50_ms_batch_{batch}"] = float(np.percentile(seconds, 50) * 1000)
            result[f"p99_ms_batch_{batch}"] = float(np.percentile(seconds, 99) * 1000)
        result["outputs"] = {
            key: [tf.dtypes.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim]]
            for key, info in signature.outputs.items()
        }
    return result


def main(argv):
    model_dir, result_path, *site_dirs = argv
    for name in UNIMPORTABLE:  # before TensorFlow loads
        sys.modules[name] = None
    sys.path.extend(site_dirs)  # TensorFlow's packages; the project is not among them (see -I -S)
    try:
        result = {"servable": True, **probe(model_dir)}
    except NotServable as failure:
        result = {"servable": False, "stage": failure.stage, "reason": failure.reason}
    except Exception as error:  # noqa: BLE001  (a verdict, not a traceback the parent has to parse)
        result = {"servable": False, "stage": "probe", "reason": f"{type(error).__name__}: {error}"}
    result["sys_path"] = list(sys.path)
    loaded = {name.split(".")[0] for name, module in sys.modules.items() if module is not None}
    result["imported"] = sorted(loaded - set(sys.stdlib_module_names))  # what a test checks for the project's
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
