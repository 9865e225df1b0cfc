"""Loss registry: ``build_loss(name)`` returns ``loss(output, target) -> scalar``.

``target`` holds class indexes (B×H×W, int64) with ``IGNORE`` where a pixel does not count
(unlabelled, nodata, outside the raster).  ``output`` is the network output: logits, or a dict
``{"logits", "aux_logits": [...]}``; auxiliary outputs (deep supervision) are resized to the
target and added with ``aux_weight``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

import torch
import torch.nn.functional as F

from ..jobs import InputError
from ..models.losses import IGNORE, cross_entropy, dice, enhancement_weights

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bce_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Binary BCE + Dice of the positive class (index 1) for two-channel (no-change/change) logits.

    The change logit is the margin logit₁ − logit₀, so BCE equals 2-class cross-entropy; the Dice
    term is on the change class alone, which keeps rare change from being swamped by background.
    """
    counted = (target != IGNORE).float()
    y = (target == 1).float()
    margin = (logits[:, 1] - logits[:, 0]).float()
    bce = (F.binary_cross_entropy_with_logits(margin, y, reduction="none") * counted).sum() \
        / counted.sum().clamp_min(1.0)
    p = torch.sigmoid(margin) * counted
    d = 1.0 - (2 * (p * y).sum() + eps) / (p.sum() + (y * counted).sum() + eps)
    return bce + d


def boundary(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Boundary-consistency loss: L1 between the spatial gradient magnitudes of the softmax maps
    and of the one-hot labels (the Gated-SCNN "dual task" idea, with real finite differences)."""
    probs = torch.softmax(logits.float(), dim=1)
    counted = (target != IGNORE)
    onehot = F.one_hot(torch.where(counted, target, 0), logits.shape[1]).permute(0, 3, 1, 2).float()

    def grad_mag(x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        gx = F.pad(x[..., :, 2:] - x[..., :, :-2], (1, 1, 0, 0)) / 2
        gy = F.pad(x[..., 2:, :] - x[..., :-2, :], (0, 0, 1, 1)) / 2
        return torch.sqrt(gx ** 2 + gy ** 2 + 1e-8)

    mask = counted[:, None].float()
    diff = (grad_mag(probs) - grad_mag(onehot)).abs() * mask
    return diff.sum() / (mask.sum() * logits.shape[1]).clamp_min(1.0)


def _dual_task(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SRCBTFusion-Net's Gated-SCNN dual-task boundary loss (defined with the model; imported
    lazily because the model registry imports this module's users)."""
    from ..models.srcbtfusion import dual_task_loss
    return dual_task_loss(logits, target)


def _main_and_aux(output: Any) -> tuple[torch.Tensor, list]:
    if isinstance(output, dict):
        return output["logits"], list(output.get("aux_logits") or [])
    return output, []


def _resized(logits: torch.Tensor, size: tuple) -> torch.Tensor:
    if logits.shape[-2:] == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


_TERMS: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": lambda lg, t: cross_entropy(lg, t),
    "dice": dice,
    "ce_dice": lambda lg, t: cross_entropy(lg, t) + dice(lg, t),
    "bce_dice": bce_dice,
    "enhanced_ce": lambda lg, t: cross_entropy(lg, t, weight=enhancement_weights(t, lg.shape[1])),
    "ce_boundary": lambda lg, t: cross_entropy(lg, t) + boundary(lg, t),
    "ce_dual_task": lambda lg, t: cross_entropy(lg, t) + _dual_task(lg, t),
    "vsgnet": lambda lg, t: 0.5 * dice(lg, t) + 0.5 * cross_entropy(lg, t, label_smoothing=0.1),
    "boundary": boundary,
}
# Losses that read the whole (multi-output) network output themselves, defined with their model.
_MODEL_LOSSES = {"cafe": ("..models.cafe", "cafe_loss")}
LOSSES = tuple(_TERMS) + tuple(_MODEL_LOSSES)


def build_loss(name: str = "ce", aux_weight: float = 0.2) -> LossFn:
    """Loss ``name`` applied to the main output plus ``aux_weight`` × each auxiliary output."""
    if name in _MODEL_LOSSES:
        import importlib
        module, attr = _MODEL_LOSSES[name]
        return getattr(importlib.import_module(module, __package__), attr)
    if name not in _TERMS:
        raise InputError(f"unknown loss '{name}'; available: {', '.join(LOSSES)}")
    term = _TERMS[name]

    def loss(output: Any, target: torch.Tensor) -> torch.Tensor:
        main, aux = _main_and_aux(output)
        total = term(main.float(), target)
        for extra in aux:
            total = total + aux_weight * term(_resized(extra.float(), target.shape[-2:]), target)
        return total

    return loss
