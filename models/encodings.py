"""How a raw column becomes model inputs: one object per encoding, and the only place each is defined.

Each encoding says which schema columns it can encode (`check`), what a raw text value must look
like (`check_text`), how `tfxp init` describes it (`describe`), what Transform makes of the column
(`outputs`) and what the network takes from that (`model_inputs`). Adding an encoding means adding
a member to `Encoding` and one class here.

The project file, `tfxp init` and the pre-flight checks use these objects before TensorFlow is
loaded (the CLI answers in half a second), so TensorFlow is imported inside `outputs` only.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from tensorflow_metadata.proto.v0 import schema_pb2

if TYPE_CHECKING:
    import tensorflow as tf

    from models.features import Feature


class Encoding(str, enum.Enum):
    """The encodings a project file may name."""

    NUMERIC = "numeric"
    VOCABULARY = "vocabulary"
    HASHED = "hashed"
    TIMESTAMP = "timestamp"


OOV_BUCKETS = 1  # one index for values the training vocabulary never saw


def transformed_name(key: str) -> str:
    """Names a transformed feature so it never collides with its raw column."""
    return f"{key}_xf"


def missing_indicator_name(key: str) -> str:
    """Names the 0/1 input saying a numeric value was missing and imputed."""
    return transformed_name(f"{key}_missing")


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """One transformed feature as the network takes it."""

    name: str
    cardinality: int = 0  # 0: a float; otherwise an index below this


VocabularySize = Callable[[str], int]  # a feature's learned vocabulary size, from Transform's output


class ColumnEncoding(abc.ABC):
    """One encoding: the checks on its columns, its Transform outputs and its model inputs."""

    encoding: ClassVar[Encoding]

    def check(self, name: str, column_type: int, buckets: int) -> None:
        """Raises ValueError if a column of this schema type, with these buckets, cannot be encoded so."""
        return None  # every column can, unless the encoding says otherwise

    def check_text(self, text: str) -> str | None:
        """Why a non-empty raw text value cannot be encoded so, or None if it can."""
        return None

    @abc.abstractmethod
    def describe(self, buckets: int, optional: bool) -> str:
        """What Transform does, in a few words, for the decision table `tfxp init` prints."""

    @abc.abstractmethod
    def outputs(self, feature: Feature, column) -> dict[str, tf.Tensor]:
        """Transform's output tensors for one column, named by `transformed_name`."""

    @abc.abstractmethod
    def model_inputs(self, feature: Feature, vocabulary_size: VocabularySize) -> list[ModelInput]:
        """The network inputs `outputs` gives, with each category's number of values."""


class Numeric(ColumnEncoding):
    """Z-score with the training mean and deviation; missing values become the mean, and are flagged."""

    encoding = Encoding.NUMERIC

    def check(self, name: str, column_type: int, buckets: int) -> None:
        if column_type == schema_pb2.BYTES:
            raise ValueError(f"'{name}' holds strings and cannot be numeric")

    def describe(self, buckets: int, optional: bool) -> str:
        return "z-score + missing indicator" if optional else "z-score"

    def outputs(self, feature: Feature, column) -> dict[str, tf.Tensor]:
        import tensorflow as tf
        import tensorflow_transform as tft

        from models import tensors

        present = tf.cast(tensors.present_values(column), tf.float32)
        mean = tft.mean(present)
        std = tf.sqrt(tft.var(present))
        filled = tf.where(tensors.missing(column) > 0, mean, tf.cast(tensors.dense(column, 0), tf.float32))
        result = {transformed_name(feature.name): tf.math.divide_no_nan(filled - mean, std)}
        if feature.optional:
            result[missing_indicator_name(feature.name)] = tensors.missing(column)
        return result

    def model_inputs(self, feature: Feature, vocabulary_size: VocabularySize) -> list[ModelInput]:
        inputs = [ModelInput(transformed_name(feature.name))]
        if feature.optional:
            inputs.append(ModelInput(missing_indicator_name(feature.name)))
        return inputs


