"""SRCBTFusion-Net's loss: cross-entropy + the Gated-SCNN dual-task boundary-consistency loss.

:func:`ce_dual_task_loss` = cross-entropy + the Gated-SCNN dual-task boundary loss of the spec
(Gumbel-softmax τ = 0.5, triangle smoothing radius 4, central differences, normalised
magnitudes, L1 averaged separately over the predicted-edge and label-edge pixels).  The engine's
``ce_boundary`` is the same idea but averages over all pixels (diluting the boundary term by the
ratio of edge pixels), uses a 3×3 box filter and plain softmax; see ``RECIPE`` in
:mod:`engine.models.srcbtfusion.model`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..losses import IGNORE


def _triangle_smooth(x: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Separable triangle filter [1, 2, …, r+1, …, 2, 1] / (r+1)² per channel (replicate edges)."""
    if radius <= 0:
        return x
    c = x.shape[1]
    k = torch.cat([torch.arange(1, radius + 2), torch.arange(radius, 0, -1)]).to(x)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"),
                 k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"),
                    k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def gradient_magnitude(x: torch.Tensor, radius: int = 4, norm_floor: float = 0.01
                       ) -> torch.Tensor:
    """Normalised spatial gradient magnitude of each channel map (B×C×H×W → B×C×H×W, in [0, 1]).

    Triangle smoothing (radius 4), central differences (one-sided halves at the borders),
    magnitude (exactly 0 where the map is flat), divided by the tensor's maximum (floored at
    ``norm_floor`` so that a flat map — one class, no edge — is not inflated into edges).
    """
    x = _triangle_smooth(x, radius)
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    mag = (torch.sqrt(gx * gx + gy * gy + 1e-12) - 1e-6).clamp_min(0)
    return mag / mag.amax().clamp_min(max(norm_floor, 1e-8))


def dual_task_loss(logits: torch.Tensor, target: torch.Tensor, tau: float = 0.5,
                   radius: int = 4, threshold: float = 1e-8, norm_floor: float = 0.01,
                   faithful_release: bool = False) -> torch.Tensor:
    """Gated-SCNN "dual-task" boundary-consistency loss of the spec (§1.3).

    g = Gumbel-softmax(logits, τ) per pixel; G_pred = normalised gradient magnitude of g (per
    class map), G_gt = the same for the one-hot label; L1(G_pred, G_gt) averaged separately over
    the pixels where G_pred > 1e-8 and where G_gt > 1e-8; loss = 0.5·(both averages).
    ``IGNORE`` pixels do not count: there the label maps take the (detached) predicted values, so
    no false edge appears at the border of an unlabelled area, and they are left out of both
    averages.  ``faithful_release=True`` reproduces the release, whose smoothing and difference
    helpers return their input (G = the maps divided by their maximum).
    """
    logits = logits.float()
    b, c, h, w = logits.shape
    counted = (target != IGNORE)
    g = F.gumbel_softmax(logits, tau=tau, hard=False, dim=1)
    onehot = F.one_hot(torch.where(counted, target, 0), c).permute(0, 3, 1, 2).to(g)
    mask = counted[:, None].expand_as(g)
    onehot = torch.where(mask, onehot, g.detach())
    if faithful_release:
        g_pred = g / g.amax().clamp_min(1e-8)
        g_gt = onehot / onehot.amax().clamp_min(1e-8)
    else:
        g_pred = gradient_magnitude(g, radius, norm_floor)
        g_gt = gradient_magnitude(onehot, radius, norm_floor)
    diff = (g_pred - g_gt).abs()
    on_pred = ((g_pred > threshold) & mask).detach().float()
    on_gt = ((g_gt > threshold) & mask).detach().float()
    eps = 1e-10
    return 0.5 * (diff * on_pred).sum() / (on_pred.sum() + eps) \
        + 0.5 * (diff * on_gt).sum() / (on_gt.sum() + eps)


def ce_dual_task_loss(logits: torch.Tensor, target: torch.Tensor,
                      boundary_weight: float = 1.0) -> torch.Tensor:
    """The recipe's loss: cross-entropy (mean over counted pixels) + 1.0 × :func:`dual_task_loss`.

    Meant to be registered in ``engine/training/losses.py`` as ``"ce_dual_task"``.
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
    ce = ce / (target != IGNORE).sum().clamp_min(1)
    return ce + boundary_weight * dual_task_loss(logits, target)
