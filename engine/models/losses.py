"""Loss terms that architectures build their own published losses from.

``target`` holds class indexes (B×H×W, int64) with ``IGNORE`` where a pixel does not count.
The training wing's registry (``engine.training.losses``) combines these into the losses a run
selects; models import them from here, so no model depends on the training wing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = 255


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over counted pixels, optionally with a per-pixel weight map."""
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none",
                                label_smoothing=label_smoothing)
    counted = (target != IGNORE).float()
    if weight is not None:
        counted = counted * weight
    return (per_pixel * counted).sum() / counted.sum().clamp_min(1.0)


def dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice loss (1 − mean Dice over classes present in target or prediction)."""
    probs = torch.softmax(logits.float(), dim=1)
    counted = (target != IGNORE)
    onehot = F.one_hot(torch.where(counted, target, 0), logits.shape[1]).permute(0, 3, 1, 2).float()
    mask = counted[:, None].float()
    inter = (probs * onehot * mask).sum((0, 2, 3))
    total = ((probs + onehot) * mask).sum((0, 2, 3))
    return 1.0 - ((2 * inter + eps) / (total + eps)).mean()


def enhancement_weights(target: torch.Tensor, num_classes: int, low: float = 0.2,
                        high: float = 5.0) -> torch.Tensor:
    """Per-pixel category-wise enhancement weights (CaFE CEL, seed-models.md §2, our reading).

    Per image, class proportion p_c = |M_c| / counted pixels; w_c = (1/p_c) / Σ_present(1/p_k)
    × K_present, clipped to [low, high]; every pixel gets its class's weight (ignored pixels 0).
    Rare classes weigh more, so learning focuses on small regions.
    """
    b = target.shape[0]
    counted = target != IGNORE
    idx = torch.where(counted, target, 0).reshape(b, -1)
    counts = torch.zeros(b, num_classes, device=target.device).scatter_add_(
        1, idx, counted.reshape(b, -1).float())
    present = counts > 0
    p = counts / counts.sum(1, keepdim=True).clamp_min(1.0)
    inv = torch.where(present, 1.0 / p.clamp_min(1e-12), torch.zeros_like(p))
    k = present.sum(1, keepdim=True).float()
    w = (inv / inv.sum(1, keepdim=True).clamp_min(1e-12) * k).clamp(low, high)
    pixel_w = torch.gather(w, 1, idx).reshape(target.shape)
    return pixel_w * counted.float()