class Vocabulary(ColumnEncoding):
    """Index into the training vocabulary (top `buckets` when capped); unseen values share an OOV bucket."""

    encoding = Encoding.VOCABULARY
    MISSING = "__missing__"  # TFT drops empty strings from vocabularies, so a gap needs a visible token

    def describe(self, buckets: int, optional: bool) -> str:
        return "vocabulary + OOV bucket"

    def outputs(self, feature: Feature, column) -> dict[str, tf.Tensor]:
        import tensorflow as tf
        import tensorflow_transform as tft

        from models import tensors

        default = self.MISSING if tensors.present_values(column).dtype == tf.string else -1  # missing: its own category
        index = tft.compute_and_apply_vocabulary(
            tensors.dense(column, default),
            top_k=feature.buckets or None,
            num_oov_buckets=OOV_BUCKETS,
            vocab_filename=feature.name,
        )
        return {transformed_name(feature.name): index}

    def model_inputs(self, feature: Feature, vocabulary_size: VocabularySize) -> list[ModelInput]:
        return [ModelInput(transformed_name(feature.name), vocabulary_size(feature.name) + OOV_BUCKETS)]


class Hashed(ColumnEncoding):
    """Stable hash bucket of the string form; needs no vocabulary, so unseen values are fine."""

    encoding = Encoding.HASHED

    def check(self, name: str, column_type: int, buckets: int) -> None:
        if buckets < 1:
            raise ValueError(f"'{name}' is hashed but has no bucket count")

    def describe(self, buckets: int, optional: bool) -> str:
        return f"hashed into {buckets} buckets"

    def outputs(self, feature: Feature, column) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        from models import tensors

        bucket = tf.strings.to_hash_bucket_fast(tensors.dense(tensors.as_strings(column), ""), feature.buckets)
        return {transformed_name(feature.name): bucket}

    def model_inputs(self, feature: Feature, vocabulary_size: VocabularySize) -> list[ModelInput]:
        return [ModelInput(transformed_name(feature.name), feature.buckets)]


class Timestamp(ColumnEncoding):
    """Hour, weekday and month as categories, from ISO-8601 text or Unix seconds; missing reads as the epoch."""

    encoding = Encoding.TIMESTAMP
    PARTS: ClassVar[dict[str, int]] = {"hour": 24, "weekday": 7, "month": 12}  # part → number of values
    ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
    US_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}( \d{1,2}:\d{2}(:\d{2})?)?$")  # 5/31/2024 17:45, as US exports write
    TEXT_FORMATS = ("%m/%d/%Y", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S")  # US_DATE, for `tfxp init` to recognise

    def check_text(self, text: str) -> str | None:
        if not (self.ISO_8601.match(text) or self.US_DATE.match(text)):
            return "is not a date or time such as 2024-05-31 17:45:00 (ISO 8601) or 5/31/2024 17:45"
        return None

    def describe(self, buckets: int, optional: bool) -> str:
        return "timestamp: " + ", ".join(self.PARTS)

    def part_names(self, feature_name: str) -> list[str]:
        """The transformed names of the calendar parts."""
        return [transformed_name(f"{feature_name}_{part}") for part in self.PARTS]

    def outputs(self, feature: Feature, column) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        from models import tensors

        default = "1970-01-01T00:00:00" if tensors.present_values(column).dtype == tf.string else 0
        parts = tensors.timestamp_parts(tensors.dense(column, default))
        return dict(zip(self.part_names(feature.name), (parts[part] for part in self.PARTS), strict=True))

    def model_inputs(self, feature: Feature, vocabulary_size: VocabularySize) -> list[ModelInput]:
        return [
            ModelInput(name, size)
            for name, size in zip(self.part_names(feature.name), self.PARTS.values(), strict=True)
        ]


_ENCODINGS: dict[Encoding, ColumnEncoding] = {e.encoding: e for e in (Numeric(), Vocabulary(), Hashed(), Timestamp())}
if set(_ENCODINGS) != set(Encoding):
    raise ImportError(f"every Encoding needs one ColumnEncoding; missing: {set(Encoding) - set(_ENCODINGS)}")


def of(encoding: Encoding | str) -> ColumnEncoding:
    """The object for an encoding, or a ValueError naming the known ones."""
    try:
        return _ENCODINGS[Encoding(encoding)]
    except ValueError:
        known = " | ".join(e.value for e in Encoding)
        raise ValueError(f"unknown encoding {encoding!r}; choose one of: {known}") from None
