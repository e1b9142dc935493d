"""Bad input, case by case: one clear message naming the file (and row and column where it can), exit 2,
nothing run and the serving folder untouched. Cases that must work are read back through ExampleGen's reader.

Most cases are caught by the pre-flight checks in-process; the two that only the curated schema can
catch (a new category, an empty eval split) run the pipeline up to ExampleValidator.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import cli, config, nodes, preflight, settings, table_example_gen
from tests.conftest import run_tfxp
from tests.datasets import read_csv

HEADER = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"
ROW = "Adelie,Torgersen,39.1,18.7,181,3750,male,2007"


def _data(project: Path, name: str = "penguins.csv") -> Path:
    return project / "data" / name


def _write(project: Path, content: str | bytes, name: str = "penguins.csv") -> Path:
    path = _data(project, name)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _run(project: Path, *args: str):
    """`tfxp run` on the project, in-process; bad input must stop it before any component starts."""
    result = CliRunner().invoke(cli.main, ["run", "--config", str(project / config.CONFIG_FILE), *args])
    assert result.exit_code == cli.EXIT_BAD_INPUT, result.output
    assert "Traceback" not in result.output
    assert "Running pipeline" not in result.stdout
    assert not (project / "outputs" / "serving").exists()
    return " ".join(result.stderr.split())  # rich wraps long lines


def _resolved(project: Path) -> settings.Settings:
    return settings.resolve(config.load_project(project / config.CONFIG_FILE), project)


def _examples(project: Path, name: str = "penguins.csv") -> list[dict]:
    """What ExampleGen's reader makes of a file that passed the checks: each tf.Example's value lists by name."""
    import tensorflow as tf

    resolved = _resolved(project)
    preflight.check_data(resolved)
    records = table_example_gen.serialized_examples(str(_data(project, name)), "csv", resolved.column_types)
    examples = []
    for record in records:
        parsed = tf.train.Example.FromString(record).features.feature
        examples.append(
            {k: list(v.bytes_list.value or v.float_list.value or v.int64_list.value) for k, v in parsed.items()}
        )
    return examples


# ---------------------------------------------------------------- files and paths


def test_data_path_that_does_not_exist(project):
    message = _run(project, "--data", str(project / "nope"))
    assert f"Error: data folder {project / 'nope'} does not exist" in message


def test_no_files_match(project):
    _data(project).rename(project / "data" / "penguins.txt")
    message = _run(project)
    assert f"Error: no files match {project / 'data' / '*.csv'}" in message
    assert "Nothing was run" in message


def test_empty_file(project):
    path = _write(project, "")
    assert f"Error: {path} is empty; a CSV file needs a header line and at least one row" in _run(project)


def test_header_only(project):
    path = _write(project, HEADER + "\n")
    assert f"Error: {path} has a header but no rows" in _run(project)


def test_files_of_one_batch_with_different_headers(project):
    _write(
        project,
        HEADER.replace("sex,year", "year,sex") + "\n" + "Adelie,Torgersen,39.1,18.7,181,3750,2007,male\n",
        name="more.csv",
    )
    message = _run(project)
    assert f"{_data(project)} has columns [" in message and f"but {_data(project, 'more.csv')} has [" in message
    assert "all files of one batch need the same header" in message


def test_data_path_escaping_the_project_by_dotdot(project, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(project / "data", outside)
    message = _run(project, "--data", str(project / ".." / "elsewhere"))
    assert "outside the project folder" in message and "allow_outside_project = true" in message


def test_data_file_escaping_the_project_by_symlink(project, tmp_path):
    outside = tmp_path / "secret.csv"
    shutil.copy(_data(project), outside)
    (project / "data" / "linked.csv").symlink_to(outside)
    message = _run(project)
    assert f"data file {project / 'data' / 'linked.csv'} resolves to {outside}, outside the project folder" in message


# ---------------------------------------------------------------- row shape


def test_row_with_too_few_fields(project):
    path = _write(project, f"{HEADER}\n{ROW}\nAdelie,Torgersen,39.1\n")
    assert f"Error: {path}, line 3: too few fields: 3 where the header has 8" in _run(project)


def test_row_with_too_many_fields(project):
    path = _write(project, f"{HEADER}\n{ROW}\n{ROW}\n{ROW},extra\n")
    assert f"Error: {path}, line 4: too many fields: 9 where the header has 8" in _run(project)


def test_unbalanced_quote(project):
    path = _write(project, f'{HEADER}\n{ROW}\nAdelie,"Torgersen,39.1,18.7,181,3750,male,2007\n{ROW}\n')
    assert f"Error: {path}, line 3: a quoted field that starts here is never closed (unbalanced quote)" in _run(project)


def test_quoted_comma_and_embedded_newline_parse_correctly(project):
    text = read_csv(_data(project))
    rows = [",".join(r) for r in text[1][:20]]
    rows.insert(1, 'Adelie,"Torgersen",39.1,18.7,181,3750,"ma\nle, really",2007')
    _write(project, HEADER + "\n" + "\n".join(rows) + "\n")
    examples = _examples(project)
    assert len(examples) == 21
    assert examples[1]["sex"] == [b"ma\nle, really"]
    assert examples[1]["bill_length_mm"] == pytest.approx([39.1])
    assert examples[2]["species"] == [text[1][1][0].encode()]  # the rows after it are intact


def test_crlf_line_ends_work(project):
    _write(project, f"{HEADER}\r\n{ROW}\r\n{ROW.replace('male', '')}\r\n")
    examples = _examples(project)
    assert [e["year"] for e in examples] == [[2007], [2007]]  # no '\r' glued to the last column
    assert examples[0]["sex"] == [b"male"] and examples[1]["sex"] == []  # an empty field is a missing value


def test_byte_order_mark_works(project):
    _write(project, b"\xef\xbb\xbf" + f"{HEADER}\n{ROW}\n".encode())
    (example,) = _examples(project)
    assert example["species"] == [b"Adelie"]  # the first column is found by its name despite the mark


# ---------------------------------------------------------------- encoding and values


def test_non_utf8_bytes(project):
    path = _write(project, f"{HEADER}\n{ROW}\n".encode() + b"Adelie,T\xf6rgersen,39.1,18.7,181,3750,male,2007\n")
    message = _run(project)
    assert f"Error: {path}, line 3, column 'island': bytes b'\\xf6rge' are not UTF-8 text" in message


def test_string_in_a_numeric_column(project):
    path = _write(project, f"{HEADER}\n{ROW}\n{ROW.replace('3750', '3.75kg')}\n")
    message = _run(project)
    assert (
        f"Error: {path}, line 3, column 'body_mass_g': '3.75kg' is not an integer, but the schema says 'body_mass_g' is INT"
        in message
    )


def test_column_empty_in_every_row(project):
    _write(project, f"{HEADER}\n" + "\n".join(ROW.replace(",male,", ",,") for _ in range(5)) + "\n")
    message = _run(project)
    assert f"Error: column 'sex' is empty in every row of {project / 'data'}" in message


@pytest.mark.parametrize("value", ["NaN", "inf", "-Infinity"])
def test_nan_and_inf(project, value):
    path = _write(project, f"{HEADER}\n{ROW}\n{ROW.replace('39.1', value)}\n")
    message = _run(project)
    assert f"Error: {path}, line 3, column 'bill_length_mm': {value} is not a finite number" in message


def _write_parquet(project: Path, **columns) -> Path:
    """Penguins as Parquet, with some columns replaced, and the project switched to Parquet."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    table = pa_csv.read_csv(_data(project))
    for name, values in columns.items():
        table = table.set_column(table.column_names.index(name), name, pa.array(values))
    _data(project).unlink()
    pq.write_table(table, _data(project, "penguins.parquet"))
    toml = project / config.CONFIG_FILE
    toml.write_text(toml.read_text().replace('format = "csv"', 'format = "parquet"'))
    return _data(project, "penguins.parquet")


