"""The project's ExampleGen: Arrow readers typed by the curated schema, and a cache key on the files' contents.

Stock CsvExampleGen infers each column's type from the values it sees and reads a Parquet file
row by row; this reads whole Arrow batches, types CSV columns as the schema says, and encodes
tf.Examples with tfx_bsl. A missing value becomes an absent feature.

TFX keys ExampleGen's cache on its input files' total size and mtimes in whole seconds
(`io_utils.generate_fingerprint`), so data replaced by a file of the same size and mtime would be a
cache hit, and everything downstream would train on the old examples. The driver here adds a
SHA-256 of the files' contents to that fingerprint, for every format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import apache_beam as beam
import pyarrow.compute as pc
from tfx.components.example_gen import driver, write_split
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.import_example_gen.component import ImportExampleGen
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from pipeline import digests, tables

CONTENT_DIGEST = "content_sha256"  # how the contents' digest is named in ExampleGen's input_fingerprint


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


def runs_in_process(beam_args: list[str]) -> bool:
    """Whether Beam runs the pipeline in this process: the DirectRunner in its in_memory mode."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

    options = PipelineOptions(beam_args)
    runner = options.view_as(StandardOptions).runner
    return runner in (None, "DirectRunner", "SwitchingDirectRunner") and (
        options.view_as(DirectOptions).direct_running_mode == "in_memory"
    )


class TableExampleGenExecutor(BaseExampleGenExecutor):
    """Reads CSV or Parquet with Arrow, typed by the curated schema, into tf.Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802
        """The Beam source for one split."""
        return _TableToExamples

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802  (TFX's name)
        """TFX's, except that in Beam's in-process runner each split is written as it comes.

        TFX reshuffles every record before writing (write_split.WriteSplit), so that a distributed runner
        spreads the writes over its workers. In this process that is a GroupByKey of the whole table,
        pickled record by record: a third of ExampleGen's time, for a file order it leaves as it was.
        """
        if not runs_in_process(self._beam_pipeline_args):
            super().Do(input_dict, output_dict, exec_properties)
            return
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input()
        )
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output()
        )
        outputs = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact_utils.get_single_instance(outputs).split_names = artifact_utils.encode_split_names(
            example_gen_utils.generate_output_split_names(input_config, output_config)
        )
        with self._make_beam_pipeline() as pipeline:
            for split, records in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                prefix = os.path.join(artifact_utils.get_split_uri(outputs, split), write_split.DEFAULT_FILE_NAME)
                _ = records | f"WriteSplit[{split}]" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz")
        for examples in outputs:
            examples_utils.set_payload_format(
                examples, exec_properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY]
            )
            examples_utils.set_file_format(
                examples,
                write_split.to_file_format_str(exec_properties[standard_component_specs.OUTPUT_FILE_FORMAT_KEY]),
            )


class ContentFingerprintDriver(driver.FileBasedDriver):
    """TFX's file-based ExampleGen driver, with a digest of the input files' contents in the input fingerprint.

    The fingerprint is an execution property, so it is part of TFX's cache key: changed contents re-execute
    ExampleGen, and with it everything downstream.
    """

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        """TFX's span, version and fingerprint, with the SHA-256 of the files to read appended to the fingerprint."""
        resolved = super().resolve_exec_properties(exec_properties, pipeline_info, component_info)
        base = resolved[standard_component_specs.INPUT_BASE_KEY]
        # The patterns now name the resolved span: the files the executor is about to read.
        config = proto_utils.json_to_proto(resolved[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
        files = {Path(f) for split in config.splits for f in fileio.glob(os.path.join(base, split.pattern))}
        key = example_gen_utils.FINGERPRINT_PROPERTY_NAME
        resolved[key] = f"{resolved[key]},{CONTENT_DIGEST}:{digests.files_digest(files, Path(base))}"
        return resolved


class TableExampleGen(FileBasedExampleGen):
    """FileBasedExampleGen (run with `TableExampleGenExecutor`) keyed on its files' contents."""

    DRIVER_CLASS = ContentFingerprintDriver


class TFRecordExampleGen(ImportExampleGen):
    """TFX's ImportExampleGen for tf.Example TFRecords, keyed on its files' contents."""

    DRIVER_CLASS = ContentFingerprintDriver
