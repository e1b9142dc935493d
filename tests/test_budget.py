"""Training sized to the data: the batch grows with the table, epochs cover the whole split, and a
fixed step count is honoured when asked for."""

from __future__ import annotations

import pytest

from models import budget

BUDGET = budget.Budget(epochs=50, patience=5, max_seconds=600)


@pytest.mark.parametrize(
    ("rows", "batch"),
    [(200, 32), (15_000, 32), (63_999, 32), (64_000, 64), (300_000, 256), (1_000_000, 512), (5_000_000, 1024)],
)
def test_the_batch_grows_with_the_table(rows, batch):
    assert budget.batch_size_for(rows) == batch


def test_an_epoch_is_the_whole_training_split():
    plan = budget.schedule(BUDGET, train_rows=300_000, eval_rows=150_000)
    assert plan.batch_size == 256 and plan.steps_per_epoch == 1172  # ceil(300000 / 256)
    assert plan.epochs == 50 and plan.patience == 5 and plan.max_seconds == 600
    assert plan.validation_steps == 586  # the whole eval split each epoch
    assert plan.train_rows == 300_000  # the shuffle buffer


def test_replicas_multiply_the_batch_and_divide_the_steps():
    one, two = budget.schedule(BUDGET, 100_000, 10_000), budget.schedule(BUDGET, 100_000, 10_000, replicas=2)
    assert two.batch_size == 2 * one.batch_size
    assert two.steps_per_epoch == pytest.approx(one.steps_per_epoch / 2, abs=1)


def test_a_fixed_step_count_and_batch_are_honoured_without_early_stopping():
    fixed = budget.Budget(epochs=50, patience=5, max_seconds=600, batch_size=32, steps=200, eval_steps=20)
    plan = budget.schedule(fixed, train_rows=1_000_000, eval_rows=500_000)
    assert (plan.batch_size, plan.epochs * plan.steps_per_epoch, plan.validation_steps) == (32, 200, 20)
    assert plan.patience is None
    unbounded = budget.Budget(epochs=50, patience=5, max_seconds=600, batch_size=32, steps=200)
    # evaluating all 500k eval rows at batch 32 each epoch would outweigh the 200 training steps
    assert budget.schedule(unbounded, 1_000_000, 500_000).validation_steps == budget.FIXED_EVAL_STEPS


def test_the_budget_travels_in_custom_config():
    text = BUDGET.to_json()
    assert budget.Budget.from_custom_config({budget.CUSTOM_CONFIG_KEY: text}) == BUDGET
