"""A small U-Net: the baseline every other model has to beat."""
from __future__ import annotations

import torch
from torch import nn

from . import register


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``depth`` down-sampling steps and ``base`` channels at full resolution."""

    def __init__(self, in_channels: int, num_classes: int, base: int = 16, depth: int = 4) -> None:
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.stem = double_conv(in_channels, widths[0])
        self.down = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.merge = nn.ModuleList(
            double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(image)]
        for block in self.down:
            skips.append(block(nn.functional.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up, merge in zip(self.up, self.merge):
            y = merge(torch.cat([skips.pop(), up(y)], dim=1))
        return self.head(y)

    def ssl_features(self, image: torch.Tensor) -> tuple:
        """Self-supervised pre-training hook (``engine.pretrain``): (bottleneck features,
        full-resolution output map of ``num_classes`` channels)."""
        skips = [self.stem(image)]
        for block in self.down:
            skips.append(block(nn.functional.max_pool2d(skips[-1], 2)))
        deep = y = skips.pop()
        for up, merge in zip(self.up, self.merge):
            y = merge(torch.cat([skips.pop(), up(y)], dim=1))
        return deep, self.head(y)


@register("unet", task="segmentation", description="U-Net baseline (small, fast on CPU)",
          input_multiple=16)
def build_unet(in_channels: int, num_classes: int, base: int = 16, depth: int = 4) -> UNet:
    return UNet(in_channels, num_classes, base=base, depth=depth)
