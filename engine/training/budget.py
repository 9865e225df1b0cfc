"""How long a run's epochs are: sized from the data, then fitted to ``--time-budget``.

An epoch shows every training cell about four times (at least four batches), whatever the GSD
the windows are read at.  With a time budget the first steps are timed and, when the planned
epochs would not fit, each epoch gets fewer steps (and the run fewer epochs when even
:data:`MIN_EPOCH_STEPS` steps an epoch would not fit), so the run validates, decays its learning
rate and ends within the budget; the budget is also checked after every step, so a slow step
stops the run within one step of it, not one epoch.  The clock starts with the run, so
scanning the labels and reading the statistics count too.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

PASSES_PER_EPOCH = 4  # windows drawn per training cell and epoch
MIN_EPOCH_STEPS = 4  # below this an epoch is mostly validation: fewer epochs instead
PROBE_STEPS = 3  # steps timed (after the first, which starts the loader) before fitting
VALIDATION_STEP_SHARE = 1 / 3  # a validation batch costs about a third of a training step


def epoch_samples(samples_per_epoch: Optional[int], batch_size: int, train_cells: int) -> int:
    """Windows per epoch: the user's number, else :data:`PASSES_PER_EPOCH` per training cell
    (at least four batches)."""
    if samples_per_epoch:
        return int(samples_per_epoch)
    return max(batch_size * MIN_EPOCH_STEPS, train_cells * PASSES_PER_EPOCH)


@dataclass(frozen=True)
class EpochPlan:
    """How many epochs the run has and how many optimiser steps each."""

    epochs: int
    steps_per_epoch: int


class TimeBudget:
    """The run's clock: ``spent()`` after every step, ``fit()`` once the first steps are timed."""

    def __init__(self, seconds: Optional[float], world: int = 1) -> None:
        self.seconds, self.world = seconds, world
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def spent(self) -> bool:
        """True once the budget is spent (rank 0 decides, so all ranks stop together)."""
        if self.seconds is None:
            return False
        flag = torch.tensor([float(self.elapsed() >= self.seconds)])
        if self.world > 1:
            torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())

    def fit(self, plan: EpochPlan, epoch: int, steps_done: int, step_seconds: float,
            val_batches: int) -> EpochPlan:
        """``plan`` shortened so that what is left of it fits the budget, from ``steps_done``
        steps into epoch index ``epoch`` at ``step_seconds`` per step (rank 0's estimate)."""
        if self.seconds is None:
            return plan
        fitted = _fit(plan, epoch, steps_done, step_seconds, val_batches,
                      self.seconds - self.elapsed())
        if self.world > 1:
            shape = torch.tensor([fitted.epochs, fitted.steps_per_epoch], dtype=torch.int64)
            torch.distributed.broadcast(shape, src=0)
            fitted = EpochPlan(int(shape[0]), int(shape[1]))
        return fitted


def _fit(plan: EpochPlan, epoch: int, steps_done: int, step_seconds: float, val_batches: int,
         remaining_s: float) -> EpochPlan:
    epochs_left = plan.epochs - epoch
    val_s = val_batches * step_seconds * VALIDATION_STEP_SHARE
    step_s = max(step_seconds, 1e-9)

    def affordable(epochs: int) -> float:
        """Steps still affordable, counted from the start of the current epoch, when
        ``epochs`` epochs are left to validate."""
        return steps_done + max(0.0, remaining_s - epochs * val_s) / step_s

    if plan.steps_per_epoch * epochs_left <= affordable(epochs_left):
        return plan
    epochs = max(1, min(epochs_left, int(affordable(epochs_left) // MIN_EPOCH_STEPS)))
    steps = max(1, int(affordable(epochs) // epochs))  # fewer epochs validate fewer times
    return EpochPlan(epoch + epochs, min(steps, plan.steps_per_epoch))


def resumed_plan(saved_config: Dict[str, Any], plan: EpochPlan) -> EpochPlan:
    """The plan a resumed run goes on with: the checkpoint's (as its budget fitted it), unless
    the resuming command asks for another number of epochs (``plan``: the command's)."""
    saved = saved_config.get("plan")
    if saved is None:  # a checkpoint from before epochs were fitted
        return plan
    epochs = saved[0] if saved_config.get("epochs") == plan.epochs else plan.epochs
    return EpochPlan(int(epochs), int(saved[1]))
