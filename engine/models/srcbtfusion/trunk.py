"""SRCBTFusion-Net's SRCB encoder: the 3-stage ResNet-50-v2 hybrid trunk (BiT/TransUNet layout,
weight-standardised convs + GroupNorm) that encodes the image down to H/16.

Readings chosen where the specification is silent or ambiguous:

* Max-pool: 3×3 stride 2 with padding 1.  It follows a ReLU (values ≥ 0), so this equals BiT's
  original zero-pad + unpadded pool and gives exactly H/4, instead of the release's unpadded pool
  (H/4 − 1) followed by zero-padding the stage-1 output back to H/4.
* The stride of a bottleneck sits on its 3×3 conv (BiT v2).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import StdConv2d, group_norm


class Bottleneck(nn.Module):
    """BiT/TransUNet bottleneck: StdConv 1×1 → 3×3 (stride) → 1×1, GN after each, ReLU between,
    projection shortcut (StdConv 1×1 + GN) when the shape changes, ReLU after the residual add."""

    def __init__(self, cin: int, cmid: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = StdConv2d(cin, cmid, 1, bias=False)
        self.gn1 = group_norm(cmid)
        self.conv2 = StdConv2d(cmid, cmid, 3, stride=stride, padding=1, bias=False)
        self.gn2 = group_norm(cmid)
        self.conv3 = StdConv2d(cmid, cout, 1, bias=False)
        self.gn3 = group_norm(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = StdConv2d(cin, cout, 1, stride=stride, bias=False)
            self.gn_proj = group_norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.gn_proj(self.downsample(x))
        y = F.relu(self.gn1(self.conv1(x)))
        y = F.relu(self.gn2(self.conv2(y)))
        y = self.gn3(self.conv3(y))
        return F.relu(residual + y)


class ResNetTrunk(nn.Module):
    """Root (7×7 s2 StdConv-GN-ReLU, 3×3 s2 max-pool) + 3 bottleneck stages.

    ``forward`` returns [root (w @ H/2), stage 1 (4w @ H/4), stage 2 (8w @ H/8),
    stage 3 (16w @ H/16)] with w = ``width`` (64 in the full configuration).
    """

    def __init__(self, in_channels: int, width: int = 64,
                 units: Sequence[int] = (3, 4, 9)) -> None:
        super().__init__()
        if len(units) != 3 or min(units) < 1:
            raise ValueError("stage_units must be three positive unit counts")
        self.root_conv = StdConv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.root_gn = group_norm(width)
        self.stages = nn.ModuleList()
        cin = width
        for i, n in enumerate(units):
            mid = width * 2 ** i
            out = 4 * mid
            blocks = [Bottleneck(cin, mid, out, stride=1 if i == 0 else 2)]
            blocks += [Bottleneck(out, mid, out) for _ in range(n - 1)]
            self.stages.append(nn.Sequential(*blocks))
            cin = out
        self.out_channels = [width, 4 * width, 8 * width, 16 * width]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        root = F.relu(self.root_gn(self.root_conv(x)))
        y = F.max_pool2d(root, 3, stride=2, padding=1)
        feats = [root]
        for stage in self.stages:
            y = stage(y)
            feats.append(y)
        return feats
