"""Transform's `preprocessing_fn`: turns raw penguin columns into model-ready tensors."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from models import features


def _dense(value: tf.Tensor | tf.SparseTensor, default) -> tf.Tensor:
    """Makes a possibly-missing column a dense [batch] tensor, filling gaps with `default`."""
    if isinstance(value, tf.SparseTensor):
        value = tf.sparse.to_dense(
            tf.SparseTensor(value.indices, value.values, [value.dense_shape[0], 1]),
            default_value=default,
        )
    return tf.reshape(value, [-1])


def _present_values(value: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """The values actually present in a column, as float32, for computing statistics."""
    values = value.values if isinstance(value, tf.SparseTensor) else value
    return tf.cast(values, tf.float32)


def preprocessing_fn(inputs: dict) -> dict:
    """Z-scores numeric columns (imputing the mean), vocabulary-encodes strings and the label."""
    outputs = {}
    for feature in features.NUMERIC_FEATURES:
        present = _present_values(inputs[feature.name])
        mean = tft.mean(present)
        std = tf.sqrt(tft.var(present))
        filled = _dense(_cast_float(inputs[feature.name]), mean)
        outputs[feature.transformed_name] = tf.math.divide_no_nan(filled - mean, std)
    for feature in features.CATEGORICAL_FEATURES:
        outputs[feature.transformed_name] = tft.compute_and_apply_vocabulary(
            _dense(inputs[feature.name], ""),
            num_oov_buckets=feature.oov_buckets,
            vocab_filename=feature.name,
        )
    outputs[features.transformed_name(features.LABEL)] = tft.compute_and_apply_vocabulary(
        _dense(inputs[features.LABEL], ""),
        vocab_filename=features.LABEL_VOCABULARY,
    )
    return outputs


def _cast_float(value: tf.Tensor | tf.SparseTensor) -> tf.Tensor | tf.SparseTensor:
    """Casts a dense or sparse column to float32, keeping its sparsity."""
    if isinstance(value, tf.SparseTensor):
        return tf.SparseTensor(value.indices, tf.cast(value.values, tf.float32), value.dense_shape)
    return tf.cast(value, tf.float32)
