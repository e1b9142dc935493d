"""What was sent to the server, as Arrow batches TFDV profiles: TF Serving's request logs, or tables of request rows.

Request logs are TFRecord files of PredictionLog (TF Serving's `--logging_config`, or the warmup file): predict logs
whose one input holds serialized tf.Examples (`serving_default`), and classify, regress and multi-inference logs,
whose requests carry tf.Examples in their `input`. A file ending in .csv or .parquet holds request rows instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import tensorflow as tf
from google.protobuf import message
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import input_pb2, prediction_log_pb2
from tfx_bsl.coders import example_coder

from pipeline import tables

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet"}  # by suffix; any other file is read as a request log
GZIP_MAGIC = b"\x1f\x8b"
LOG_KINDS = "predict, classify, regress or multi-inference logs (TF Serving's PredictionLog)"


class RequestLogError(ValueError):
    """A requests path cannot be read; the message names the file and what is wrong with it."""


@dataclasses.dataclass
class Requests:
    """The request rows found under a path, as tf.Example-shaped Arrow batches."""

    files: list[Path]
    batches: list[pa.RecordBatch]

    @property
    def rows(self) -> int:
        """Requested examples: one per row of a table, or per tf.Example in a request."""
        return sum(batch.num_rows for batch in self.batches)


def request_files(path: Path) -> list[Path]:
    """The file itself, or every visible file in a folder, in a stable order."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not found:
            raise RequestLogError(f"{path} holds no files")
        return found
    raise RequestLogError(f"no such file or folder: {path}")


def _input_examples(request_input: input_pb2.Input) -> list[bytes]:
    """The tf.Examples of a classify, regress or multi-inference request; context features join each, as in TF
    Serving."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in request_input.example_list.examples]
    if kind == "example_list_with_context":
        listed = request_input.example_list_with_context
        rows = []
        for example in listed.examples:
            joined = tf.train.Example()
            joined.CopyFrom(listed.context)
            joined.MergeFrom(example)
            rows.append(joined.SerializeToString())
        return rows
    return []


def _predict_examples(request, path: Path) -> list[bytes]:
    """The serialized tf.Examples of a predict request to `serving_default`, whose one input is a string tensor."""
    if len(request.inputs) != 1 or next(iter(request.inputs.values())).dtype != types_pb2.DT_STRING:
        raise RequestLogError(
            f"{path}: a predict request has inputs {sorted(request.inputs)}, not the one string tensor of serialized "
            "tf.Examples that serving_default takes"
        )
    return list(next(iter(request.inputs.values())).string_val)


def logged_examples(log: prediction_log_pb2.PredictionLog, path: Path) -> list[bytes]:
    """The serialized tf.Examples one logged request carried; none for a kind that carries no examples."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        return _predict_examples(log.predict_log.request, path)
    if kind in ("classify_log", "regress_log", "multi_inference_log"):
        return _input_examples(getattr(log, kind).request.input)
    return []


def _records(path: Path) -> Iterator[bytes]:
    """The records of a TFRecord file, gzipped or not."""
    with path.open("rb") as file:
        compression = "GZIP" if file.read(2) == GZIP_MAGIC else ""
    for record in tf.data.TFRecordDataset(str(path), compression_type=compression):
        yield record.numpy()


def _log_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Arrow batches of the tf.Examples in one request log file, decoded many requests at a time."""
    decoder = example_coder.ExamplesToRecordBatchDecoder()
    pending, logs = [], 0
    try:
        for record in _records(path):
            try:
                examples = logged_examples(prediction_log_pb2.PredictionLog.FromString(record), path)
            except message.DecodeError:
                examples = []
            logs += bool(examples)
            pending.extend(examples)
            if len(pending) >= tables.BATCH_ROWS:
                yield decoder.DecodeBatch(pending)
                pending = []
        if pending:
            yield decoder.DecodeBatch(pending)
    except tf.errors.OpError as error:
        raise RequestLogError(f"{path} is not a TFRecord file of request logs: {error.message}") from None
    except RuntimeError as error:  # tfx_bsl's decoder: a logged string that is no tf.Example
        raise RequestLogError(f"{path}: a logged request holds something other than tf.Examples: {error}") from None
    if not logs:
        raise RequestLogError(f"{path} holds no {LOG_KINDS} with examples")


def _table_batches(path: Path, data_format: str, column_types: Mapping[str, str]) -> Iterator[pa.RecordBatch]:
    """Arrow batches of one CSV or Parquet file of request rows, CSV columns typed by the schema."""
    try:
        for batch in tables.record_batches(str(path), data_format, column_types):
            yield tables.example_batch(batch)
    except (pa.ArrowException, OSError) as error:
        raise RequestLogError(f"{path} is not a readable {data_format} file: {error}") from None


def read_requests(path: Path, column_types: Mapping[str, str]) -> Requests:
    """Every request row under `path` (a file, or a folder of files), or RequestLogError naming what is wrong."""
    files = request_files(path)
    batches = []
    for file in files:
        data_format = TABLE_FORMATS.get(file.suffix.lower())
        read = _table_batches(file, data_format, column_types) if data_format else _log_batches(file)
        batches.extend(batch for batch in read if batch.num_rows)
    requests = Requests(files, batches)
    if not requests.rows:
        raise RequestLogError(f"no requests in {path}")
    return requests