def test_nan_in_a_parquet_float_column(project):
    lengths = [39.1] * 344
    lengths[99] = float("nan")
    path = _write_parquet(project, bill_length_mm=lengths)
    assert f"Error: {path}, row 100, column 'bill_length_mm': nan is not a finite number" in _run(project)


def test_parquet_column_stored_with_another_type_than_the_schema(project):
    path = _write_parquet(project, body_mass_g=[f"{i} g" for i in range(344)])
    assert f"Error: {path}, column 'body_mass_g': stored as string, but the schema says INT" in _run(project)


# ---------------------------------------------------------------- header and label


def test_duplicate_column_name(project):
    path = _write(project, f"{HEADER},island\n{ROW},Dream\n")
    message = _run(project)
    assert f"Error: {path}: column name 'island' appears twice in the header (columns 2 and 9)" in message


def test_label_column_missing(project):
    path = _write(project, HEADER.replace("species,", "") + "\n" + ROW.replace("Adelie,", "") + "\n")
    assert f"Error: {path}: the label column 'species' is missing" in _run(project)


def test_label_empty_in_most_rows(project):
    path = _write(project, f"{HEADER}\n{ROW}\n{ROW.replace('Adelie', '')}\n{ROW.replace('Adelie', '')}\n")
    message = _run(project)
    assert f"Error: 2 of the 3 rows in {path.parent} have no value in the label 'species'" in message
    assert "the first is penguins.csv, line 3" in message


def test_a_few_rows_without_a_label_are_left_out(project):
    header, rows = read_csv(_data(project))
    for row in rows[10:13]:
        row[header.index("species")] = ""
    path = _write(project, "\n".join(",".join(r) for r in [header, *rows]) + "\n")
    resolved = _resolved(project)
    summary = preflight.check_data(resolved)
    assert (summary.rows, summary.unlabeled) == (344, 3)
    records = table_example_gen.serialized_examples(str(path), "csv", resolved.example_column_types, "species")
    assert len(list(records)) == 341  # what ExampleGen writes


