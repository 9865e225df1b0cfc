"""Learning-rate schedule: linear warm-up, then poly, cosine, step, constant or reduce-on-plateau.

One small object steps per batch (warm-up and decay) and per epoch (plateau on the validation
metric), and saves its state for exact resume.
"""
from __future__ import annotations

import math
from typing import Any, Dict

import torch

from ..jobs import InputError

SCHEDULES = ("poly", "cosine", "step", "constant", "plateau")


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
