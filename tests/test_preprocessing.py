"""`preprocessing_fn` through tft_beam on hand-made rows, compared with hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from models import encodings, features, preprocessing
from models.encodings import Encoding
from models.features import Feature, Label, Problem

XF = encodings.transformed_name

SCHEMA = text_format.Parse(
    """
feature { name: "length" type: FLOAT value_count { min: 1 max: 1 } presence { min_count: 1 } }
feature { name: "depth" type: FLOAT presence { min_fraction: 1 } shape { dim { size: 1 } } }
feature { name: "mass" type: INT presence { min_fraction: 1 } shape { dim { size: 1 } } }
feature { name: "island" type: BYTES presence { min_fraction: 1 } shape { dim { size: 1 } } }
feature { name: "sex" type: BYTES value_count { min: 1 max: 1 } presence { min_count: 1 } }
feature { name: "rooms" type: INT presence { min_fraction: 1 } shape { dim { size: 1 } } }
feature { name: "company" type: BYTES presence { min_fraction: 1 } shape { dim { size: 1 } } }
feature { name: "signed_up" type: BYTES presence { min_fraction: 1 } shape { dim { size: 1 } } }
feature { name: "unix_time" type: INT presence { min_fraction: 1 } shape { dim { size: 1 } } }
feature { name: "species" type: BYTES presence { min_fraction: 1 } shape { dim { size: 1 } } }
feature { name: "price" type: FLOAT presence { min_fraction: 1 } shape { dim { size: 1 } } }
""",
    schema_pb2.Schema(),
)

DECLARED = features.Declarations(
    features=(
        Feature("length", Encoding.NUMERIC, optional=True),
        Feature("depth", Encoding.NUMERIC),
        Feature("mass", Encoding.NUMERIC),
        Feature("island", Encoding.VOCABULARY),
        Feature("sex", Encoding.VOCABULARY, optional=True),
        Feature("rooms", Encoding.VOCABULARY),
        Feature("company", Encoding.HASHED, buckets=50),
        Feature("signed_up", Encoding.TIMESTAMP),
        Feature("unix_time", Encoding.TIMESTAMP),
    ),
    label=Label("species", Problem.MULTICLASS, ("Adelie", "Chinstrap", "Gentoo")),
)


def _row(length, mass, island, sex, rooms, company, signed_up, unix_time, species):
    row = {
        "length": [] if length is None else [length],
        "depth": [18.0],
        "mass": [mass],
        "island": [island],
        "sex": [] if sex is None else [sex],
        "rooms": [rooms],
        "company": [company],
        "signed_up": [signed_up],
        "unix_time": [unix_time],
        "species": [species],
        "price": [1.0],
    }
    return row


ROWS = [
    _row(40.0, 190, "Biscoe", "male", 3, "Acme Labs", "2024-02-29 17:45:00", 1_700_000_000, "Adelie"),
    _row(50.0, 200, "Biscoe", "male", 3, "Blue Foods", "2021-01-03", 0, "Gentoo"),
    _row(None, 210, "Biscoe", None, 2, "Acme Labs", "1999-12-31T23:59:59", 86_399, "Chinstrap"),
    _row(30.0, 220, "Dream", "male", 5, "Cedar Media", "2000-03-01 06:00:00", 951_868_800, "Adelie"),
]
NEW_ROW = _row(40.0, 190, "Atlantis", "female", 7, "Never Seen Before Ltd", "2024-02-29 17:45:00", 0, "Gentoo")


def _transform(declared: features.Declarations, rows: list, new_rows: list, tmp_path) -> tuple[list, list]:
    metadata = tft.DatasetMetadata(SCHEMA)
    config = {features.CUSTOM_CONFIG_KEY: declared.to_json()}
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (rows_out, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing.preprocessing_fn(inputs, config)
        )
        new_out, _ = ((new_rows, metadata), transform_fn) | tft_beam.TransformDataset()
    return rows_out, new_out


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """ROWS transformed by the analysed graph, plus one row with unseen categories."""
    return _transform(DECLARED, ROWS, [NEW_ROW], tmp_path_factory.mktemp("tft"))


def column(rows, name):
    return [row[XF(name)] for row in rows]


def test_numeric_is_z_scored_with_missing_imputed_to_the_mean(transformed):
    rows, _ = transformed
    std = math.sqrt(200 / 3)  # present values 40, 50, 30: mean 40
    np.testing.assert_allclose(column(rows, "length"), [0.0, 10 / std, 0.0, -10 / std], rtol=1e-5)


def test_optional_numeric_gets_a_missing_indicator_and_required_does_not(transformed):
    rows, _ = transformed
    assert [row[encodings.missing_indicator_name("length")] for row in rows] == [0.0, 0.0, 1.0, 0.0]
    assert encodings.missing_indicator_name("mass") not in rows[0]


def test_constant_column_becomes_zero_not_nan(transformed):
    rows, _ = transformed
    assert column(rows, "depth") == [0.0, 0.0, 0.0, 0.0]


def test_integer_columns_are_z_scored_as_floats(transformed):
    rows, _ = transformed
    np.testing.assert_allclose(column(rows, "mass"), np.array([-15, -5, 5, 15]) / math.sqrt(125), rtol=1e-5)


def test_strings_and_integer_categories_get_frequency_ordered_vocabularies(transformed):
    rows, _ = transformed
    assert column(rows, "island") == [0, 0, 0, 1]  # Biscoe ×3, Dream ×1
    assert column(rows, "sex") == [0, 0, 1, 0]  # male ×3, missing ×1
    assert column(rows, "rooms") == [0, 0, 1, 2] or column(rows, "rooms") == [0, 0, 2, 1]  # 3 ×2; 2 and 5 tie


def test_unseen_categories_go_to_the_oov_bucket(transformed):
    _, new = transformed
    assert new[0][XF("island")] == 2  # vocabulary {Biscoe, Dream}, then one OOV bucket
    assert new[0][XF("sex")] == 2  # {male, ""}, then OOV
    assert new[0][XF("rooms")] == 3  # {3, 2, 5}, then OOV


def test_hashing_is_stable_in_range_and_needs_no_vocabulary(transformed):
    rows, new = transformed
    buckets = column(rows, "company")
    assert all(0 <= b < 50 for b in buckets + column(new, "company"))
    assert buckets[0] == buckets[2]  # same company, same bucket
    expected = tf.strings.to_hash_bucket_fast(["Acme Labs", "Blue Foods", "Cedar Media"], 50).numpy().tolist()
    assert [buckets[0], buckets[1], buckets[3]] == expected


def test_iso_timestamps_become_hour_weekday_and_month(transformed):
    rows, _ = transformed
    parts = [[row[XF(f"signed_up_{p}")] for p in ("hour", "weekday", "month")] for row in rows]
    # 2024-02-29 was a Thursday; 2021-01-03 a Sunday; 1999-12-31 a Friday; 2000-03-01 a Wednesday.
    assert parts == [[17, 3, 1], [0, 6, 0], [23, 4, 11], [6, 2, 2]]


def test_us_dates_read_as_their_iso_equivalents():
    """Exports often write 5/31/2024 17:45; the serving signature gets the same text, so Transform parses it."""
    from models import tensors

    us = ["5/31/2024 17:45", "02/29/2024", "1/3/2021 7:05", "12/31/1999 23:59:59"]
    iso = ["2024-05-31 17:45:00", "2024-02-29", "2021-01-03 07:05:00", "1999-12-31T23:59:59"]
    assert [t.decode() for t in tensors.iso_date_text(tf.constant(us)).numpy()][:3] == [
        "2024-05-31 17:45",
        "2024-02-29",
        "2021-01-03 07:05",
    ]
    parts = tensors.timestamp_parts(tf.constant(us))
    expected = tensors.timestamp_parts(tf.constant(iso))
    for part in ("hour", "weekday", "month"):
        assert parts[part].numpy().tolist() == expected[part].numpy().tolist(), part
    assert parts["hour"].numpy().tolist() == [17, 0, 7, 23]


def test_unix_seconds_become_hour_weekday_and_month(transformed):
    rows, _ = transformed
    parts = [[row[XF(f"unix_time_{p}")] for p in ("hour", "weekday", "month")] for row in rows]
    # 2023-11-14 22:13:20 UTC (Tuesday); the epoch (Thursday); 23:59:59 that day; 2000-03-01 00:00.
    assert parts == [[22, 1, 10], [0, 3, 0], [23, 3, 0], [0, 2, 2]]


def test_classification_label_is_the_index_in_the_declared_class_order(transformed):
    rows, new = transformed
    assert column(rows, "species") == [0, 2, 1, 0]
    assert new[0][XF("species")] == 2


def test_only_declared_outputs_come_out(transformed):
    rows, _ = transformed
    expected = {XF(f.name) for f in DECLARED.features if f.encoding is not Encoding.TIMESTAMP}
    expected |= {XF(f"{name}_{part}") for name in ("signed_up", "unix_time") for part in encodings.Timestamp.PARTS}
    expected |= {encodings.missing_indicator_name("length"), XF("species")}
    assert set(rows[0]) == expected


def test_regression_label_passes_through_as_float(tmp_path):
    declared = features.Declarations((Feature("depth", Encoding.NUMERIC),), Label("mass", Problem.REGRESSION))
    rows, _ = _transform(declared, ROWS, [], tmp_path)
    assert column(rows, "mass") == [190.0, 200.0, 210.0, 220.0]
    assert isinstance(rows[0][XF("mass")], (float, np.floating))
