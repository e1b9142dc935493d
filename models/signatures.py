"""The exported SavedModel's signatures: what TF Serving calls and what TFMA evaluates with."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from models import features
from models.features import Declarations, Problem

CLASS_NAME = "class_name"  # serving output naming the predicted class, for classifiers


def _raw_spec(tft_output: tft.TFTransformOutput, keys: set[str]) -> dict:
    """The raw parsing spec, restricted to `keys`."""
    return {k: v for k, v in tft_output.raw_feature_spec().items() if k in keys}


def make_signatures(model: keras.Model, tft_output: tft.TFTransformOutput, declarations: Declarations) -> dict:
    """`serving_default` predicts from serialized tf.Examples; `transform_features` preprocesses them."""
    model.tft_layer = tft_output.transform_features_layer()
    label = declarations.label
    feature_keys = {f.name for f in declarations.features}
    serving_spec = _raw_spec(tft_output, feature_keys)
    eval_spec = _raw_spec(tft_output, feature_keys | {label.name})
    output_name = features.OUTPUT_NAMES[label.problem]
    names = tf.constant(label.classes or [""])
    model_keys = list(model.input.keys())

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_default(serialized):
        """What TF Serving calls: raw tf.Examples without the label in, the prediction out."""
        transformed = model.tft_layer(tf.io.parse_example(serialized, serving_spec))
        prediction = model({k: transformed[k] for k in model_keys})
        outputs = {output_name: prediction}
        if label.problem is Problem.MULTICLASS:
            outputs[CLASS_NAME] = tf.gather(names, tf.argmax(prediction, axis=-1))
        elif label.problem is Problem.BINARY:
            outputs[CLASS_NAME] = tf.gather(names, tf.cast(prediction[:, 0] >= 0.5, tf.int64))
        return outputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized):
        """What TFMA calls: raw tf.Examples with the label in, Transform's features out."""
        return model.tft_layer(tf.io.parse_example(serialized, eval_spec))

    return {
        "serving_default": serving_default.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    }
