"""FC-Siam-diff (Daudt et al. 2018): a small Siamese U-Net baseline for change detection.

One encoder with shared weights reads both dates; the decoder receives the absolute difference of
the two dates' skip features.  Output: two-channel logits (no change, change).
"""
from __future__ import annotations

import torch
from torch import nn

from . import register
from .unet import double_conv


class FCSiamDiff(nn.Module):
    """Siamese encoder + difference skips + U-Net decoder."""

    def __init__(self, in_channels: int, num_classes: int = 2, base: int = 16, depth: int = 4) -> None:
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.stem = double_conv(in_channels, widths[0])
        self.down = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.merge = nn.ModuleList(
            double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def _encode(self, x: torch.Tensor) -> list:
        feats = [self.stem(x)]
        for block in self.down:
            feats.append(block(nn.functional.max_pool2d(feats[-1], 2)))
        return feats

    def forward(self, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
        f1, f2 = self._encode(t1), self._encode(t2)
        skips = [torch.abs(a - b) for a, b in zip(f1, f2)]
        y = skips.pop()
        for up, merge in zip(self.up, self.merge):
            y = merge(torch.cat([skips.pop(), up(y)], dim=1))
        return self.head(y)


@register("fcsiamdiff", task="change", description="FC-Siam-diff change-detection baseline",
          input_multiple=16)
def build_fcsiamdiff(in_channels: int, num_classes: int = 2, base: int = 16,
                     depth: int = 4) -> FCSiamDiff:
    return FCSiamDiff(in_channels, num_classes, base=base, depth=depth)
