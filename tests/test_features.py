"""Declarations come from the curated schema plus the project's overrides, and agree with the shipped data."""

import csv

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from models import encodings, features
from models.encodings import Encoding
from models.features import Override, Problem
from pipeline import config, settings
from tests.datasets import PROJECT_ROOT


@pytest.fixture(scope="module")
def penguins():
    """The shipped project, resolved as `tfxp run` resolves it."""
    project = config.load_project(PROJECT_ROOT / config.CONFIG_FILE)
    return settings.resolve(project, PROJECT_ROOT)


def _schema(text: str) -> schema_pb2.Schema:
    return text_format.Parse(text, schema_pb2.Schema())


def test_penguins_declarations_follow_schema_and_overrides(penguins):
    declared = {f.name: f for f in penguins.declarations.features}
    assert set(declared) == {
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    }
    assert declared["island"] == features.Feature("island", Encoding.VOCABULARY, optional=False)
    assert declared["bill_length_mm"] == features.Feature("bill_length_mm", Encoding.NUMERIC, optional=True)
    assert declared["year"].encoding is Encoding.VOCABULARY  # an integer the project file says is categorical
    assert declared["sex"].optional
    label = penguins.declarations.label
    assert (label.name, label.problem, label.classes) == (
        "species",
        Problem.MULTICLASS,
        ("Adelie", "Chinstrap", "Gentoo"),
    )


def test_declarations_survive_the_trip_through_custom_config(penguins):
    text = penguins.declarations.to_json()
    assert features.from_custom_config({features.CUSTOM_CONFIG_KEY: text}) == penguins.declarations
    with pytest.raises(ValueError, match="custom_config has no 'declarations'"):
        features.from_custom_config({})


def test_transformed_names_never_collide_with_raw_names(penguins):
    raw = {f.name for f in penguins.declarations.features} | {"species"}
    transformed = {encodings.transformed_name(n) for n in raw} | {encodings.missing_indicator_name(n) for n in raw}
    assert len(transformed) == 2 * len(raw)
    assert not raw & transformed


MIXED = _schema("""
feature { name: "y" type: INT int_domain { min: 0 max: 1 is_categorical: true } shape { dim { size: 1 } } }
feature { name: "amount" type: FLOAT value_count { min: 1 max: 1 } presence { min_count: 1 } }
feature { name: "count" type: INT shape { dim { size: 1 } } }
feature { name: "city" type: BYTES shape { dim { size: 1 } } }
feature { name: "customer_id" type: BYTES shape { dim { size: 1 } } }
feature { name: "seen_at" type: BYTES shape { dim { size: 1 } } }
""")


def test_overrides_and_exclusions_shape_the_feature_list():
    declared = features.declare(
        MIXED,
        "y",
        exclude=["customer_id"],
        overrides={"city": Override(Encoding.HASHED, 1000), "seen_at": Override(Encoding.TIMESTAMP)},
    )
    assert [(f.name, f.encoding, f.optional, f.buckets) for f in declared.features] == [
        ("amount", Encoding.NUMERIC, True, 0),
        ("count", Encoding.NUMERIC, False, 0),
        ("city", Encoding.HASHED, False, 1000),
        ("seen_at", Encoding.TIMESTAMP, False, 0),
    ]
    assert declared.label == features.Label("y", Problem.BINARY, ("0", "1"))


def test_problem_is_inferred_from_the_label_with_a_reason():
    by_name = {f.name: f for f in MIXED.feature}
    assert features.infer_problem(by_name["y"], MIXED) == (Problem.BINARY, "'y' is a categorical integer with 2 values")
    assert features.infer_problem(by_name["amount"], MIXED)[0] is Problem.REGRESSION
    assert features.infer_problem(by_name["count"], MIXED)[0] is Problem.REGRESSION


@pytest.mark.parametrize(
    "label, problem, overrides, message",
    [
        ("nope", None, {}, "label 'nope' is not a column of the schema"),
        ("y", Problem.MULTICLASS, {}, None),  # two classes are a valid multiclass problem
        ("city", Problem.BINARY, {}, "a binary label needs exactly 2 classes in the schema; 'city' lists 0"),
        ("y", None, {"city": Override(Encoding.HASHED)}, "'city' is hashed but has no bucket count"),
        ("y", None, {"city": Override(Encoding.NUMERIC)}, "'city' holds strings and cannot be numeric"),
    ],
)
def test_inconsistent_declarations_are_refused(label, problem, overrides, message):
    if message is None:
        assert features.declare(MIXED, label, problem, overrides=overrides).label.classes == ("0", "1")
        return
    with pytest.raises(ValueError, match=message):
        features.declare(MIXED, label, problem, overrides=overrides)


def test_shipped_data_is_the_full_penguins_table_with_gaps_as_empty_fields(penguins):
    with open(penguins.paths.data_root / "penguins.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 344
    assert {r["species"] for r in rows} == {"Adelie", "Chinstrap", "Gentoo"}
    assert sum(r["sex"] == "" for r in rows) == 11
    assert not any("NA" in r.values() for r in rows)
