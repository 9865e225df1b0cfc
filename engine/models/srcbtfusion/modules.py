"""SRCBTFusion-Net's own modules: SIEM (semantic information enhancement → EM), MASM (multipath
atrous self-attention on the H/4 skip), RGM (relationship guidance, with the decoder block that
applies it) and the MFAM head (multi-scale feature aggregation → logits).

Readings chosen where the specification is silent or ambiguous:

* MASM adaptive attention for H ≠ W: the spec's keys are the map pooled to (1, W) and the per-
  channel product A·v needs W = H.  We pool the keys to (1, H) instead (H bins along the width
  axis: adaptive average pooling, which resamples the W columns into H bins), so A is H×H per
  channel and A·v is H×W for any W.  For square maps this is exactly the spec's module.
  A 3×3 conv without padding precedes the query pooling to (H, 1), as in the spec.
* MASM multi-receptive-field path: each branch is conv(C→C/16, d₁) → conv(C/16→C/16, d₂) →
  conv(C/16→C, d₃), each conv 3×3 "same"-padded, followed by BN + SiLU; DropPath (0.029) on each
  branch output; no residual around the path (the fuse conv sees all three paths).
* MASM pyramid values: adaptive average pools to (⌊H/2⌋, ⌊W/2⌋), (⌊H/6⌋, ⌊W/6⌋), (⌊H/8⌋, ⌊W/8⌋)
  (each at least 1), one shared 1×1 conv-BN-ReLU, bilinear upsampling back.
* SIEM: ``siem_channel_mode="weights"`` (default, what the release trained) feeds the channel-
  attention weights c (B×64×1×1) to the second depthwise-separable conv; ``"gated"`` feeds a·c.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DropPath, DWSeparable, SafeBatchNorm2d, conv_bn_act, group_norm, resize


# ---- SIEM -------------------------------------------------------------------------------------

class SIEM(nn.Module):
    """Semantic information enhancement: stage-3 map (C) → EM (``em`` channels, values in (0, 1)).

    a = ReLU(GN(DWSep(C→em)(x))); c = CBAM channel attention of a (avg/max pool → shared MLP
    em→em/16→em → sum → sigmoid); c' = ReLU(GN(DWSep(em→em)(c or a·c))); s = mean_c(a) + max_c(a);
    EM = sigmoid(s · c').
    """

    def __init__(self, cin: int, em: int = 64, reduction: int = 16,
                 channel_mode: str = "weights") -> None:
        super().__init__()
        if channel_mode not in ("weights", "gated"):
            raise ValueError("siem_channel_mode must be 'weights' or 'gated'")
        self.channel_mode = channel_mode
        self.reduce = DWSeparable(cin, em)
        self.gn = group_norm(em)
        hidden = max(1, em // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(em, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, em, 1, bias=False))
        self.channel = DWSeparable(em, em)
        # ≥ 2 channels per group: in 'weights' mode this GN sees 1×1 maps (32 groups of 64)
        self.channel_gn = group_norm(em, max(1, min(32, em // 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.gn(self.reduce(x)))
        c = torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(a, 1)) +
                          self.mlp(F.adaptive_max_pool2d(a, 1)))
        feat = c if self.channel_mode == "weights" else a * c
        c2 = F.relu(self.channel_gn(self.channel(feat)))
        s = a.mean(1, keepdim=True) + a.amax(1, keepdim=True)
        return torch.sigmoid(s * c2)



# ---- MASM -------------------------------------------------------------------------------------

class MultiReceptiveField(nn.Module):
    """Three serial-dilated bottleneck branches (C→C/r→C/r→C, 3×3 convs, BN + SiLU after each).
    Branch 1 sees x, branches 2 and 3 see x + out1; output = out1 + out2 + out3."""

    DILATIONS = ((1, 3, 5), (1, 7, 9), (1, 11, 13))

    def __init__(self, channels: int, reduction: int = 16, drop_path: float = 0.029) -> None:
        super().__init__()
        mid = max(1, channels // reduction)
        self.branches = nn.ModuleList(
            nn.Sequential(conv_bn_act(channels, mid, act=nn.SiLU, dilation=d[0]),
                          conv_bn_act(mid, mid, act=nn.SiLU, dilation=d[1]),
                          conv_bn_act(mid, channels, act=nn.SiLU, dilation=d[2]))
            for d in self.DILATIONS)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.drop_path(self.branches[0](x))
        y = x + out1
        out2 = self.drop_path(self.branches[1](y))
        out3 = self.drop_path(self.branches[2](y))
        return out1 + out2 + out3


class AdaptiveAttention(nn.Module):
    """Axial (strip) attention with pyramid-pooled values, per channel; out = x + γ·(A @ v).

    q: 3×3 conv (no padding) → avg-pool to (H, 1) → channel MLP → B×C×H×1.
    k: avg-pool to (1, H) → channel MLP → B×C×1×H (spec: (1, W); identical when H = W, and it
       keeps A square so that A @ v works for H ≠ W — see the module docstring).
    A = softmax_last((q·k) / sqrt(C/2)) (B×C×H×H); v = 1×1 conv(3C→C) of the three pyramid maps.
    """

    POOLS = (2, 6, 8)

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.query_conv = nn.Conv2d(channels, channels, 3)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1))
        self.pyramid = conv_bn_act(channels, channels, k=1)
        self.value = nn.Conv2d(3 * channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.scale = 1.0 / math.sqrt(channels / 2)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel attention maps A (B × C × H × H), rows summing to 1."""
        h = x.shape[2]
        q = self.mlp(F.adaptive_avg_pool2d(self.query_conv(x), (h, 1)))    # B×C×H×1
        k = self.mlp(F.adaptive_avg_pool2d(x, (1, h)))                      # B×C×1×H
        return torch.softmax(torch.matmul(q, k) * self.scale, dim=-1)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """The pyramid-pooled values v (B × C × H × W)."""
        h, w = x.shape[-2:]
        maps = [resize(self.pyramid(F.adaptive_avg_pool2d(x, (max(1, h // p), max(1, w // p)))),
                       (h, w)) for p in self.POOLS]
        return self.value(torch.cat(maps, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * torch.matmul(self.attention(x), self.values(x))


class MASM(nn.Module):
    """Multipath atrous self-attention: [1×1 conv-BN-ReLU, multi-receptive-field convs, adaptive
    attention] concatenated (3C) and fused by a 1×1 conv → C."""

    def __init__(self, channels: int, reduction: int = 16, drop_path: float = 0.029) -> None:
        super().__init__()
        self.pointwise = conv_bn_act(channels, channels, k=1)
        self.receptive = MultiReceptiveField(channels, reduction, drop_path)
        self.attention = AdaptiveAttention(channels, reduction)
        self.fuse = nn.Conv2d(3 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.pointwise(x), self.receptive(x), self.attention(x)], 1))


# ---- decoder ----------------------------------------------------------------------------------

class RGM(nn.Module):
    """Relationship guidance: EM' = resize(1×1 conv(EM) (no bias)) to x;
    out = SiLU(BN(3×3 conv dilation 2 ([x ⊙ EM', x])))."""

    def __init__(self, em: int, channels: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(em, channels, 1, bias=False)
        self.fuse = conv_bn_act(2 * channels, channels, act=nn.SiLU, dilation=2)

    def forward(self, em: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        guide = resize(self.project(em), x.shape[-2:])
        return self.fuse(torch.cat([x * guide, x], dim=1))


class DecoderBlock(nn.Module):
    """RGM(EM, x) → bilinear to the skip's size → concat skip → 2 × 3×3 conv-BN-ReLU."""

    def __init__(self, em: int, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.rgm = RGM(em, cin)
        self.conv1 = conv_bn_act(cin + skip, cout)
        self.conv2 = conv_bn_act(cout, cout)

    def forward(self, em: torch.Tensor, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = resize(self.rgm(em, x), skip.shape[-2:])
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


# ---- MFAM -------------------------------------------------------------------------------------

class DCM(nn.Module):
    """Global descriptor: GAP → GN(C/2 groups) → 1×1 conv C→C/r → BN → GELU → 1×1 conv → out
    (B × out × 1 × 1, added as a per-channel bias)."""

    def __init__(self, cin: int, cout: int, r: int) -> None:
        super().__init__()
        hidden = max(1, cin // r)
        self.gn = nn.GroupNorm(max(1, cin // 2), cin)
        self.reduce = nn.Conv2d(cin, hidden, 1, bias=False)
        self.bn = SafeBatchNorm2d(hidden)
        self.expand = nn.Conv2d(hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gn(F.adaptive_avg_pool2d(x, 1))
        return self.expand(F.gelu(self.bn(self.reduce(y))))


class MFAM(nn.Module):
    """Multi-scale feature aggregation head on d0 (H/16), d1 (H/8), d2 (H/4) → logits at H×W.

    CONV = 3×3 conv-BN-SiLU.  p1 = CONV(d0)↑H/8 → CONV↑H/4 → CONV↑H/2 + DCM(d0, r=8);
    p2 = CONV(d1)↑H/4 → CONV↑H/2 + DCM(d1, r=4); p3 = CONV(d2)↑H/2 + DCM(d2, r=2);
    logits = ↑H×W(1×1 conv(concat[p1, p2, p3])).
    """

    def __init__(self, c0: int, c1: int, c2: int, width: int, num_classes: int) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> nn.Sequential:
            return conv_bn_act(cin, cout, act=nn.SiLU)

        self.path1 = nn.ModuleList([conv(c0, c1), conv(c1, width), conv(width, width)])
        self.path2 = nn.ModuleList([conv(c1, width), conv(width, width)])
        self.path3 = nn.ModuleList([conv(c2, width)])
        self.dcm = nn.ModuleList([DCM(c0, width, 8), DCM(c1, width, 4), DCM(c2, width, 2)])
        self.classifier = nn.Conv2d(3 * width, num_classes, 1)

    def forward(self, d0: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor,
                out_size: Sequence[int]) -> torch.Tensor:
        h2 = (d2.shape[-2] * 2, d2.shape[-1] * 2)
        sizes = [d1.shape[-2:], d2.shape[-2:], h2]
        outs = []
        for start, (x, path, dcm) in enumerate(zip((d0, d1, d2),
                                                   (self.path1, self.path2, self.path3), self.dcm)):
            y = x
            for layer, size in zip(path, sizes[start:]):
                y = resize(layer(y), size)
            outs.append(y + dcm(x))
        return resize(self.classifier(torch.cat(outs, dim=1)), out_size)
