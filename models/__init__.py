"""Model code that TFX loads: feature declarations, preprocessing, tuning, training and signatures."""

import os

# TFX 1.16 needs Keras 2; TF 2.16 defaults to Keras 3 unless told otherwise before import.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
