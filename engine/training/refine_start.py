"""Where a round of refine starts: its parent's weights, or a fresh network.

A model from elsewhere that is wrong on most of what the analyst corrected carries more bias
than knowledge to this imagery.  On the bench loop's final labels (LoveDA, 98 304 px, 72
epochs) the same U-Net reached OA 0.72 fine-tuned from such a base and 0.83 from random
weights.  Over six rounds of review (three seeds each on LoveDA tile 1 and on ISPRS Vaihingen,
another sensor), fine-tuning the base in round 1 instead put the dock's review ahead in rounds
2-3 and behind in rounds 5-6 on both scenes, within the seeds' spread: neither start wins
(docs/benchmarks.md, stops 39-40).  ``auto`` starts a fresh network (the parent's architecture,
size, normalisation and GSD, random weights) when the parent has no lineage yet, was not
trained from a published backbone, and got less than ``FRESH_BELOW`` of the reviewed pixels
right (the trained corrections and the places confirmed without one); every later round
fine-tunes its parent, which by then learned these corrections.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Optional

from ..jobs import InputError
from .config import TrainConfig
from .finetune import inherited, inherited_network

STARTS = ("auto", "parent", "fresh")
FRESH_BELOW = 0.5  # share of the reviewed pixels the parent had right


def check_start(start: str) -> None:
    """Refuse an unknown ``--start`` in one sentence."""
    if start not in STARTS:
        raise InputError(f"--start must be one of {', '.join(STARTS)} (got {start!r})")


def fresh_reason(start: str, parent: Mapping[str, Any], agreement: float) -> Optional[str]:
    """Why this round starts a fresh network (a sentence for the log), or None to fine-tune
    the parent.  ``agreement``: the share of the reviewed pixels (trained corrections and
    confirmed places) the parent had right."""
    if start == "fresh":
        return "refine: a fresh network, as asked (--start fresh)"
    if start == "parent" or (parent.get("lineage") or {}).get("rounds"):
        return None
    if (parent.get("training") or {}).get("backbone") or agreement >= FRESH_BELOW:
        return None
    return (f"refine: the parent had {100 * agreement:.0f} % of the reviewed pixels right, so "
            f"a fresh {parent['architecture']} learns them instead of fine-tuning it "
            f"(--start parent to fine-tune anyway)")


def fresh_config(cfg: TrainConfig, parent: Mapping[str, Any]) -> TrainConfig:
    """``cfg`` (a fine-tune of ``parent``) as a run from random weights of the same network."""
    return replace(cfg, init=None, **inherited_network(parent, None, cfg.hparams),
                   **inherited(parent, cfg.normalisation, cfg.gsd))
