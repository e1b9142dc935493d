"""`tfxp init` on what real exports contain: each rule decides a column the way the README documents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.encodings import Encoding
from pipeline import config, starter
from tests import datasets


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> starter.Starter:
    folder = tmp_path_factory.mktemp("crm")
    datasets.write_crm_export(folder / "exports")
    return starter.build_starter(folder, folder / "exports", "renewed", None, None, None)


def _decided(draft: starter.Starter) -> dict[str, tuple[str, str]]:
    return {d.column: (d.treatment, d.reason) for d in draft.decisions}


def test_the_fairness_gate_is_written_off_with_an_example_and_the_slice_size_default(crm):
    import tomllib

    defaults = config.EvaluationConfig()
    lines = crm.project_text.splitlines()
    assert f"# max_slice_gap = {starter.STARTER_SLICE_GAP}" in lines  # off (TOML has no null), with an example in auc
    assert f"min_slice_size = {defaults.min_slice_size}  # smaller slices are reported, never gated" in lines
    assert any(line.startswith("# Fairness gate: block a model when a slice") for line in lines)
    written = config.Project.model_validate(tomllib.loads(crm.project_text)).evaluation
    assert (written.max_slice_gap, written.min_slice_size) == (None, 30)
    uncommented = crm.project_text.replace("# max_slice_gap = ", "max_slice_gap = ")
    assert config.Project.model_validate(tomllib.loads(uncommented)).evaluation.max_slice_gap == 0.05


def test_a_regression_gets_a_slice_gap_example_in_the_label_units(tmp_path: Path):
    rows = [[i % 7, ["a", "b", "c"][i % 3], 100.0 + 20.0 * ((i * 37) % 11 - 5)] for i in range(200)]
    datasets.write_csv(tmp_path / "data" / "t.csv", ["x", "kind", "cost"], rows)
    draft = starter.build_starter(tmp_path, tmp_path / "data", "cost", None, None, None)
    (line,) = [line for line in draft.project_text.splitlines() if line.startswith("# max_slice_gap = ")]
    deviation = float(np.std([row[2] for row in rows]))  # 63.3
    assert float(line.removeprefix("# max_slice_gap = ")) == pytest.approx(0.05 * deviation, rel=0.02)


def test_a_row_number_is_an_id_even_as_integers(crm):
    treatment, reason = _decided(crm)["row"]
    assert (treatment, reason) == ("excluded", "a row number: counts up by one from 1 down the file")


def test_a_column_named_like_an_id_is_one(crm):
    assert _decided(crm)["customer_id"] == ("excluded", "named like an id, 600 distinct values")


def test_nearly_empty_and_constant_columns_are_left_out(crm):
    assert _decided(crm)["note"] == ("excluded", "nearly empty: 1 of 600 rows (0.2%) have a value")
    assert _decided(crm)["country"] == ("excluded", "constant: every value is 'NZ'")
    assert {"row", "customer_id", "note", "country"} <= set(_excluded(crm))


def _excluded(draft: starter.Starter) -> list[str]:
    line = next(line for line in draft.project_text.splitlines() if line.startswith("exclude = "))
    return [name.strip(' "') for name in line.split("=", 1)[1].split("#")[0].strip(" []").split(",")]


def test_an_integer_code_is_a_category_however_many_values(crm):
    treatment, reason = _decided(crm)["store_code"]
    assert treatment == "vocabulary + OOV bucket"
    assert reason == "integer named like a code, 40 values: a category"
    assert '[features.overrides."store_code"]\nencoding = "vocabulary"' in crm.project_text


def test_us_dates_and_unix_seconds_are_timestamps(crm):
    assert _decided(crm)["signed_up"] == ("timestamp: hour, weekday, month", "values parse as dates/times")
    assert _decided(crm)["last_login_time"][1] == "named like a time, values are Unix seconds"
    for column in ("signed_up", "last_login_time"):
        assert f'[features.overrides."{column}"]\nencoding = "{Encoding.TIMESTAMP.value}"' in crm.project_text


def test_plain_numbers_stay_numbers(crm):
    assert _decided(crm)["visits"] == ("z-score", "number")  # 15 values, but not named like a code
    assert _decided(crm)["spend"] == ("z-score", "number")


def test_rows_without_a_label_are_counted_not_refused(crm):
    treatment, reason = _decided(crm)["renewed"]
    assert treatment == "label: binary"
    assert reason.endswith(f"; {datasets.EXPORT_UNLABELED} rows without it are left out")


def test_a_label_missing_in_most_rows_is_refused(tmp_path: Path):
    rows = [[i, i % 3, "yes" if i < 20 else None] for i in range(60)]
    datasets.write_csv(tmp_path / "data" / "t.csv", ["a", "b", "target"], rows)
    with pytest.raises(starter.InitError, match="40 of 60 rows have no value in 'target'"):
        starter.build_starter(tmp_path, tmp_path / "data", "target", None, None, None)


def test_a_group_number_counting_down_the_file_is_an_id(tmp_path: Path):
    """As in a long-format table: four rows per traveller, numbered 1, 1, 1, 1, 2, 2, ..."""
    rows = [
        [traveller, mode, 10 * mode + traveller % 7, int(mode == traveller % 4)]
        for traveller in range(1, 61)
        for mode in range(4)
    ]
    datasets.write_csv(tmp_path / "data" / "t.csv", ["individual", "mode", "cost", "chosen"], rows)
    draft = starter.build_starter(tmp_path, tmp_path / "data", "chosen", None, None, None)
    assert _decided(draft)["individual"] == ("excluded", "a group number: counts up by one from 1 down the file")
    assert _decided(draft)["cost"][0] == "z-score"  # grows within groups, but is no counter


def test_an_integer_label_gets_its_majority_rate_as_the_bar(tmp_path: Path):
    rows = [[i % 13, [0, 0, 0, 0, 1, 1, 2, 2, 3, 3][i % 10]] for i in range(200)]  # class 0 is 40%
    datasets.write_csv(tmp_path / "data" / "t.csv", ["x", "digit"], rows)
    draft = starter.build_starter(tmp_path, tmp_path / "data", "digit", None, None, None)
    assert draft.problem.value == "multiclass"
    assert "threshold = 0.4  # accuracy at least 0.4: better than always guessing the most common class" in (
        draft.project_text
    )


def test_the_unnamed_row_index_pandas_writes_is_never_read(tmp_path: Path):
    """`DataFrame.to_csv` writes the index as a first column with no name; R's write.csv does the same."""
    import pandas as pd

    from pipeline import config, preflight, settings, table_example_gen

    frame = pd.DataFrame({"size": [float(i % 17) for i in range(120)], "kind": ["a", "b", "c"] * 40})
    frame["big"] = ["yes" if s > 8 else "no" for s in frame["size"]]
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "t.csv")
    assert (tmp_path / "data" / "t.csv").read_text().startswith(",size,kind,big\n")

    draft = starter.build_starter(tmp_path, tmp_path / "data", "big", None, None, None)
    assert _decided(draft)["(no name)"] == ("excluded", "the row index pandas and R write: never read")
    assert "size" in _decided(draft) and "" not in {f.name for f in draft.schema.feature}
    starter.write_starter(draft, tmp_path, force=False)

    resolved = settings.resolve(config.load_project(tmp_path / config.CONFIG_FILE), tmp_path)
    assert preflight.check_data(resolved).rows == 120
    (record,) = list(
        table_example_gen.serialized_examples(str(tmp_path / "data" / "t.csv"), "csv", resolved.column_types)
    )[:1]
    assert set(tf_example_keys(record)) == {"size", "kind", "big"}


def tf_example_keys(record: bytes) -> list[str]:
    from tensorflow.core.example import example_pb2

    return list(example_pb2.Example.FromString(record).features.feature)
