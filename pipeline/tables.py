"""Reading a user's tables: which files make a batch, and how CSV and Parquet become typed Arrow columns.

The one low-level home for this, shared by the pre-flight checks, `tfxp init` and the ExampleGen
executor, so all three read a file the same way. It needs only pyarrow, and the timestamp
encoding's date formats.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from models import encodings

# The Arrow type each schema type is read as.
ARROW_TYPES = {"INT": pa.int64(), "FLOAT": pa.float64(), "BYTES": pa.string()}
CSV_PARSE = pa_csv.ParseOptions(newlines_in_values=True)  # quoted newlines belong to their field
BATCH_ROWS = 65_536


# A first CSV column without a name is the row index pandas (`to_csv`) and R (`write.csv`) write:
# not data, so it is never read. ("Unnamed: 0" is what pandas calls it when it reads one back.)
ROW_INDEX_NAMES = ("", "Unnamed: 0")


def has_row_index(names: Sequence[str]) -> bool:
    """Whether a CSV header starts with the unnamed row index pandas and R write."""
    return len(names) > 1 and names[0] in ROW_INDEX_NAMES


def csv_header(path: Path) -> list[str]:
    """The column names on a CSV file's first line."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        return next(csv.reader(file), [])


def _without_row_index(data):
    """A table or batch without its leading row index column, if it has one."""
    if not has_row_index(data.schema.names):
        return data
    return type(data).from_arrays(data.columns[1:], names=data.schema.names[1:])


def data_files(folder: Path, pattern: str) -> list[Path]:
    """The files of one batch, in a stable order."""
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def arrow_kind(arrow_type: pa.DataType) -> str | None:
    """The schema type an Arrow column is stored as in tf.Examples, or None if it has none."""
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return "INT"
    if pa.types.is_floating(arrow_type):
        return "FLOAT"
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_binary(arrow_type)
        or pa.types.is_temporal(arrow_type)
        or pa.types.is_dictionary(arrow_type)
    ):
        return "BYTES"
    return None


def csv_convert_options(column_types: Mapping[str, str] | None = None) -> pa_csv.ConvertOptions:
    """How CSV text becomes Arrow columns: typed by schema type name where given, inferred otherwise.

    Inferred columns are dates or times when every value is ISO 8601 or a US date; typed ones
    keep their text, which the timestamp encoding parses.
    """
    return pa_csv.ConvertOptions(
        column_types={name: ARROW_TYPES[kind] for name, kind in (column_types or {}).items()},
        null_values=[""],  # only an empty field is missing; "NA" may be a real category
        strings_can_be_null=True,
        timestamp_parsers=[pa_csv.ISO8601, *encodings.Timestamp.TEXT_FORMATS],
    )


def read_table(path: Path | str, data_format: str, column_types: Mapping[str, str] | None = None) -> pa.Table:
    """One whole file as an Arrow table; CSV columns typed as given (schema type names), else inferred.

    Raises pyarrow.ArrowInvalid or OSError for a file Arrow cannot read.
    """
    if data_format == "parquet":
        return pq.read_table(path)
    return _without_row_index(
        pa_csv.read_csv(path, parse_options=CSV_PARSE, convert_options=csv_convert_options(column_types))
    )


def record_batches(path: str, data_format: str, column_types: Mapping[str, str]) -> Iterator[pa.RecordBatch]:
    """Arrow batches of one CSV or Parquet file, CSV columns typed by the schema, without reading it whole."""
    if data_format == "parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
        return
    reader = pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(block_size=1 << 22),
        parse_options=CSV_PARSE,
        convert_options=csv_convert_options(column_types),
    )
    for batch in reader:
        yield _without_row_index(batch)


def _as_list_array(array: pa.Array) -> pa.Array:
    """One value per row as tfx_bsl wants it: a list of length 1, or a null list where missing."""
    valid = np.asarray(pc.is_valid(array), dtype=bool)
    offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), array.drop_null(), mask=pa.array(~valid))


def _to_example_type(array: pa.Array) -> pa.Array:
    """Arrow types tf.Example can hold: int64, float32 and bytes; times become ISO-8601 text."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _to_example_type(array.dictionary_decode())
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return pc.strftime(array, format="%Y-%m-%dT%H:%M:%S").cast(pa.binary())
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return array.cast(pa.int64())
    if pa.types.is_floating(kind):
        return array.cast(pa.float32())
    return array.cast(pa.binary())


def example_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch shaped as TFDV and tfx_bsl expect tf.Example data: typed lists, null where missing."""
    return pa.RecordBatch.from_arrays([_as_list_array(_to_example_type(c)) for c in batch.columns], batch.schema.names)
