"""SGSLN: exchanging dual encoder–decoder with Semantic Guidance and Spatial Localization.

Zhao, Zhang, Xiao, He, IEEE TGRS 61 (2023), arXiv 2311.11302; re-implemented from the written
specification in ``docs/seed-models.md`` §5 (no seed code used).

Binary change detection.  One Siamese (shared-weight) encoder reads both dates; after the H/8 stage
half of the channels (the odd-indexed ones) are exchanged between the two dates; the deepest stage
and one shared decoder then run per date, each decoder ending in an auxiliary change map at H/2
("semantic guidance", supervised with the change label).  A change path fuses the two decoders'
features at four scales (H/16 … H/2) with double-pooling fusion attention (DPFA) and upsamples to
the full-resolution change output ("spatial localisation").

Shapes for the full configuration (``base=32``), one 256² pair of 3-band images::

    E1  conv3×3-BN-ReLU, CGSU, CGSU            32 @ 256²   (per date, shared weights)
    E2  Encoder_Block                          64 @ 128²
    E3  Encoder_Block                         128 @ 64²
    E4  Encoder_Block                         256 @ 32²   → channel exchange (odd channels swapped)
    E5  Encoder_Block (on exchanged E4)       512 @ 16²
    decoder (shared, per date): de5 = E5      512 @ 16²
        de4 = DB(de5, E4x)                    256 @ 32²
        de3 = DB(de4, E3)                     128 @ 64²
        de2 = DB(de3, E2)                      64 @ 128²  → aux head 3×3 conv 64→1 → 1 @ 128²
    change path: c5 = DPFA(de5₁, de5₂)        512 @ 16²
        c4 = DB(c5, DPFA(de4₁, de4₂))         256 @ 32²
        c3 = DB(c4, DPFA(de3₁, de3₂))         128 @ 64²
        c2 = DB(c3, DPFA(de2₁, de2₂))          64 @ 128²
        head: conv3×3 64→32-BN-ReLU → conv3×3 32→8-BN-ReLU → bilinear ×2 → conv7×7 8→1 → 1 @ 256²

Output contract of the engine: the network's change output is one logit per pixel (sigmoid
probability).  It is returned as two-channel logits ``[0, l]`` (no change, change), so that
``softmax`` gives exactly ``sigmoid(l)`` for the change class, ``argmax`` equals ``sigmoid > 0.5``
and the engine's ``bce_dice`` loss (which works on the margin logit₁ − logit₀ = l) is exactly the
spec's BCE-with-logits + Dice.  The two auxiliary maps (H/2) are converted the same way; the
engine's loss upsamples them bilinearly to the label instead of downsampling the label bilinearly
as in the seed — a small difference at change edges only.  With ``num_classes != 2`` the heads
emit ``num_classes`` channels directly (not part of the spec).

Readings chosen where the specification is silent or ambiguous:

* Convolutions followed by BN have no bias (the spec says "no bias" for CGSU and the decoder
  1×1 conv; we apply the same to the stem conv, the CGSU_DOWN conv, the Encoder_Block 3×3 conv and
  the head's 3×3 convs).  The attention convs (Conv1d / 7×7) and the output convs keep their bias.
* Shared weights everywhere the two dates are processed: one encoder module, one decoder module and
  one auxiliary head, all applied to both dates (the spec's section header: "weights are shared
  between the two temporal branches").  The change path (DPFA + decoder blocks + head) exists once.
* Channel exchange: after E4, the odd-indexed channels (1, 3, 5, …) are swapped between the dates
  (ratio 1:1, uniformly spaced); E5 runs on the exchanged tensors, and the exchanged E4 tensors
  are the decoder skips and the DPFA inputs of the same level.  The mask is built on the input's
  device (the seed's hard-coded ``.cuda()`` is a release bug).
* CBAM' kernel k = ⌊(log2 C + 1)/2⌋, raised to the next odd number if even (64→3, 128…512→5);
  the DPFA Conv1d kernels use the same rule on their level's width.
* DPFA's branch softmax: the two Conv1d (resp. two 7×7 convs) produce one score per date; softmax
  over the two dates gives w1, w2 (channel weights B×C×1×1, spatial weights B×1×H×W).
* Dropout(0.1) in CGSU and CGSU_DOWN as in the spec (``dropout`` size option).
* Head widths 2·base → base → base/4 (64 → 32 → 8 at full size), so the tiny configuration
  (``TINY``, base 8: widths 8…128) keeps the topology.

Parameters (3 bands, full configuration): 6 035 758 (spec, measured on the seed: 6.04 M) —
encoder 5 494 356, decoder 258 944, aux head 577, DPFA ×4 1 728, change-path decoder blocks
258 944, head 21 209.  ``input_multiple`` is 16 (E5 is at H/16).
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import register

#: Parameter count of the full configuration for 3 input bands (this implementation, exact).
FULL_PARAMS = 6_035_758
#: The specification's measured figure for the authors' network ("6.04 M").
SPEC_PARAMS = 6_040_000
#: Tiny configuration for tests (same topology, widths 8…128).
TINY: Dict[str, object] = {"base": 8}
#: Training recipe of the spec (§5.3) as plain values for the training loop.
RECIPE: Dict[str, object] = {
    "optimizer": "adamw",
    "lr": 2e-4,
    "weight_decay": 1e-3,
    "batch_size": 16,
    "eval_batch_size": 32,
    "epochs": 500,
    "warmup_steps": 500,          # linear warm-up over 500 optimiser steps (not epochs) …
    "warmup_start_lr": 1e-7,
    "schedule": "plateau",        # reduce-on-plateau of validation F1 (mode "max")
    "plateau_metric": "f1",
    "plateau_factor": 0.1,
    "plateau_patience": 12,       # validation epochs without improvement
    "validate_from_epoch": 250,
    "grad_clip": 20.0,            # L2 norm
    "amp": True,
    "seed": 42,
    "date_swap": True,            # random temporal swap of t1/t2, p = 0.5
    "date_swap_p": 0.5,
    "loss": "bce_dice",
    "aux_weight": 0.2,
    "tile": 256,
    "threshold": 0.5,
    "select_metric": "f1",
}


def _eca_kernel(channels: int) -> int:
    """Odd Conv1d kernel size from the channel count: ⌊(log2 C + 1)/2⌋, made odd (upwards)."""
    k = int((math.log2(channels) + 1) // 2)
    k = max(k, 1)
    return k if k % 2 else k + 1


def exchange_channels(x1: torch.Tensor, x2: torch.Tensor, period: int = 2
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Swap every ``period``-th channel (indexes 1, 1+p, …; with p=2 the odd ones) between dates.

    Returns new tensors; the inputs are not modified.  Device-agnostic (mask on the input device).
    """
    mask = (torch.arange(x1.shape[1], device=x1.device) % period == 1).view(1, -1, 1, 1)
    return torch.where(mask, x2, x1), torch.where(mask, x1, x2)


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CGSU(nn.Module):
    """Channel-split unit (C→C): even-indexed half through 3×3 conv-BN-ReLU-Dropout, odd half kept;
    output = concat[processed even half, odd half] (this also reorders the channels)."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError("CGSU needs an even channel count")
        half = channels // 2
        self.conv = nn.Sequential(conv_bn_relu(half, half), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x[:, 0::2]), x[:, 1::2]], dim=1)


class CGSUDown(nn.Module):
    """C→2C at stride 2: concat[3×3 s2 conv-BN-ReLU-Dropout(x), 2×2 max-pool(x)]."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv_bn_relu(channels, channels, stride=2), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), F.max_pool2d(x, 2)], dim=1)


