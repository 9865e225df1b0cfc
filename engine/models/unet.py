"""A small U-Net: the baseline every other model has to beat, and its encoder/decoder parts
(FC-Siam-diff reuses them)."""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from . import register


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


def widths(base: int, depth: int) -> List[int]:
    """Channel widths per level: ``base`` at full resolution, doubled at each down-sampling."""
    return [base * 2 ** i for i in range(depth + 1)]


class UNetEncoder(nn.Module):
    """Returns the features of every level, full resolution first."""

    def __init__(self, in_channels: int, base: int, depth: int) -> None:
        super().__init__()
        w = widths(base, depth)
        self.stem = double_conv(in_channels, w[0])
        self.down = nn.ModuleList(double_conv(w[i], w[i + 1]) for i in range(depth))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = [self.stem(x)]
        for block in self.down:
            feats.append(block(nn.functional.max_pool2d(feats[-1], 2)))
        return feats


class UNetDecoder(nn.Module):
    """Up-samples from the deepest level, concatenating each skip, to ``num_classes`` logits."""

    def __init__(self, num_classes: int, base: int, depth: int) -> None:
        super().__init__()
        w = widths(base, depth)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in reversed(range(depth)))
        self.merge = nn.ModuleList(double_conv(2 * w[i], w[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        skips = list(feats)
        y = skips.pop()
        for up, merge in zip(self.up, self.merge):
            y = merge(torch.cat([skips.pop(), up(y)], dim=1))
        return self.head(y)


class UNet(nn.Module):
    """U-Net with ``depth`` down-sampling steps and ``base`` channels at full resolution."""

    def __init__(self, in_channels: int, num_classes: int, base: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.encoder = UNetEncoder(in_channels, base, depth)
        self.decoder = UNetDecoder(num_classes, base, depth)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(image))

    def ssl_features(self, image: torch.Tensor) -> tuple:
        """Self-supervised pre-training hook (``engine.training.pretrain``): (bottleneck features,
        full-resolution output map of ``num_classes`` channels)."""
        feats = self.encoder(image)
        return feats[-1], self.decoder(feats)


@register("unet", task="segmentation", description="U-Net baseline (small, fast on CPU)",
          input_multiple=16, encoder=("encoder.",))
def build_unet(in_channels: int, num_classes: int, base: int = 16, depth: int = 4) -> UNet:
    return UNet(in_channels, num_classes, base=base, depth=depth)
