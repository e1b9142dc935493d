"""Checks on the user's files before a run: one clear message naming the file, line and column.

Bad data stops the run here, before any component starts, so nothing is published. What the
checks cannot see row by row (new categories, drift, an empty split) ExampleValidator catches
against the curated schema.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models import encodings, features
from pipeline import tables
from pipeline.config import ConfigError
from pipeline.settings import Settings, check_inside_project, configured_columns

MAX_SHOWN = 60  # characters of a bad value or row quoted in a message


class DataError(ValueError):
    """A data file cannot be used; the message names the file and, where known, the line and column."""


@dataclasses.dataclass
class DataSummary:
    """What the checks read: files and rows in the folder this run uses."""

    folder: Path
    files: list[Path]
    rows: int
    unlabeled: int = 0  # rows without a label, which ExampleGen leaves out


MAX_UNLABELED_SHARE = 0.5  # more rows than this without a label: the wrong column, or a broken export


def _check_unlabeled(folder: Path, label: str, rows: int, unlabeled: int, where: str) -> None:
    """A few rows without a label are left out; a batch mostly without one is refused."""
    if unlabeled > MAX_UNLABELED_SHARE * rows:
        raise DataError(
            f"{unlabeled} of the {rows} rows in {folder} have no value in the label '{label}' ({where}); "
            "check the [label] column, or fill in the labels"
        )


def _shown(text: str) -> str:
    """A value or row as quoted in a message, shortened."""
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…")


# ---------------------------------------------------------------- checks shared by every format


def _check_header(path: Path, columns: Sequence[str], settings: Settings) -> None:
    """Names must be unique, include the label and every configured column, and match the schema."""
    seen: dict[str, int] = {}
    for number, name in enumerate(columns, start=1):
        if not name.strip():
            raise DataError(f"{path}: column {number} of the header has no name")
        if name in seen:
            raise DataError(
                f"{path}: column name '{name}' appears twice in the header (columns {seen[name]} and {number})"
            )
        seen[name] = number
    label = settings.project.label.column
    if label not in seen:
        raise DataError(f"{path}: the label column '{label}' is missing (columns: {', '.join(columns)})")
    for setting, names in configured_columns(settings.project).items():
        for name in names:
            if name not in seen:
                raise DataError(f"{setting} in the project file names column '{name}', which {path} does not have")
    schema_columns = settings.column_types
    for name in columns:
        if name not in schema_columns:
            raise DataError(
                f"{path}: column '{name}' is not in the curated schema {settings.paths.schema_file}; "
                "add it there after review, or drop it from the data"
            )
    for feature in settings.schema.feature:
        if feature.name not in seen and not features.is_optional(feature) and feature.name not in settings.excluded:
            raise DataError(f"{path}: column '{feature.name}' is missing; the schema says every example has it")


def _empty_column_error(folder: Path, column: str) -> DataError:
    """The message for a column with no value in any row."""
    return DataError(
        f"column '{column}' is empty in every row of {folder}; fill it, or remove it from the data and the schema"
    )


def _text_checks(settings: Settings) -> dict[str, Callable[[str], str | None]]:
    """The format check each string column's encoding puts on its raw text (timestamps must parse)."""
    return {
        f.name: encodings.of(f.encoding).check_text
        for f in settings.declarations.features
        if settings.column_types[f.name] == "BYTES"
    }


# ---------------------------------------------------------------- CSV


def _decode(path: Path) -> str:
    """The file's text; a byte-order mark is dropped, and bytes that are not UTF-8 are located."""
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path} is empty; a CSV file needs a header line and at least one row")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        prefix = raw[line_start : error.start].decode("utf-8", "replace")
        field = len(next(csv.reader([prefix]))) if prefix else 1
        header = next(csv.reader([raw.split(b"\n", 1)[0].decode("utf-8", "replace")]), [])
        column = f"column '{header[field - 1]}'" if 0 < field <= len(header) else f"field {field}"
        raise DataError(
            f"{path}, line {line}, {column}: bytes {raw[error.start : error.end + 3]!r} are not UTF-8 text; "
            "re-export the file as UTF-8"
        ) from None


def _records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each CSV record; quoted commas and newlines are part of a field."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 1
    try:
        for row in reader:
            if row:
                yield line, row
            line = reader.line_num + 1
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise DataError(
                f"{path}, line {line}: a quoted field that starts here is never closed (unbalanced quote)"
            ) from None
        raise DataError(f"{path}, line {line}: malformed CSV: {error}") from None


def _value_checker(kind: str, column: str, text_check: Callable[[str], str | None] | None):
    """A function that returns an error text for a bad non-empty value of `column`, else None."""
    if kind == "INT":

        def check(value: str) -> str | None:
            try:
                int(value)
            except ValueError:
                return f"{_shown(value)} is not an integer, but the schema says '{column}' is INT"
            return None

    elif kind == "FLOAT":

        def check(value: str) -> str | None:
            try:
                number = float(value)
            except ValueError:
                return f"{_shown(value)} is not a number, but the schema says '{column}' is FLOAT"
            if not math.isfinite(number):
                return f"{value} is not a finite number; leave the field empty for a missing value"
            return None

    elif text_check is not None:

        def check(value: str) -> str | None:
            problem = text_check(value)
            return None if problem is None else f"{_shown(value)} {problem}"

    else:
        return None
    return check


