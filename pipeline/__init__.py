"""Pipeline wiring, configuration, runner and command line for the penguin TFX pipeline."""

import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