class CBAM(nn.Module):
    """ECA-flavoured CBAM': channel weights from a Conv1d over the [avg, max] pooled 2×C sequence,
    then spatial weights from a 7×7 conv over [mean_c, max_c]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = _eca_kernel(channels)
        self.channel = nn.Conv1d(2, 1, k, padding=k // 2)
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = torch.stack([x.mean((2, 3)), x.amax((2, 3))], dim=1)            # B×2×C
        x = x * torch.sigmoid(self.channel(seq)).transpose(1, 2).unsqueeze(-1)  # B×C×1×1
        maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(maps))


class EncoderBlock(nn.Module):
    """C→2C, /2: CGSU_DOWN → CGSU → CGSU → 3×3 conv-BN-ReLU → y; out = y + CBAM'(y)."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        out = 2 * channels
        self.body = nn.Sequential(CGSUDown(channels, dropout), CGSU(out, dropout),
                                  CGSU(out, dropout), conv_bn_relu(out, out))
        self.cbam = CBAM(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + self.cbam(y)


class DecoderBlock(nn.Module):
    """Cin→Cin/2, ×2: nearest upsample of the deep input, concat skip (Cin/2), 1×1 conv-BN-ReLU."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(cin + cin // 2, cin // 2, k=1)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="nearest")
        return self.fuse(torch.cat([deep, skip], dim=1))


class DPFA(nn.Module):
    """Double-pooling fusion attention of two same-level features (C each) → C.

    Channel part: [avg₁, max₁, avg₂, max₂] (4×C sequence) → two Conv1d(4→1, k) → softmax over dates.
    Spatial part: [mean₁, max₁, mean₂, max₂] (4×H×W) → two 7×7 convs (4→1) → softmax over dates.
    fused = (w1_c + w1_s + 1)·t1 + (w2_c + w2_s + 1)·t2.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = _eca_kernel(channels)
        self.channel1 = nn.Conv1d(4, 1, k, padding=k // 2)
        self.channel2 = nn.Conv1d(4, 1, k, padding=k // 2)
        self.spatial1 = nn.Conv2d(4, 1, 7, padding=3)
        self.spatial2 = nn.Conv2d(4, 1, 7, padding=3)

    def forward(self, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
        seq = torch.stack([t1.mean((2, 3)), t1.amax((2, 3)),
                           t2.mean((2, 3)), t2.amax((2, 3))], dim=1)          # B×4×C
        wc = torch.softmax(torch.cat([self.channel1(seq), self.channel2(seq)], 1), dim=1)
        maps = torch.cat([t1.mean(1, keepdim=True), t1.amax(1, keepdim=True),
                          t2.mean(1, keepdim=True), t2.amax(1, keepdim=True)], dim=1)
        ws = torch.softmax(torch.cat([self.spatial1(maps), self.spatial2(maps)], 1), dim=1)
        w1 = wc[:, 0, :, None, None] + ws[:, 0:1] + 1                          # B×C×H×W
        w2 = wc[:, 1, :, None, None] + ws[:, 1:2] + 1
        return w1 * t1 + w2 * t2


class SiameseEncoder(nn.Module):
    """One encoder (shared weights) for both dates, with the channel exchange after E4 (H/8).

    ``forward(t1, t2)`` returns two lists [E1, E2, E3, E4x, E5] (E4x = exchanged E4; E5 computed
    from E4x).  Swapping the inputs swaps the outputs exactly (the exchange is symmetric).
    """

    def __init__(self, in_channels: int, base: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(in_channels, base), CGSU(base, dropout),
                                  CGSU(base, dropout))
        self.blocks = nn.ModuleList(EncoderBlock(base * 2 ** i, dropout) for i in range(4))

    def _to_e4(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = [self.stem(x)]
        for block in self.blocks[:3]:
            feats.append(block(feats[-1]))
        return feats

    def forward(self, t1: torch.Tensor, t2: torch.Tensor
                ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        f1, f2 = self._to_e4(t1), self._to_e4(t2)
        f1[3], f2[3] = exchange_channels(f1[3], f2[3])
        f1.append(self.blocks[3](f1[3]))
        f2.append(self.blocks[3](f2[3]))
        return f1, f2


class Decoder(nn.Module):
    """Per-date decoder (one module, applied to both dates): de5 = E5, de4, de3, de2 (H/2)."""

    def __init__(self, base: int = 32) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(DecoderBlock(base * 2 ** i) for i in (4, 3, 2))

    def forward(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        out = [feats[4]]
        for block, skip in zip(self.blocks, (feats[3], feats[2], feats[1])):
            out.append(block(out[-1], skip))
        return out                                        # [de5, de4, de3, de2]


class SGSLN(nn.Module):
    """SGSLN change-detection network (see the module docstring for structure and readings)."""

    def __init__(self, in_channels: int, num_classes: int = 2, base: int = 32,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if base % 4 or base < 8:
            raise ValueError("base must be a multiple of 4 and at least 8")
        self.num_classes = num_classes
        self.binary = num_classes == 2
        out = 1 if self.binary else num_classes
        self.encoder = SiameseEncoder(in_channels, base, dropout)
        self.decoder = Decoder(base)
        self.aux_head = nn.Conv2d(2 * base, out, 3, padding=1)
        self.fusion = nn.ModuleList(DPFA(base * 2 ** i) for i in (4, 3, 2, 1))
        self.change_blocks = nn.ModuleList(DecoderBlock(base * 2 ** i) for i in (4, 3, 2))
        self.head = nn.Sequential(conv_bn_relu(2 * base, base), conv_bn_relu(base, base // 4))
        self.out = nn.Conv2d(base // 4, out, 7, padding=3)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Single change logit l → two-channel logits [0, l] (softmax = sigmoid(l))."""
        return torch.cat([torch.zeros_like(x), x], dim=1) if self.binary else x

    def forward(self, t1: torch.Tensor, t2: torch.Tensor):
        f1, f2 = self.encoder(t1, t2)
        d1, d2 = self.decoder(f1), self.decoder(f2)
        c = self.fusion[0](d1[0], d2[0])
        for level, block in enumerate(self.change_blocks, start=1):
            c = block(c, self.fusion[level](d1[level], d2[level]))
        y = F.interpolate(self.head(c), size=t1.shape[-2:], mode="bilinear", align_corners=False)
        main = self._logits(self.out(y))
        if not self.training:
            return main
        aux = [self._logits(self.aux_head(d1[3])), self._logits(self.aux_head(d2[3]))]
        return {"logits": main, "aux_logits": aux}


@register("sgsln", task="change",
          description="SGSLN: exchanging dual encoder-decoder with semantic guidance and spatial "
                      "localisation (bitemporal change detection, ~6.0 M parameters)",
          input_multiple=16, encoder=("encoder.",))
def build_sgsln(in_channels: int, num_classes: int = 2, base: int = 32,
                dropout: float = 0.1) -> SGSLN:
    """Build SGSLN; defaults are the full configuration (widths 32…512, dropout 0.1)."""
    return SGSLN(in_channels, num_classes, base=base, dropout=dropout)