def _check_csv(files: list[Path], settings: Settings) -> tuple[int, int]:
    """Checks every CSV file of one batch; returns the number of rows, and of rows without a label."""
    header: list[str] | None = None
    first_file = files[0]
    label = settings.project.label.column
    types = settings.example_column_types  # excluded columns are read as text, unchecked
    text_checks = _text_checks(settings)
    filled = collections.Counter()
    total = unlabeled = 0
    first_unlabeled = ""
    for path in files:
        records = _records(path, _decode(path))
        first = next(records, None)
        if first is None:
            raise DataError(f"{path} is empty; a CSV file needs a header line and at least one row")
        columns = first[1]
        if header is None:
            _check_header(path, columns[1:] if tables.has_row_index(columns) else columns, settings)
            header = columns
        elif columns != header:
            raise DataError(
                f"{path} has columns [{', '.join(columns)}] but {first_file} has [{', '.join(header)}]; "
                "all files of one batch need the same header"
            )
        first_data = 1 if tables.has_row_index(header) else 0  # the row index is never read
        checks = [
            (i, name, _value_checker(types[name], name, text_checks.get(name)))
            for i, name in enumerate(header)
            if i >= first_data
        ]
        label_index = header.index(label)
        rows = 0
        for line, row in records:
            rows += 1
            if len(row) != len(header):
                few = "few" if len(row) < len(header) else "many"
                raise DataError(
                    f"{path}, line {line}: too {few} fields: {len(row)} where the header has {len(header)} "
                    f"(row: {_shown(','.join(row))})"
                )
            if not row[label_index]:
                unlabeled += 1
                first_unlabeled = first_unlabeled or f"the first is {path.name}, line {line}"
            for i, name, check in checks:
                value = row[i]
                if not value:
                    continue
                filled[name] += 1
                if check is not None and (problem := check(value)) is not None:
                    raise DataError(f"{path}, line {line}, column '{name}': {problem}")
        if rows == 0:
            raise DataError(f"{path} has a header but no rows")
        total += rows
    for _, name, _ in checks:  # every column read (the same header in every file)
        if filled[name] == 0 and name not in settings.excluded:
            raise _empty_column_error(files[0].parent, name)
    _check_unlabeled(first_file.parent, label, total, unlabeled, first_unlabeled)
    return total, unlabeled


# ---------------------------------------------------------------- Parquet


def _check_parquet(files: list[Path], settings: Settings) -> tuple[int, int]:
    """Checks every Parquet file of one batch: columns, types against the schema, labels and numbers."""
    label = settings.project.label.column
    types = settings.column_types
    filled = collections.Counter()
    names: list[str] | None = None
    total = unlabeled = 0
    first_unlabeled = ""
    for path in files:
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{path} is not a readable Parquet file: {error}") from None
        if names is None:
            _check_header(path, table.column_names, settings)
            names = table.column_names
        elif table.column_names != names:
            raise DataError(
                f"{path} has columns [{', '.join(table.column_names)}] but {files[0]} has [{', '.join(names)}]"
            )
        if table.num_rows == 0:
            raise DataError(f"{path} has no rows")
        for name in table.column_names:
            if name in settings.excluded:  # not inputs, and not validated
                continue
            column = table.column(name).combine_chunks()
            stored = tables.arrow_kind(column.type)
            expected = types[name]
            if stored is None or (stored != expected and not (stored == "INT" and expected == "FLOAT")):
                raise DataError(f"{path}, column '{name}': stored as {column.type}, but the schema says {expected}")
            nulls = column.null_count
            if name == label and nulls:
                unlabeled += nulls
                row = int(np.flatnonzero(np.asarray(pc.is_null(column)))[0]) + 1
                first_unlabeled = first_unlabeled or f"the first is {path.name}, row {row}"
            if pa.types.is_floating(column.type):
                bad = np.flatnonzero(
                    ~np.isfinite(column.to_numpy(zero_copy_only=False)) & np.asarray(pc.is_valid(column))
                )
                if bad.size:
                    value = column[int(bad[0])].as_py()
                    raise DataError(f"{path}, row {int(bad[0]) + 1}, column '{name}': {value} is not a finite number")
            filled[name] += len(column) - nulls
        total += table.num_rows
    for name in names or ():
        if filled[name] == 0 and name not in settings.excluded:
            raise _empty_column_error(files[0].parent, name)
    _check_unlabeled(files[0].parent, label, total, unlabeled, first_unlabeled)
    return total, unlabeled


# ---------------------------------------------------------------- TFRecord


def _check_tfrecord(files: list[Path], settings: Settings) -> tuple[int, int]:
    """Checks that each file holds tf.Examples carrying the label; ExampleValidator checks the values."""
    import tensorflow as tf

    label = settings.project.label.column
    total = 0
    for path in files:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty")
        compression = "GZIP" if path.suffix == ".gz" else ""
        try:
            records = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type=compression)]
            first = tf.train.Example.FromString(records[0]) if records else None
        except Exception as error:  # noqa: BLE001  (TF raises several types for corrupt files)
            raise DataError(f"{path} is not a TFRecord file of tf.Example: {str(error).splitlines()[0]}") from None
        if first is None:
            raise DataError(f"{path} holds no records")
        if label not in first.features.feature:
            raise DataError(f"{path}, record 1: the label '{label}' is missing")
        total += len(records)
    return total, 0  # ImportExampleGen keeps every record; ExampleValidator checks the label's presence


CHECKS = {"csv": _check_csv, "parquet": _check_parquet, "tfrecord": _check_tfrecord}


def check_data(settings: Settings) -> DataSummary:
    """Checks the files this run will read, raising DataError at the first problem."""
    folder = settings.input_folder
    pattern = settings.project.data.file_pattern
    files = tables.data_files(folder, pattern)
    if not files:
        raise DataError(f"no files match {folder / pattern}")
    for path in files:
        try:
            check_inside_project(path, settings.project, settings.paths.project_dir, "data file")
        except ConfigError as error:
            raise DataError(str(error)) from None
    rows, unlabeled = CHECKS[settings.project.data.format](files, settings)
    return DataSummary(folder, files, rows, unlabeled)
