"""The exported SavedModel's signatures: what TF Serving calls and what TFMA evaluates with."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from models import features


def _raw_spec(tft_output: tft.TFTransformOutput, keys: set[str]) -> dict:
    """The raw parsing spec, restricted to `keys`."""
    return {k: v for k, v in tft_output.raw_feature_spec().items() if k in keys}


def class_names(tft_output: tft.TFTransformOutput) -> list[str]:
    """Label classes in the order of the model's probability outputs."""
    return [name.decode() for name in tft_output.vocabulary_by_name(features.LABEL_VOCABULARY)]


def make_signatures(model: keras.Model, tft_output: tft.TFTransformOutput) -> dict:
    """`serving_default` classifies serialized tf.Examples; `transform_features` preprocesses them."""
    model.tft_layer = tft_output.transform_features_layer()
    feature_keys = {f.name for f in features.FEATURES}
    serving_spec = _raw_spec(tft_output, feature_keys)
    eval_spec = _raw_spec(tft_output, feature_keys | {features.LABEL})
    names = tf.constant(class_names(tft_output))
    model_keys = list(model.input.keys())

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_default(serialized):
        """What TF Serving calls: raw tf.Examples without the label in, class probabilities and name out."""
        transformed = model.tft_layer(tf.io.parse_example(serialized, serving_spec))
        probabilities = model({k: transformed[k] for k in model_keys})
        return {
            "probabilities": probabilities,
            "class_name": tf.gather(names, tf.argmax(probabilities, axis=-1)),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized):
        """What TFMA calls: raw tf.Examples with the label in, Transform's features out."""
        return model.tft_layer(tf.io.parse_example(serialized, eval_spec))

    return {
        "serving_default": serving_default.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    }
