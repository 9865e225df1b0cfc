"""GLCNet's segmentation network: DeepLabv3+ with a dilated ResNet (output stride 16).

Li et al., "Global and Local Contrastive Self-Supervised Learning for Semantic Segmentation of HR
Remote Sensing Images", IEEE TGRS 60 (2022), arXiv 2106.10605; re-implemented from the written
specification in ``docs/seed-models.md`` §3 (no seed code used).  The self-supervised
pre-training (global style + local matching contrastive losses) lives in :mod:`engine.training.pretrain`;
this module is the network that is pre-trained there and fine-tuned with ``train --init``.

Shapes for the full configuration (ResNet-50, width 64), one 256² input of any band count::

    stem   7×7 s2 conv-BN-ReLU, 3×3 s2 max-pool          64 @ 64²
    layer1 3 bottlenecks                                 256 @ 64²   → low-level feature
    layer2 4 bottlenecks, stride 2                       512 @ 32²
    layer3 6 bottlenecks, stride 2                      1024 @ 16²
    layer4 3 bottlenecks, stride 1, dilation 2          2048 @ 16²   (output stride 16)
    ASPP   1×1 | 3×3 r6 | 3×3 r12 | 3×3 r18 | pool     5×256 @ 16² → 1×1 → 256, BN, ReLU, drop 0.5
    decoder low-level 1×1 256→48 (BN, ReLU); concat with ASPP up-sampled ×4 (304 @ 64²)
            → 2× [3×3 conv 256, BN, ReLU] → classifier 1×1 → K @ 64² → bilinear → K @ 256²

Readings chosen where the specification is silent or ambiguous:

* Convolutions followed by BN have no bias; only the final 1×1 classifier has one.  BN momentum
  is PyTorch's default 0.1 (the seed's 0.9 would make the running statistics ≈ the last batch).
* Every block of layer4 uses dilation 2 (stride 1); the parameter count does not depend on it.
* The image-pooling branch of ASPP has BN like the other branches.  A batch of one sample in
  training mode (possible as the last partial batch of an epoch) would make that BN fail (one
  value per channel), so for B = 1 it normalises with its running statistics instead.
* The self-supervised network of the spec is this same network with K = 64 output channels: its
  full-resolution logits are the per-pixel embedding map.  ``ssl_features(image)`` returns
  ``(deep, embedding)``: ``deep`` is the ASPP output (B×256×H/16×W/16, after its dropout in
  training mode) from which the global style vector is taken, ``embedding`` the K-channel logits
  at input size.  Fine-tuning with ``train --init`` then loads every tensor whose name and shape
  match — backbone, ASPP and decoder — and starts a fresh ``classifier`` (different K).  (The
  seed's default re-initialises the decoder; its "load everything" option is what we do.)
* The input size need not be a multiple of 16 (features are resized bilinearly to the low-level
  map), but tiles are cut at multiples of 16 (``input_multiple``).

Parameters (4 bands, 7 classes, full configuration): 40 351 719 — spec [measured] 40.35 M.
Backbone 23 511 168, ASPP 15 535 104, decoder 1 303 648, classifier 1 799.  ``TINY`` (ResNet-18
layout, width 16, 32-channel ASPP/decoder) has 848 407 for 4 bands / 7 classes.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .resnet_blocks import BasicBlock, Bottleneck, projection

#: Parameter count of the full configuration for 4 bands and 7 classes (this implementation, exact).
FULL_PARAMS = 40_351_719
#: The specification's measured figure for the authors' fine-tune network ("40.35 M").
SPEC_PARAMS = 40_350_000
#: Tiny configuration for tests: ResNet-18 block layout, narrow widths, same topology.
TINY: Dict[str, object] = {"depth": 18, "width": 16, "aspp_channels": 32,
                           "low_level_channels": 8, "decoder_channels": 32}
#: Fine-tuning recipe of the spec (§3.4) as plain values for the training loop.
RECIPE: Dict[str, object] = {
    "optimizer": "adam",           # the seed's Adam (L2 weight decay), β (0.9, 0.99)
    "betas": (0.9, 0.99),
    "lr": 1e-4,
    "weight_decay": 1e-5,
    "schedule": "poly",            # seed: LR × 0.98 per epoch (≈ ×0.05 after 150 epochs); the
    "lr_decay_per_epoch": 0.98,    # engine has no per-epoch exponential, poly decay is closest
    "warmup_steps": 0,             # no warm-up in the seed
    "grad_clip": 0.0,              # no clipping in the seed
    "loss": "ce",
    "batch_size": 16,
    "epochs": 150,
    "tile": 256,
    "select_metric": "oa",         # the seed selects by OA on a validation subset; we use mIoU
}
#: Self-supervised pre-training recipe of the spec (§3.4), used by ``engine.training.pretrain``.
PRETRAIN_RECIPE: Dict[str, object] = {
    "optimizer": "adam", "betas": (0.9, 0.99), "lr": 1e-3, "weight_decay": 1e-5,
    "schedule": "cosine", "min_lr": 4e-8, "epochs": 400, "batch_size": 256, "crop": 224,
    "window": 256, "patch_size": 48, "patch_num": 4, "lam": 0.5, "temperature": 0.5,
    "embedding": 64,
}

BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
          152: ("bottleneck", (3, 8, 36, 3))}


def conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResNet(nn.Module):
    """ResNet encoder for DeepLabv3+: returns (layer1 low-level feature, layer4 feature).

    Strides 4 (stem), 1, 2, 2 and 1 with dilation 2 in layer4: output stride 16.
    """

    def __init__(self, in_channels: int, depth: int = 50, width: int = 64) -> None:
        super().__init__()
        if depth not in BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(BLOCKS)} (got {depth})")
        kind, counts = BLOCKS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        layers = []
        for i, (n, stride, dilation) in enumerate(zip(counts, (1, 2, 2, 1), (1, 1, 1, 2))):
            planes = width * 2 ** i
            blocks = []
            for j in range(n):
                step = stride if j == 0 else 1
                blocks.append(block(cin, planes, step,
                                    projection(cin, planes * block.expansion, step), dilation))
                cin = planes * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.low_channels = width * block.expansion
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return low, self.layer4(self.layer3(self.layer2(low)))


class _PoolBranch(nn.Module):
    """ASPP image pooling: global average → 1×1 conv → BN → ReLU → broadcast to the map size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.adaptive_avg_pool2d(x, 1))
        if self.training and y.shape[0] == 1:   # one value per channel: use the running stats
            y = F.batch_norm(y, self.bn.running_mean, self.bn.running_var, self.bn.weight,
                             self.bn.bias, training=False, eps=self.bn.eps)
        else:
            y = self.bn(y)
        return F.relu(y).expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, three dilated 3×3 and image pooling, then 1×1."""

    def __init__(self, cin: int, channels: int = 256, rates: Sequence[int] = (6, 12, 18),
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(cin, channels)] + [conv_bn_relu(cin, channels, 3, r) for r in rates])
        self.pool = _PoolBranch(cin, channels)
        self.project = nn.Sequential(conv_bn_relu(channels * (len(rates) + 2), channels),
                                     nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches] + [self.pool(x)], dim=1))


class Decoder(nn.Module):
    """DeepLabv3+ decoder up to (not including) the classifier: output at the low-level size."""

    def __init__(self, low_in: int, high_in: int, low_channels: int = 48,
                 channels: int = 256) -> None:
        super().__init__()
        self.reduce = conv_bn_relu(low_in, low_channels)
        self.fuse = nn.Sequential(conv_bn_relu(low_channels + high_in, channels, 3),
                                  conv_bn_relu(channels, channels, 3))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([high, self.reduce(low)], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ (ResNet, output stride 16): ``forward(image)`` → B×K×H×W logits."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 50, width: int = 64,
                 aspp_channels: int = 256, rates: Sequence[int] = (6, 12, 18),
                 low_level_channels: int = 48, decoder_channels: int = 256,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone = ResNet(in_channels, depth, width)
        self.aspp = ASPP(self.backbone.out_channels, aspp_channels, tuple(rates), dropout)
        self.decoder = Decoder(self.backbone.low_channels, aspp_channels, low_level_channels,
                               decoder_channels)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def _run(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        low, deep = self.backbone(image)
        deep = self.aspp(deep)
        logits = self.classifier(self.decoder(low, deep))
        return deep, F.interpolate(logits, size=image.shape[-2:], mode="bilinear",
                                   align_corners=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self._run(image)[1]

    def ssl_features(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Self-supervised pre-training hook: (ASPP output B×C×h×w, K-channel map at input size)."""
        return self._run(image)


@register("glcnet", task="segmentation",
          description="GLCNet: DeepLabv3+ ResNet-50 (output stride 16, ~40.4 M parameters); "
                      "pre-train it self-supervised with 'pretrain', fine-tune with 'train --init'",
          input_multiple=16, encoder=("backbone.",))
def build_glcnet(in_channels: int, num_classes: int, depth: int = 50, **size_options
                 ) -> DeepLabV3Plus:
    """Build GLCNet's DeepLabv3+; defaults are the full configuration (ResNet-50, 256-ch ASPP).

    Size options: ``width`` (64), ``aspp_channels`` (256), ``rates`` ([6, 12, 18]),
    ``low_level_channels`` (48), ``decoder_channels`` (256), ``dropout`` (0.5).
    """
    return DeepLabV3Plus(in_channels, num_classes, depth=depth, **size_options)
