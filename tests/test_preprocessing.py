"""`preprocessing_fn` through tft_beam on hand-made rows, compared with hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tfx.utils import io_utils

from models import features, preprocessing
from pipeline import config

XF = features.transformed_name

# Four penguins; bill_length_mm and sex each have one gap.
ROWS = [
    {"bill_length_mm": [40.0], "bill_depth_mm": [18.0], "flipper_length_mm": [190], "body_mass_g": [3000],
     "island": ["Biscoe"], "sex": ["male"], "species": ["Adelie"], "year": [2007]},
    {"bill_length_mm": [50.0], "bill_depth_mm": [18.0], "flipper_length_mm": [200], "body_mass_g": [4000],
     "island": ["Biscoe"], "sex": ["male"], "species": ["Adelie"], "year": [2007]},
    {"bill_length_mm": [], "bill_depth_mm": [18.0], "flipper_length_mm": [210], "body_mass_g": [5000],
     "island": ["Biscoe"], "sex": [], "species": ["Gentoo"], "year": [2008]},
    {"bill_length_mm": [30.0], "bill_depth_mm": [18.0], "flipper_length_mm": [220], "body_mass_g": [6000],
     "island": ["Dream"], "sex": ["male"], "species": ["Adelie"], "year": [2009]},
]
NEW_ROW = {**ROWS[0], "island": ["Atlantis"]}


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """ROWS transformed by the analysed graph, plus one row with an unseen island."""
    metadata = tft.DatasetMetadata(io_utils.SchemaReader().read(str(config.DEFAULT_SCHEMA)))
    with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp("tft"))):
        (rows_out, _), transform_fn = (ROWS, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing.preprocessing_fn
        )
        new_out, _ = (([NEW_ROW], metadata), transform_fn) | tft_beam.TransformDataset()
    return rows_out, new_out


def test_numeric_is_z_scored_with_missing_imputed_to_the_mean(transformed):
    rows, _ = transformed
    # Present values 40, 50, 30: mean 40, population std sqrt(200/3).
    std = math.sqrt(200 / 3)
    got = [row[XF("bill_length_mm")] for row in rows]
    np.testing.assert_allclose(got, [0.0, 10 / std, 0.0, -10 / std], rtol=1e-5)


def test_constant_column_becomes_zero_not_nan(transformed):
    rows, _ = transformed
    assert [row[XF("bill_depth_mm")] for row in rows] == [0.0, 0.0, 0.0, 0.0]


def test_integer_columns_are_z_scored_as_floats(transformed):
    rows, _ = transformed
    # 190, 200, 210, 220: mean 205, population std sqrt(125).
    np.testing.assert_allclose(
        [row[XF("flipper_length_mm")] for row in rows], np.array([-15, -5, 5, 15]) / math.sqrt(125), rtol=1e-5
    )


def test_strings_get_a_frequency_ordered_vocabulary(transformed):
    rows, _ = transformed
    assert [row[XF("island")] for row in rows] == [0, 0, 0, 1]  # Biscoe ×3, Dream ×1
    assert [row[XF("sex")] for row in rows] == [0, 0, 1, 0]  # male ×3, missing ×1
    assert [row[XF("species")] for row in rows] == [0, 0, 1, 0]  # Adelie ×3, Gentoo ×1


def test_unseen_category_goes_to_the_oov_bucket(transformed):
    _, new = transformed
    assert new[0][XF("island")] == 2  # vocabulary {Biscoe, Dream} then one OOV bucket


def test_only_declared_features_and_label_come_out(transformed):
    rows, _ = transformed
    expected = {f.transformed_name for f in features.FEATURES} | {XF(features.LABEL)}
    assert set(rows[0]) == expected
