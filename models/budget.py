"""How long training runs, sized to the data: passes over the whole training split, early stopping on
the eval split, a wall-clock cap, and a batch size that grows with the table.

The pipeline passes a Budget to the Tuner and the Trainer in custom_config; they count the
transformed examples and turn it into a Schedule. TensorFlow-free, so the wiring can build it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping

CUSTOM_CONFIG_KEY = "budget"  # where tuner_fn and run_fn find their Budget in custom_config
MIN_BATCH, MAX_BATCH = 32, 1024
ROWS_PER_BATCH_DOUBLING = 1000  # the batch doubles each time the training split does, from 32k rows
# With a fixed step count the batch may stay small on a large table, where evaluating the whole eval
# split each epoch would cost more than training (1M rows at batch 32: 10,000 eval steps an epoch).
FIXED_EVAL_STEPS = 20


@dataclasses.dataclass(frozen=True)
class Budget:
    """What the project file allows one training (or one Tuner trial)."""

    epochs: int  # at most this many passes over the training split
    patience: int  # stop after this many epochs without improvement on the eval split, keeping the best weights
    max_seconds: float  # and stop after this long, whatever the epoch
    batch_size: int = 0  # examples per step and replica; 0: `batch_size_for(training rows)`
    steps: int = 0  # a fixed number of training steps instead (0: by epochs)
    eval_steps: int = 0  # evaluation steps per epoch; 0: the whole eval split (FIXED_EVAL_STEPS with `steps`)

    def to_json(self) -> str:
        """Serialises for a component's custom_config."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_custom_config(cls, custom_config: Mapping) -> Budget:
        """The budget the pipeline passed to a component."""
        return cls(**json.loads(custom_config[CUSTOM_CONFIG_KEY]))


def batch_size_for(rows: int) -> int:
    """32 up to 64k training rows, then doubling with the table, up to 1024: about 1-2k steps an epoch."""
    if rows < 2 * ROWS_PER_BATCH_DOUBLING * MIN_BATCH:
        return MIN_BATCH
    return min(MAX_BATCH, 2 ** math.floor(math.log2(rows / ROWS_PER_BATCH_DOUBLING)))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A Budget applied to a table: what `model.fit` is told."""

    batch_size: int  # global: per replica × replicas
    train_rows: int  # the shuffle buffer: the whole training split
    epochs: int
    steps_per_epoch: int
    validation_steps: int
    patience: int | None  # None: no early stopping (a fixed step count was asked for)
    max_seconds: float


def schedule(budget: Budget, train_rows: int, eval_rows: int, replicas: int = 1) -> Schedule:
    """Epochs over `train_rows` at a batch sized to them, or the fixed steps the budget names."""
    per_replica = budget.batch_size or batch_size_for(train_rows)
    batch = per_replica * replicas
    validation_steps = budget.eval_steps or max(1, math.ceil(eval_rows / batch))
    if budget.steps:  # as asked: ten epochs (or fewer) of equal steps, for the curves, no early stop
        validation_steps = budget.eval_steps or min(validation_steps, FIXED_EVAL_STEPS)
        epochs = max(1, min(10, budget.steps // 10))
        steps = max(1, budget.steps // epochs)
        return Schedule(batch, train_rows, epochs, steps, validation_steps, None, budget.max_seconds)
    steps = max(1, math.ceil(train_rows / batch))
    return Schedule(batch, train_rows, budget.epochs, steps, validation_steps, budget.patience, budget.max_seconds)
