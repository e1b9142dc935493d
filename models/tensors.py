"""TensorFlow helpers for raw columns as Transform receives them: dense or sparse, possibly missing."""

from __future__ import annotations

import tensorflow as tf

Column = tf.Tensor | tf.SparseTensor


def dense(value: Column, default) -> tf.Tensor:
    """Makes a possibly-missing column a dense [batch] tensor, filling gaps with `default`."""
    if isinstance(value, tf.SparseTensor):
        value = tf.sparse.to_dense(
            tf.SparseTensor(value.indices, value.values, [value.dense_shape[0], 1]),
            default_value=tf.cast(default, value.dtype),
        )
    return tf.reshape(value, [-1])


def present_values(value: Column) -> tf.Tensor:
    """The values actually present in a column."""
    return value.values if isinstance(value, tf.SparseTensor) else value


def missing(value: Column) -> tf.Tensor:
    """1.0 where the column had no value, else 0.0, as a dense [batch] tensor."""
    if not isinstance(value, tf.SparseTensor):
        return tf.zeros_like(tf.reshape(value, [-1]), dtype=tf.float32)
    present = tf.SparseTensor(value.indices, tf.ones_like(value.values, dtype=tf.float32), value.dense_shape)
    return 1.0 - dense(present, 0.0)


def as_strings(value: Column) -> Column:
    """The column's values as strings, keeping its sparsity."""
    if present_values(value).dtype == tf.string:
        return value
    if isinstance(value, tf.SparseTensor):
        return tf.SparseTensor(value.indices, tf.strings.as_string(value.values), value.dense_shape)
    return tf.strings.as_string(value)


def _days_from_civil(year: tf.Tensor, month: tf.Tensor, day: tf.Tensor) -> tf.Tensor:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year = year - tf.cast(month <= 2, tf.int64)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * tf.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _month_from_days(days: tf.Tensor) -> tf.Tensor:
    """Month (1-12) of a day count since 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719468
    day_of_era = z - (z // 146097) * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    return tf.where(shifted_month < 10, shifted_month + 3, shifted_month - 9)


def iso_date_text(value: tf.Tensor) -> tf.Tensor:
    """US dates (5/31/2024, 05/31/2024 7:45) rewritten as zero-padded ISO text (2024-05-31 07:45); ISO unchanged."""
    text = tf.strings.regex_replace(value, r"^(\d{1,2})/(\d{1,2})/(\d{4})", r"\3-\1-\2")
    text = tf.strings.regex_replace(text, r"^(\d{4})-(\d)-", r"\1-0\2-")
    text = tf.strings.regex_replace(text, r"^(\d{4}-\d{2})-(\d)(\D|$)", r"\1-0\2\3")
    return tf.strings.regex_replace(text, r"^(\d{4}-\d{2}-\d{2})[ T](\d):", r"\1 0\2:")


def timestamp_parts(value: tf.Tensor) -> dict[str, tf.Tensor]:
    """Hour (0-23), weekday (Monday 0) and month (0-11) of ISO-8601 or US date strings, or Unix seconds."""
    if value.dtype == tf.string:
        padded = tf.strings.join([iso_date_text(value), "T00:00:00"])  # a bare date reads as midnight

        def number(start: int, length: int) -> tf.Tensor:
            return tf.strings.to_number(tf.strings.substr(padded, start, length), out_type=tf.int64)

        year, month, day, hour = number(0, 4), number(5, 2), number(8, 2), number(11, 2)
        days = _days_from_civil(year, month, day)
    else:
        seconds = tf.cast(value, tf.int64)
        days = seconds // 86400
        hour = (seconds - days * 86400) // 3600
        month = _month_from_days(days)
    return {"hour": hour, "weekday": (days + 3) % 7, "month": month - 1}  # 1970-01-01 was a Thursday
