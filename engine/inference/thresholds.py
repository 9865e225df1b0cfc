"""Probability thresholds as Deepness applies them, for every model kind.

Deepness zeroes every class probability below the threshold (its default 0.5, or the model's
``seg_thresh``), then takes a one-channel (sigmoid) output as foreground wherever a probability
is left, and a multi-class output's winning class (all zero: the first class).  RS Seg applies
the same rule to each window's probabilities before they are blended, so where windows do not
overlap the class map is Deepness's.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional


def apply_threshold(scores: Any, threshold: float, binary: bool) -> Any:
    """``scores`` (B×K×H×W probabilities, numpy or torch) with Deepness's threshold applied.

    ``binary``: the scores are (1 − p, p) of a one-channel output; foreground where p reaches
    the threshold (and is not 0), background elsewhere.
    """
    if binary:
        p = scores[:, 1:2]
        foreground = (p >= threshold) & (p > 0)
        scores[:, 0:1] *= ~foreground
        scores[:, 1:2] *= foreground
        return scores
    scores *= scores >= threshold
    return scores


def thresholded(forward: Callable[[Dict[str, Any]], Any], card: Mapping[str, Any]
                ) -> Callable[[Dict[str, Any]], Any]:
    """``forward`` followed by the card's threshold (unchanged when the card sets none)."""
    threshold: Optional[float] = card.get("threshold")
    if threshold is None:
        return forward
    binary = bool((card.get("onnx") or {}).get("binary"))

    def run(inputs: Dict[str, Any]) -> Any:
        return apply_threshold(forward(inputs), float(threshold), binary)
    return run
