"""The ExampleGen executor for CSV and Parquet: Arrow readers typed by the curated schema, tf.Examples out.

Stock CsvExampleGen infers each column's type from the values it sees and reads a Parquet file
row by row; this reads whole Arrow batches, types CSV columns as the schema says, and encodes
tf.Examples with tfx_bsl. A missing value becomes an absent feature.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor

from pipeline.ingest import ARROW_TYPES


def as_list_array(array: pa.Array) -> pa.Array:
    """One value per row as tfx_bsl wants it: a list of length 1, or a null list where missing."""
    valid = np.asarray(pc.is_valid(array), dtype=bool)
    offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), array.drop_null(), mask=pa.array(~valid))


def to_example_type(array: pa.Array) -> pa.Array:
    """Arrow types tf.Example can hold: int64, float32 and bytes; times become ISO-8601 text."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return to_example_type(array.dictionary_decode())
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return pc.strftime(array, format="%Y-%m-%dT%H:%M:%S").cast(pa.binary())
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return array.cast(pa.int64())
    if pa.types.is_floating(kind):
        return array.cast(pa.float32())
    return array.cast(pa.binary())


def example_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch shaped as TFDV and tfx_bsl expect tf.Example data: typed lists, null where missing."""
    return pa.RecordBatch.from_arrays([as_list_array(to_example_type(c)) for c in batch.columns], batch.schema.names)


CSV_PARSE = pa_csv.ParseOptions(newlines_in_values=True)  # quoted newlines belong to their field


def csv_convert_options(column_types: Mapping[str, pa.DataType]) -> pa_csv.ConvertOptions:
    """How CSV text becomes typed Arrow columns, for `tfxp init` and ExampleGen alike."""
    return pa_csv.ConvertOptions(
        column_types=dict(column_types),
        null_values=[""],  # only an empty field is missing; "NA" may be a real category
        strings_can_be_null=True,
    )


def record_batches(path: str, data_format: str, column_types: Mapping[str, str]) -> Iterator[pa.RecordBatch]:
    """Arrow batches of one CSV or Parquet file, CSV columns typed by the schema."""
    if data_format == "parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=65_536)
        return
    reader = pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(block_size=1 << 22),
        parse_options=CSV_PARSE,
        convert_options=csv_convert_options({name: ARROW_TYPES[kind] for name, kind in column_types.items()}),
    )
    yield from reader


def serialized_examples(path: str, data_format: str, column_types: Mapping[str, str]) -> Iterator[bytes]:
    """Every row of one file as a serialized tf.Example; a missing value is a feature with no values.

    ExampleGen splits by a hash of these bytes, and tfx_bsl orders the feature map differently in
    each process, so the bytes are re-serialized with sorted keys: a row lands in the same split
    on every run.
    """
    from tensorflow.core.example import example_pb2
    from tfx_bsl.coders import example_coder

    parse = example_pb2.Example.FromString
    for batch in record_batches(path, data_format, column_types):
        for record in example_coder.RecordBatchToExamples(example_batch(batch)):
            yield parse(record).SerializeToString(deterministic=True)


def executor_config(data_format: str, column_types: Mapping[str, str]):
    """The ExampleGen custom_config carrying the format and the schema's column types."""
    from google.protobuf import struct_pb2
    from tfx.proto import example_gen_pb2

    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(struct_pb2.Struct(fields={
        "format": struct_pb2.Value(string_value=data_format),
        "column_types": struct_pb2.Value(string_value=json.dumps(dict(column_types))),
    }))
    return config


def _read_executor_config(exec_properties: dict) -> tuple[str, dict[str, str]]:
    """Unpacks what `executor_config` packed."""
    from google.protobuf import struct_pb2
    from tfx.proto import example_gen_pb2
    from tfx.utils import proto_utils

    config = proto_utils.json_to_proto(exec_properties["custom_config"], example_gen_pb2.CustomConfig())
    fields = struct_pb2.Struct()
    config.custom_config.Unpack(fields)
    return fields["format"], json.loads(fields["column_types"])


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _TableToExamples(pipeline: beam.Pipeline, exec_properties: dict, split_pattern: str):  # noqa: N802
    """Beam source: the split's files, each converted in Arrow batches."""
    from tfx.dsl.io import fileio

    data_format, column_types = _read_executor_config(exec_properties)
    pattern = os.path.join(exec_properties["input_base"], split_pattern)
    files = sorted(fileio.glob(pattern))
    if not files:
        raise RuntimeError(f"Split pattern {pattern} does not match any files.")
    return (
        pipeline
        | "Files" >> beam.Create(files)
        | "ToExamples" >> beam.FlatMap(serialized_examples, data_format, column_types)
    )


class TableExampleGenExecutor(BaseExampleGenExecutor):
    """Reads CSV or Parquet with Arrow, typed by the curated schema, into tf.Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802
        """The Beam source for one split."""
        return _TableToExamples
