"""Learning-rate schedule: linear warm-up, then poly, cosine, step, constant or reduce-on-plateau.

One small object steps per batch (warm-up and decay) and per epoch (plateau on the validation
metric), and saves its state for exact resume.

Recipes are written for the run their paper made (SGSLN: 500 warm-up steps of a 500-epoch run on
all of LEVIR-CD); :func:`fit_to_run` scales their lengths to the steps this run really has, so a
fine-tune of a few hundred steps warms up, decays and steps down within itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

import torch

from ..jobs import InputError

SCHEDULES = ("poly", "cosine", "step", "constant", "plateau")
WARMUP_MAX_SHARE = 0.1  # a recipe's warm-up never takes more than this share of the run's steps


@dataclass(frozen=True)
class RunLengths:
    """The schedule's lengths for one run, in optimiser steps (plateau patience in epochs)."""

    warmup_steps: int
    total_steps: int
    step_every: int
    plateau_patience: int


def fit_to_run(recipe: Mapping[str, Any], steps_per_epoch: int, epochs: int,
               early_stop_patience: int, warmup_steps: Optional[int] = None) -> RunLengths:
    """The recipe's warm-up, step interval and plateau patience scaled to a run of ``epochs`` ×
    ``steps_per_epoch`` steps; ``warmup_steps`` (the user's) is kept as given.

    Lengths the recipe gives in epochs keep their share of the recipe's epochs (CaFE's drop after
    100 of 150 epochs comes after two thirds of any run); a warm-up in steps, or the default of one
    epoch, is capped at :data:`WARMUP_MAX_SHARE` of the run; reduce-on-plateau waits at most half
    the early-stopping patience, so it reduces before the run would stop.
    """
    total = max(1, steps_per_epoch * epochs)
    recipe_epochs = recipe.get("epochs")
    share = (lambda n: n / recipe_epochs) if recipe_epochs else (lambda n: n / max(epochs, 1))
    if warmup_steps is None:
        if "warmup_steps" in recipe:
            warmup = int(recipe["warmup_steps"])
        elif "warmup_epochs" in recipe:
            warmup = int(round(share(recipe["warmup_epochs"]) * total))
        else:
            warmup = steps_per_epoch
        warmup_steps = min(warmup, int(WARMUP_MAX_SHARE * total))
    step_epochs = recipe.get("lr_step_epochs", 30)
    step_every = max(1, int(round(min(share(step_epochs), 1.0) * total))) if recipe_epochs \
        else int(step_epochs * steps_per_epoch)
    patience = int(recipe.get("plateau_patience", 10))
    return RunLengths(max(0, int(warmup_steps)), total, step_every,
                      max(1, min(patience, early_stop_patience // 2)))


class LRSchedule:
    """Sets the optimiser's LR each step: base × warm-up × decay (× factor per plateau)."""

    def __init__(self, optimiser: torch.optim.Optimizer, kind: str, warmup_steps: int,
                 total_steps: int, warmup_start: float = 0.0, plateau_factor: float = 0.1,
                 plateau_patience: int = 10, step_every: int = 1,
                 step_gamma: float = 0.1) -> None:
        if kind not in SCHEDULES:
            raise InputError(f"unknown schedule '{kind}'; use one of {', '.join(SCHEDULES)}")
        self.optimiser, self.kind = optimiser, kind
        self.base = [g["lr"] for g in optimiser.param_groups]
        self.warmup_steps, self.total_steps = max(0, warmup_steps), max(1, total_steps)
        self.warmup_start = warmup_start
        self.plateau_factor, self.plateau_patience = plateau_factor, plateau_patience
        self.step_every, self.step_gamma = max(1, step_every), step_gamma
        self.step_count, self.reductions, self.best, self.bad = 0, 0, -math.inf, 0
        self.encoder_held = False           # groups marked "encoder" at LR 0 (frozen epochs)
        self._apply()

    def factor(self) -> float:
        """The multiplier of the base LR at the current step."""
        s = self.step_count
        if s < self.warmup_steps:
            start = self.warmup_start
            return start + (1 - start) * (s + 1) / self.warmup_steps
        t = min(max((s - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps), 0), 1)
        if self.kind == "poly":
            return max((1 - t) ** 0.9, 1e-3)
        if self.kind == "cosine":
            return max(0.5 * (1 + math.cos(math.pi * t)), 1e-3)
        if self.kind == "step":
            return self.step_gamma ** ((s - self.warmup_steps) // self.step_every)
        if self.kind == "plateau":
            return self.plateau_factor ** self.reductions
        return 1.0

    def _apply(self) -> None:
        f = self.factor()
        for g, base in zip(self.optimiser.param_groups, self.base):
            g["lr"] = 0.0 if self.encoder_held and g.get("encoder") else base * f

    def hold_encoder(self, held: bool) -> None:
        """Keep the encoder groups at LR 0 (a freeze that works under DDP: every parameter still
        gets a gradient, none of the encoder's moves) or release them."""
        self.encoder_held = bool(held)
        self._apply()

    def resize(self, lengths: RunLengths) -> None:
        """Take a run's new lengths (the time budget resized its epochs) from the current step."""
        self.warmup_steps, self.total_steps = lengths.warmup_steps, max(1, lengths.total_steps)
        self.step_every, self.plateau_patience = lengths.step_every, lengths.plateau_patience
        self._apply()

    def step(self) -> None:
        """After each optimiser step."""
        self.step_count += 1
        self._apply()

    def epoch_end(self, metric: float) -> None:
        """After validation: reduce on plateau of ``metric`` (higher is better)."""
        if metric > self.best:
            self.best, self.bad = metric, 0
        else:
            self.bad += 1
            if self.kind == "plateau" and self.bad > self.plateau_patience:
                self.reductions, self.bad = self.reductions + 1, 0
        self._apply()

    @property
    def lr(self) -> float:
        return self.optimiser.param_groups[0]["lr"]

    def state_dict(self) -> Dict[str, Any]:
        return {"step_count": self.step_count, "reductions": self.reductions,
                "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.step_count, self.reductions = int(state["step_count"]), int(state["reductions"])
        self.best, self.bad = float(state["best"]), int(state["bad"])
        self._apply()
