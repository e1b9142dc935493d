"""The one place that says which columns are inputs, how each is encoded, and what the label is.

Declarations are derived from the curated schema plus the project's overrides, then passed to
Transform, Tuner and Trainer as JSON, so every stage sees the same list.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping, Sequence
from typing import Annotated

import annotated_types
from tensorflow_metadata.proto.v0 import schema_pb2

from models import encodings
from models.encodings import Encoding, transformed_name


class Problem(str, enum.Enum):
    """What the label asks the model to predict."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


# The Keras output each problem type exports, which serving returns and TFMA scores.
OUTPUT_NAMES = {Problem.MULTICLASS: "probabilities", Problem.BINARY: "probability", Problem.REGRESSION: "prediction"}


@dataclasses.dataclass(frozen=True)
class Feature:
    """One raw input column and how the model sees it."""

    name: str
    encoding: Encoding
    optional: bool = False  # values may be missing
    buckets: int = 0  # hash buckets, or the vocabulary cap (0: no cap)


@dataclasses.dataclass(frozen=True)
class Label:
    """The column to predict; classification labels are mapped to indices by `classes` order."""

    name: str
    problem: Problem
    classes: tuple[str, ...] = ()

    @property
    def transformed_name(self) -> str:
        """The label's name after Transform."""
        return transformed_name(self.name)


@dataclasses.dataclass(frozen=True)
class Declarations:
    """All model inputs and the label: what Transform, the network, serving and TFMA agree on."""

    features: tuple[Feature, ...]
    label: Label

    def to_json(self) -> str:
        """Serialises for a component's custom_config."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Declarations:
        """Reads back what `to_json` wrote."""
        raw = json.loads(text)
        label = raw["label"]
        return cls(
            features=tuple(
                Feature(f["name"], Encoding(f["encoding"]), f["optional"], f["buckets"]) for f in raw["features"]
            ),
            label=Label(label["name"], Problem(label["problem"]), tuple(label["classes"])),
        )


CUSTOM_CONFIG_KEY = "declarations"  # where components find the JSON in custom_config
TUNER_MAX_TRIALS = "max_trials"  # where tuner_fn finds its trial budget in custom_config


def from_custom_config(custom_config: Mapping | None) -> Declarations:
    """The declarations a component was given by the pipeline."""
    if not custom_config or CUSTOM_CONFIG_KEY not in custom_config:
        raise ValueError(f"custom_config has no '{CUSTOM_CONFIG_KEY}'; the pipeline passes them to every component")
    return Declarations.from_json(custom_config[CUSTOM_CONFIG_KEY])


def is_optional(feature: schema_pb2.Feature) -> bool:
    """Whether the schema allows the column to be absent from some examples."""
    return not feature.HasField("shape") and feature.presence.min_fraction < 1.0


def default_encoding(feature: schema_pb2.Feature) -> Encoding:
    """Numbers are numeric and strings get a vocabulary unless the project says otherwise."""
    return Encoding.VOCABULARY if feature.type == schema_pb2.BYTES else Encoding.NUMERIC


def infer_problem(feature: schema_pb2.Feature, schema: schema_pb2.Schema) -> tuple[Problem, str]:
    """The problem type a label implies, and the reason, from its schema entry."""
    classes = schema_classes(feature, schema)
    if feature.type == schema_pb2.BYTES:
        if len(classes) == 2:
            return Problem.BINARY, f"'{feature.name}' is a string with 2 values"
        return Problem.MULTICLASS, f"'{feature.name}' is a string with {len(classes) or 'unlisted'} values"
    if feature.type == schema_pb2.INT and classes:
        kind = Problem.BINARY if len(classes) == 2 else Problem.MULTICLASS
        return kind, f"'{feature.name}' is a categorical integer with {len(classes)} values"
    return Problem.REGRESSION, f"'{feature.name}' is a number"


def schema_classes(feature: schema_pb2.Feature, schema: schema_pb2.Schema) -> tuple[str, ...]:
    """Class names listed by the schema: a string domain, or a categorical integer range."""
    if feature.HasField("string_domain"):
        return tuple(feature.string_domain.value)
    if feature.HasField("domain"):
        for domain in schema.string_domain:
            if domain.name == feature.domain:
                return tuple(domain.value)
    if feature.HasField("int_domain") and feature.int_domain.is_categorical:
        return tuple(str(v) for v in range(feature.int_domain.min, feature.int_domain.max + 1))
    return ()


@dataclasses.dataclass(frozen=True)
class Override:
    """A project's choice for one column (`[features.overrides.<column>]`), replacing the type's default."""

    encoding: Encoding
    buckets: Annotated[int, annotated_types.Ge(0)] = 0  # hash buckets, or a vocabulary cap (0: none)


def declare(
    schema: schema_pb2.Schema,
    label: str,
    problem: Problem | None = None,
    exclude: Sequence[str] = (),
    overrides: Mapping[str, Override] | None = None,
) -> Declarations:
    """Every schema column except the label and `exclude` becomes a feature, encoded by override or type."""
    overrides = overrides or {}
    by_name = {f.name: f for f in schema.feature}
    if label not in by_name:
        raise ValueError(f"label '{label}' is not a column of the schema")
    label_feature = by_name[label]
    problem = problem or infer_problem(label_feature, schema)[0]
    classes = schema_classes(label_feature, schema) if problem is not Problem.REGRESSION else ()
    if problem is Problem.BINARY and len(classes) != 2:
        raise ValueError(f"a binary label needs exactly 2 classes in the schema; '{label}' lists {len(classes)}")
    if problem is Problem.MULTICLASS and len(classes) < 2:
        raise ValueError(f"a multiclass label needs its classes listed in the schema (a domain); '{label}' has none")
    features = []
    for column in schema.feature:
        if column.name == label or column.name in exclude:
            continue
        override = overrides.get(column.name)
        encoding = override.encoding if override else default_encoding(column)
        buckets = override.buckets if override else 0
        encodings.of(encoding).check(column.name, column.type, buckets)
        features.append(Feature(column.name, encoding, is_optional(column), buckets))
    return Declarations(tuple(features), Label(label, problem, classes))
