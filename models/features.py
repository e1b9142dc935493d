"""The one place that says which columns exist, what they are and how each is transformed."""

from __future__ import annotations

import dataclasses
import enum


class Kind(enum.Enum):
    """How a raw column is turned into a model input."""

    NUMERIC = "numeric"  # z-scored, missing values imputed with the mean
    CATEGORICAL = "categorical"  # vocabulary with out-of-vocabulary buckets


@dataclasses.dataclass(frozen=True)
class Feature:
    """One raw input column and how the model sees it."""

    name: str
    kind: Kind
    oov_buckets: int = 1

    @property
    def transformed_name(self) -> str:
        """Name of this feature after Transform."""
        return transformed_name(self.name)


def transformed_name(key: str) -> str:
    """Names a transformed feature so it never collides with its raw column."""
    return f"{key}_xf"


FEATURES: tuple[Feature, ...] = (
    Feature("bill_length_mm", Kind.NUMERIC),
    Feature("bill_depth_mm", Kind.NUMERIC),
    Feature("flipper_length_mm", Kind.NUMERIC),
    Feature("body_mass_g", Kind.NUMERIC),
    Feature("island", Kind.CATEGORICAL),
    Feature("sex", Kind.CATEGORICAL),
)

LABEL = "species"
LABEL_VOCABULARY = "label_vocabulary"  # TFT vocabulary file holding the class names

NUMERIC_FEATURES = tuple(f for f in FEATURES if f.kind is Kind.NUMERIC)
CATEGORICAL_FEATURES = tuple(f for f in FEATURES if f.kind is Kind.CATEGORICAL)
