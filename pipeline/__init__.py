"""Pipeline wiring, configuration, runner and command line for the penguin TFX pipeline."""

import os

# TFX 1.16 needs Keras 2; TF 2.16 defaults to Keras 3 unless told otherwise before import.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
