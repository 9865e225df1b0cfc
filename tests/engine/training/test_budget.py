import pytest

from engine.training.budget import (MIN_EPOCH_STEPS, EpochPlan, TimeBudget, _fit, epoch_samples,
                                    resumed_plan)


def test_epochs_are_sized_from_the_training_cells():
    assert epoch_samples(None, batch_size=8, train_cells=3) == 8 * MIN_EPOCH_STEPS
    assert epoch_samples(None, batch_size=8, train_cells=100) == 400
    assert epoch_samples(50, batch_size=8, train_cells=100) == 50


def test_a_plan_that_fits_is_kept():
    plan = EpochPlan(10, 20)
    assert _fit(plan, 0, 4, step_seconds=1.0, val_batches=3, remaining_s=1000) == plan
    assert TimeBudget(None).fit(plan, 0, 4, 100.0, 3) == plan


def test_a_plan_too_long_for_the_budget_gets_shorter_epochs():
    # 576 samples of 8: 72 steps an epoch at 2 s a step, 20 epochs; 900 s left: ~450 steps
    fitted = _fit(EpochPlan(20, 72), 0, 4, step_seconds=2.0, val_batches=0, remaining_s=900)
    assert fitted.epochs == 20 and fitted.steps_per_epoch == 22
    assert fitted.epochs * fitted.steps_per_epoch * 2.0 <= 900 + 4 * 2.0


def test_validation_time_is_kept_for_every_epoch():
    plain = _fit(EpochPlan(20, 72), 0, 4, step_seconds=2.0, val_batches=0, remaining_s=900)
    with_val = _fit(EpochPlan(20, 72), 0, 4, step_seconds=2.0, val_batches=6, remaining_s=900)
    assert with_val.steps_per_epoch < plain.steps_per_epoch


def test_too_little_time_for_every_epoch_means_fewer_epochs():
    fitted = _fit(EpochPlan(50, 40), 2, 4, step_seconds=1.0, val_batches=0, remaining_s=20)
    assert fitted.epochs == 2 + 24 // MIN_EPOCH_STEPS and fitted.steps_per_epoch == 4


def test_a_resumed_run_keeps_its_fitted_plan_unless_told_other_epochs():
    saved = {"epochs": 50, "plan": [17, 6]}
    assert resumed_plan(saved, EpochPlan(50, 40)) == EpochPlan(17, 6)
    assert resumed_plan(saved, EpochPlan(80, 40)) == EpochPlan(80, 6)
    assert resumed_plan({"epochs": 50}, EpochPlan(50, 40)) == EpochPlan(50, 40)


@pytest.mark.parametrize("seconds,spent", [(None, False), (0.0, True), (1e6, False)])
def test_spent(seconds, spent):
    assert TimeBudget(seconds).spent() is spent


def test_fewer_epochs_keep_less_time_for_validation():
    """10 validations would eat the 60 s; the two epochs of at least 4 steps that fit validate
    twice and train in the rest: 4 steps done + (60 - 2 × 6.8) / 6.8 = 10.8, 5 steps each."""
    fitted = _fit(EpochPlan(10, 40), 0, 4, step_seconds=6.8, val_batches=3, remaining_s=60)
    assert fitted == EpochPlan(2, 5)


def test_many_planned_epochs_with_validation_still_fill_the_budget():
    # 1000 planned epochs cannot all validate within 120 s; the run must still use its budget
    # for several epochs, not one
    fitted = _fit(EpochPlan(1000, 8), 0, 4, step_seconds=1.0, val_batches=6, remaining_s=120)
    assert fitted.epochs > 1
    assert fitted.steps_per_epoch >= MIN_EPOCH_STEPS
    used = fitted.epochs * (fitted.steps_per_epoch * 1.0 + 6 * 1.0 / 3)
    assert 0.8 * (120 + 4) <= used <= 120 + 4
