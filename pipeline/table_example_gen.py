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
import pyarrow.compute as pc
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor

from pipeline import tables


def serialized_examples(
    path: str, data_format: str, column_types: Mapping[str, str], label: str | None = None
) -> Iterator[bytes]:
    """Every row of one file as a serialized tf.Example; a missing value is a feature with no values.

    Rows without a value in `label` are left out: there is nothing to train or evaluate on in them
    (the pre-flight checks count them, and refuse a batch where most rows have none).

    ExampleGen splits by a hash of these bytes, and tfx_bsl orders the feature map differently in
    each process, so the bytes are re-serialized with sorted keys: a row lands in the same split
    on every run.
    """
    from tensorflow.core.example import example_pb2
    from tfx_bsl.coders import example_coder

    parse = example_pb2.Example.FromString
    for batch in tables.record_batches(path, data_format, column_types):
        if label is not None:
            batch = batch.filter(pc.is_valid(batch.column(label)))
        for record in example_coder.RecordBatchToExamples(tables.example_batch(batch)):
            yield parse(record).SerializeToString(deterministic=True)


def executor_config(data_format: str, column_types: Mapping[str, str], label: str):
    """The ExampleGen custom_config carrying the format, the schema's column types and the label."""
    from google.protobuf import struct_pb2
    from tfx.proto import example_gen_pb2

    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(
        struct_pb2.Struct(
            fields={
                "format": struct_pb2.Value(string_value=data_format),
                "column_types": struct_pb2.Value(string_value=json.dumps(dict(column_types))),
                "label": struct_pb2.Value(string_value=label),
            }
        )
    )
    return config


def _read_executor_config(exec_properties: dict) -> tuple[str, dict[str, str], str]:
    """Unpacks what `executor_config` packed."""
    from google.protobuf import struct_pb2
    from tfx.proto import example_gen_pb2
    from tfx.utils import proto_utils

    config = proto_utils.json_to_proto(exec_properties["custom_config"], example_gen_pb2.CustomConfig())
    fields = struct_pb2.Struct()
    config.custom_config.Unpack(fields)
    return fields["format"], json.loads(fields["column_types"]), fields["label"]


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _TableToExamples(pipeline: beam.Pipeline, exec_properties: dict, split_pattern: str):  # noqa: N802
    """Beam source: the split's files, each converted in Arrow batches."""
    from tfx.dsl.io import fileio

    data_format, column_types, label = _read_executor_config(exec_properties)
    pattern = os.path.join(exec_properties["input_base"], split_pattern)
    files = sorted(fileio.glob(pattern))
    if not files:
        raise RuntimeError(f"Split pattern {pattern} does not match any files.")
    return (
        pipeline
        | "Files" >> beam.Create(files)
        | "ToExamples" >> beam.FlatMap(serialized_examples, data_format, column_types, label)
    )


class TableExampleGenExecutor(BaseExampleGenExecutor):
    """Reads CSV or Parquet with Arrow, typed by the curated schema, into tf.Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802
        """The Beam source for one split."""
        return _TableToExamples
