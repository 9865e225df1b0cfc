"""SRCBTFusion-Net's small building blocks: norms, weight-standardised and plain conv units, the
bilinear resize, stochastic depth and the depthwise-separable conv.

Readings shared by every part of the network (``docs/seed-models.md`` §1 is silent on them):

* GroupNorm: 32 groups (fewer when a tiny width is not divisible by 32), eps 1e-6; weight
  standardisation eps 1e-5.
* Bias rule: a conv followed by a norm layer has no bias, any other conv/linear layer has one
  (the spec's explicit "no bias" on the RGM projection is kept).
* BatchNorm layers that see one value per channel (DCM after global pooling, MASM pyramid pools
  of 1×1 at batch 1) fall back to running statistics in training instead of raising.
* All bilinear resizes use align_corners=True (MFAM as in the spec; decoder, RGM and MASM too).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _groups(channels: int, wanted: int = 32) -> int:
    """Largest group count ≤ ``wanted`` that divides ``channels``."""
    for g in range(min(wanted, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def group_norm(channels: int, groups: int = 32, eps: float = 1e-6) -> nn.GroupNorm:
    """GroupNorm over ``channels`` with up to ``groups`` groups (the largest count dividing it)."""
    return nn.GroupNorm(_groups(channels, groups), channels, eps=eps)


class StdConv2d(nn.Conv2d):
    """Conv2d with weight standardisation (zero mean, unit variance per output filter)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) / torch.sqrt(var + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class SafeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that uses its running statistics when a training batch has a single value per
    channel (global-pooled descriptors at batch 1), where plain BatchNorm raises."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(x)


def conv_bn_act(cin: int, cout: int, k: int = 3, act: type = nn.ReLU, dilation: int = 1
                ) -> nn.Sequential:
    """Conv (no bias, "same" padding) → BatchNorm → activation."""
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         SafeBatchNorm2d(cout), act(inplace=True))


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize (align_corners=True) of a B×C×h×w map to ``size``; no-op when it fits."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole branch per sample with probability ``p`` (training)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class DWSeparable(nn.Module):
    """Depthwise 3×3 conv (cin groups) + pointwise 1×1 conv cin→cout (followed by a norm layer,
    hence no biases)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))
