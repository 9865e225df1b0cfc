"""Domain guard: say in one sentence when an input is far from what the model was trained on.

Before a run the input's GSD and band statistics are compared with the card (``gsd_m`` and the
training data's raw band statistics); after a run the class area fractions are reported, and a
change model that marks (nearly) nothing while change vector analysis finds change is flagged.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ..io.gsd import GsdPlan
from ..io.radiometry import BandStats, shift_in_sigma

SHIFT_SIGMA = 2.0  # band means this many training σ apart: another sensor or season
EMPTY_CHANGE = 0.001  # a change map below this share of pixels counts as empty
CVA_CHANGE = 0.01  # … while CVA flags at least this share of a sample


def training_statistics(group: Mapping[str, Any]) -> Optional[Dict[str, List[float]]]:
    """Raw band mean/std of the training data for a card input group (None when unknown)."""
    raw = group.get("raw_statistics")
    if raw:
        return raw
    if group.get("normalisation", "dataset") == "dataset":
        return {"mean": list(group["mean"]), "std": list(group["std"])}
    return None


def input_notes(card: Mapping[str, Any], group: str, stats: Optional[BandStats],
                plan: Optional[GsdPlan]) -> List[str]:
    """Sentences on how far the input is from the model's training data (maybe none)."""
    notes = []
    if plan is not None and plan.describe():
        notes.append(plan.describe())
    spec = card["inputs"][group]
    train = training_statistics(spec) if _trained(card) else None
    if stats is not None and train is not None:
        shift = shift_in_sigma(stats, train["mean"], train["std"])
        if shift > SHIFT_SIGMA:
            mode = spec.get("normalisation", "dataset")
            advice = ("consider a model trained with --normalisation image, --match-histograms "
                      "for two dates, or fine-tuning on a few labelled samples (train --init)"
                      if mode == "dataset" else
                      f"the model normalises each image ({mode}), but if the result looks wrong, "
                      f"fine-tune it on a few labelled samples of this imagery (train --init)")
            notes.append(f"this image's band means differ from the model's training data by "
                         f"{shift:.1f} σ; {advice}")
    return notes


def fraction_note(fractions: Mapping[str, float]) -> str:
    """One line with the area share of each class."""
    parts = ", ".join(f"{name} {100 * share:.1f} %" for name, share in fractions.items())
    return f"area per class: {parts}"


def empty_change_note(changed: float, cva_fraction: Optional[float]) -> Optional[str]:
    """A warning when the change map is (nearly) empty but CVA finds change in a sample."""
    if changed >= EMPTY_CHANGE or cva_fraction is None or cva_fraction < CVA_CHANGE:
        return None
    return (f"the change model marked {100 * changed:.2f} % of the area as changed while change "
            f"vector analysis flags {100 * cva_fraction:.1f} % of a sample; the imagery may differ "
            f"from the model's training data: try --match-histograms, a model trained with "
            f"--normalisation image, lowering --threshold, or fine-tuning on a few labelled pairs "
            f"(train --init)")


def _trained(card: Mapping[str, Any]) -> bool:
    status = str((card.get("training") or {}).get("status", ""))
    return not status.startswith("untrained")
