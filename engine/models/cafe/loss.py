"""CaFE's loss: multi-scale cross-entropy over both training paths, CEL-weighted where flagged.

It computes the spec's loss exactly: cross-entropy (IGNORE = 255) of every output against the
label nearest-downsampled to its size, all terms summed with weight 1 (multi-scale CE per path,
paths 1:1), the CEL per-pixel weights where the output's ``cel_weighted`` says so.
"""
from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.nn.functional as F

from ..losses import cross_entropy, enhancement_weights


def _nearest_target(target: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0].long()


def cafe_loss(output: Any, target: torch.Tensor) -> torch.Tensor:
    """CaFE's loss: Σ over all outputs (both paths' main and side outputs) of the mean
    cross-entropy (IGNORE skipped) against the label nearest-downsampled to each output's size, all
    with weight 1; outputs flagged in ``cel_weighted`` use the CEL per-pixel weights
    (``enhancement_weights`` of that label).  A plain tensor (inference / validation output) gets
    plain cross-entropy."""
    if not isinstance(output, dict):
        return cross_entropy(output.float(), _nearest_target(target, output.shape[-2:]))
    outs = [output["logits"], *(output.get("aux_logits") or [])]
    flags = list(output.get("cel_weighted") or [False] * len(outs))
    total = outs[0].new_zeros((), dtype=torch.float32)
    for out, weighted in zip(outs, flags):
        t = _nearest_target(target, out.shape[-2:])
        w = enhancement_weights(t, out.shape[1]) if weighted else None
        total = total + cross_entropy(out.float(), t, weight=w)
    return total
