"""FC-Siam-diff (Daudt et al. 2018): a small Siamese U-Net baseline for change detection.

One encoder with shared weights reads both dates; the decoder receives the absolute difference of
the two dates' skip features.  Output: two-channel logits (no change, change).
"""
from __future__ import annotations

import torch
from torch import nn

from . import register
from .unet import UNetDecoder, UNetEncoder


class FCSiamDiff(nn.Module):
    """Siamese U-Net encoder + difference skips + U-Net decoder."""

    def __init__(self, in_channels: int, num_classes: int = 2, base: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.encoder = UNetEncoder(in_channels, base, depth)
        self.decoder = UNetDecoder(num_classes, base, depth)

    def forward(self, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
        f1, f2 = self.encoder(t1), self.encoder(t2)
        return self.decoder([torch.abs(a - b) for a, b in zip(f1, f2)])


@register("fcsiamdiff", task="change", description="FC-Siam-diff change-detection baseline",
          input_multiple=16, encoder=("encoder.",))
def build_fcsiamdiff(in_channels: int, num_classes: int = 2, base: int = 16,
                     depth: int = 4) -> FCSiamDiff:
    return FCSiamDiff(in_channels, num_classes, base=base, depth=depth)
