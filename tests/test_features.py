"""The feature declarations agree with themselves, the curated schema and the shipped data."""

import csv

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.utils import io_utils

from models import features
from pipeline import config


def _schema() -> schema_pb2.Schema:
    return io_utils.SchemaReader().read(str(config.DEFAULT_SCHEMA))


def test_names_are_unique_and_label_is_not_a_feature():
    names = [f.name for f in features.FEATURES]
    assert len(names) == len(set(names))
    assert features.LABEL not in names


def test_transformed_names_never_collide_with_raw_names():
    raw = {f.name for f in features.FEATURES} | {features.LABEL}
    transformed = {f.transformed_name for f in features.FEATURES} | {features.transformed_name(features.LABEL)}
    assert len(transformed) == len(features.FEATURES) + 1
    assert not raw & transformed


def test_kinds_partition_the_features():
    assert set(features.NUMERIC_FEATURES) | set(features.CATEGORICAL_FEATURES) == set(features.FEATURES)
    assert not set(features.NUMERIC_FEATURES) & set(features.CATEGORICAL_FEATURES)


def test_schema_types_match_declared_kinds():
    types = {f.name: f.type for f in _schema().feature}
    for feature in features.NUMERIC_FEATURES:
        assert types[feature.name] in (schema_pb2.FLOAT, schema_pb2.INT), feature.name
    for feature in features.CATEGORICAL_FEATURES:
        assert types[feature.name] == schema_pb2.BYTES, feature.name
    assert types[features.LABEL] == schema_pb2.BYTES


def test_every_declared_column_is_in_the_data_header():
    with open(config.DEFAULT_DATA / "penguins.csv", newline="") as f:
        header = next(csv.reader(f))
    assert {f.name for f in features.FEATURES} | {features.LABEL} <= set(header)


def test_shipped_data_is_the_full_penguins_table_with_gaps_as_empty_fields():
    with open(config.DEFAULT_DATA / "penguins.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 344
    assert {r["species"] for r in rows} == {"Adelie", "Chinstrap", "Gentoo"}
    assert sum(r["sex"] == "" for r in rows) == 11
    assert not any("NA" in r.values() for r in rows)