# ---------------------------------------------------------------- configuration


def test_column_named_in_the_configuration_that_the_data_lacks(project):
    header, rows = read_csv(_data(project))
    keep = [
        i for i, name in enumerate(header) if name != "sex"
    ]  # sex is optional in the schema, a slice in the project
    _write(project, "\n".join(",".join(r[i] for i in keep) for r in [header, *rows]) + "\n")
    message = _run(project)
    assert (
        f"Error: [evaluation] slices in the project file names column 'sex', which {_data(project)} does not have"
        in message
    )


# ---------------------------------------------------------------- versus the curated schema (ExampleValidator)


def _pipeline_stopped_by_anomalies(project: Path) -> str:
    """Runs the pipeline as a user does; it must stop at the anomalies gate with nothing trained or pushed."""
    from pipeline import lineage

    result = run_tfxp("run", "--config", str(project / config.CONFIG_FILE), "--no-tuner")
    assert result.code == cli.EXIT_FAILED, result.stdout + result.stderr
    assert "data anomalies stopped the run before Transform" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "✗ AnomaliesGate" in result.stdout
    store = lineage.open_store(project / "outputs")
    (run,) = [lineage.run_executions(store, r) for r in lineage.pipeline_runs(store)]
    assert nodes.TRANSFORM not in run and nodes.TRAINER not in run
    assert not (project / "outputs" / "serving").exists()
    return " ".join(result.stderr.split())


def _write_new_island_in_kilograms(project: Path) -> None:
    """40 rows on an island the schema does not know, weighed in kg where the schema expects grams."""
    header, rows = read_csv(_data(project))
    for row in rows[:40]:
        row[header.index("island")] = "Atlantis"
        if row[header.index("body_mass_g")]:
            row[header.index("body_mass_g")] = str(int(row[header.index("body_mass_g")]) // 1000)  # kg, not g
    _write(project, "\n".join(",".join(r) for r in [header, *rows]) + "\n")


@pytest.mark.pipeline
def test_new_category_not_in_the_schema(project):
    _write_new_island_in_kilograms(project)
    message = _pipeline_stopped_by_anomalies(project)
    assert "[train] island: Unexpected string values" in message
    assert "[train] body_mass_g: Out-of-range values" in message
    assert "[features] exclude" in message  # how to stop checking a column


@pytest.mark.pipeline
def test_a_schema_edit_and_an_exclusion_take_effect_on_the_next_run(project):
    """The human review step: widen the schema, exclude a column, run again; nothing stale is reused."""
    from pipeline import lineage

    _write_new_island_in_kilograms(project)
    _pipeline_stopped_by_anomalies(project)
    schema_file = project / "schema" / "schema.pbtxt"
    schema_file.write_text(
        schema_file.read_text().replace('value: "Torgersen"', 'value: "Torgersen"\n  value: "Atlantis"')
    )
    project_file = project / config.CONFIG_FILE
    project_file.write_text(project_file.read_text().replace("exclude = []", 'exclude = ["body_mass_g"]'))

    result = run_tfxp("run", "--config", str(project_file), "--no-tuner")
    assert result.code in (cli.EXIT_OK, cli.EXIT_NOT_BLESSED), result.stdout + result.stderr
    store = lineage.open_store(project / "outputs")
    first, second = [lineage.run_executions(store, r) for r in lineage.pipeline_runs(store)]
    assert second[nodes.SCHEMA_GEN].state == "COMPLETE"  # a new schema, not the cached one
    assert second[nodes.SCHEMA_GEN].output("schema").id != first[nodes.SCHEMA_GEN].output("schema").id
    assert second[nodes.ANOMALIES_GATE].state == "COMPLETE" and nodes.TRAINER in second
    imported = _resolved(project).imported_schema
    (mass,) = [f for f in imported.feature if f.name == "body_mass_g"]
    assert mass.lifecycle_stage == settings.schema_pb2.DEPRECATED  # what ExampleValidator passed over


def _split_bucket(record: bytes) -> int:
    """The hash bucket TFX's ExampleGen puts a serialized example in (sha256 of its bytes, as in its _PartitionFn)."""
    return int(hashlib.sha256(record).hexdigest(), 16) % 100


@pytest.mark.pipeline
def test_eval_split_with_no_rows(project):
    resolved = _resolved(project)
    header, rows = read_csv(_data(project))
    records = list(table_example_gen.serialized_examples(str(_data(project)), "csv", resolved.column_types))
    train_buckets = 100 - round(resolved.project.split.eval_fraction * 100)
    kept = [row for row, record in zip(rows, records, strict=True) if _split_bucket(record) < train_buckets]
    assert 150 < len(kept) < len(rows)
    _write(project, "\n".join(",".join(r) for r in [header, *kept]) + "\n")
    message = _pipeline_stopped_by_anomalies(project)
    assert "[eval] whole dataset: no examples" in message
