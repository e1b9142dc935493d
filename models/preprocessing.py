"""Transform's `preprocessing_fn`: turns raw columns into model-ready tensors, as the declarations say."""

from __future__ import annotations

import tensorflow as tf

from models import encodings, features, tensors
from models.features import Label, Problem


def encode_label(label: Label, value: tensors.Column) -> tf.Tensor:
    """Class index by the declared class order, or the float target for regression."""
    if label.problem is Problem.REGRESSION:
        return tf.cast(tensors.dense(value, 0), tf.float32)
    text = tensors.dense(tensors.as_strings(value), "")
    matches = tf.equal(tf.expand_dims(text, 1), tf.constant(label.classes)[tf.newaxis, :])
    return tf.argmax(tf.cast(matches, tf.int64), axis=1)


def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    """Encodes every declared feature and the label; the declarations arrive in custom_config."""
    declarations = features.from_custom_config(custom_config)
    outputs = {}
    for feature in declarations.features:
        outputs.update(encodings.of(feature.encoding).outputs(feature, inputs[feature.name]))
    label = declarations.label
    outputs[label.transformed_name] = encode_label(label, inputs[label.name])
    return outputs
