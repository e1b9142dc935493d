"""What each of Beam's worker processes imports before its first bundle, named by `--beam_plugin` (SetupOptions).

Beam's SDK harness imports the plugins named in the pipeline options as it starts (`sdk_worker_main`): the
DirectRunner's multi_processing workers, and the boot program of the SDK containers that Dataflow, Flink and
Spark run. Those workers unpickle TFX's and TFMA's code and never import this project's `models` on their own,
so two things the run's own process has would be missing there:
- `TF_USE_LEGACY_KERAS`, set by `models` before TensorFlow loads: without it TFMA's `tf.keras` is Keras 3,
  which cannot load the Trainer's SavedModel;
- the correction of TFMA's cross-slice bookkeeping, without which no model with a fairness gate is blessed.
"""

import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from pipeline import cross_slice_validation

cross_slice_validation.install()
