"""CaFE assembled from its parts — the two streams, the per-level fusion, the label-driven
training paths and the decoder — with its registry entry, sizes and training recipe.

Shapes for the full configuration (two ResNet-50 streams, width 64), one 512² RGB + DSM pair::

    level 0  stems (7×7 s2 conv-BN-ReLU)      R0, D0      64 @ 256²   → fusion → agent 64→64
             max-pool 3×3 s2 (fused sum / D0)                 @ 128²
    level 1  layer1 (3 bottlenecks)           R1, D1     256 @ 128²   → fusion → agent 256→64
    level 2  layer2 (4, stride 2)             R2, D2     512 @ 64²    → fusion → agent 512→128
    level 3  layer3 (6, stride 2)             R3, D3    1024 @ 32²    → fusion → agent 1024→256
    level 4  layer4 (3, stride 2)             R4, D4    2048 @ 16²    → fusion → agent 2048→512
    decoder  up1: 6 blocks 512→256 @ 32²  (side out 1/16)  + agent3
             up2: 4 blocks 256→128 @ 64²  (side out 1/8)   + agent2
             up3: 3 blocks 128→64  @ 128² (side out 1/4)   + agent1
             up4: 3 blocks  64→64  @ 256² (side out 1/2)   + agent0
             final: 3 residual blocks 64→64, transposed conv 2×2 s2 64→classes @ 512²

Fusion at each level (the paper's contribution; our **readings**, each a constructor switch).  The
inference CA and the training CFF of one level are in :mod:`engine.models.cafe.fusion`; here:

* **Training (CFF + CEL)**, label-driven, computed only when ``targets`` are given in training mode:

  - M_c = one-hot ground-truth mask of category c nearest-resized to the level
    (``mask_resize="nearest"``; ``"area"`` uses soft area-averaged masks instead).
  - CEL: per-image category proportions p_c → weights w_c = (1/p_c)/Σ_present(1/p_k)·K_present
    clipped to [0.2, 5] (``engine.models.losses.enhancement_weights``).  ``cel_mode="loss"``
    (default): the weights are a per-pixel weight on the cross-entropy terms of the CFF path (see
    :func:`engine.models.cafe.loss.cafe_loss`; ``cel_on_ca_path=True`` also weights the CA path).
    ``cel_mode="feature"``: F_i'' = Σ_c w_c M_c ⊙ F_i' (unlabelled pixels × 1) and plain CE.
    ``cel_mode="none"``: off.
  - Train/test consistency (``two_path=True``, default): every training step runs the shared decoder
    twice, (a) on the CFF/CEL features and (b) on the CA features; both PLS losses are summed 1:1
    and inference uses (b) only, so CFF/CEL cost nothing at test time.  The decoder's BatchNorm
    running statistics are updated by path (b) only (``bn_stats="ca"``; ``"both"`` lets path (a)
    update them too), so that the statistics used at inference are those of the inference path.
    ``two_path=False`` is the other reading ("CA kept in training and testing"): one decoder pass on
    CA(CEL(CFF(R, D))) in training, CA(R + D) at inference.
* ``feed="sum"`` (default, as the released RedNet baseline) feeds R_i + D_i to the next image stage;
  ``feed="ca"`` feeds the CA-fused feature instead (the encoder still runs once per step).
* The stem level (64 @ 1/2, fused in the released baseline) gets the same fusion as the four stages.

Training-mode output with targets (``two_path=True``)::

    {"logits": main logits of path (b) — the inference path, B×K×H×W,
     "aux_logits": [path (a) main logits, path (a) side outputs at 1/16, 1/8, 1/4, 1/2,
                    path (b) side outputs at 1/16, 1/8, 1/4, 1/2],
     "cel_weighted": [bool per output (logits first, then aux_logits) — CEL weight applies]}

Training mode without targets returns the CA path with its side outputs (no CFF).
:func:`engine.models.cafe.loss.cafe_loss` turns any of these outputs into the spec's loss.

Parameters (3 image bands + 1 DSM band, 6 classes, full configuration): 81 946 445 — image ResNet-50
23 508 032, DSM ResNet-50 23 501 760, decoder 34 936 478 (agents 1 398 784, up-stages 33 311 104,
PLS heads 3 096, final residual blocks 221 952, final transposed conv 1 542), CA 25 and CFF 150
(5 levels × 6 categories × k).  Without CA/CFF (the two-stream RedNet-R50 baseline) 81 946 270,
which is the spec's measured 81.95 M.  The spec's text says "residual block" before the last
transposed conv; its measured count is reproduced only with *three* such blocks (one block gives
81.80 M), so ``final_blocks=3`` is the default.  ``input_multiple`` is 32.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import register
from ..losses import IGNORE, enhancement_weights
from .decoder import Decoder
from .fusion import ECA, CategoryFusion
from .resnet import DEPTHS, ResNetStream

#: Parameter count of the full configuration, 3 image bands + 1 DSM band, 6 classes (exact).
FULL_PARAMS = 81_946_445
#: The specification's measured figure for the released two-stream RedNet-R50 baseline ("81.95 M").
SPEC_PARAMS = 81_950_000
#: Tiny configuration for tests (same topology: ResNet-18-style streams, width 8, one block per
#: decoder up-stage).
TINY: Dict[str, object] = {"depth": 18, "width": 8, "decoder_blocks": (1, 1, 1, 1),
                           "final_blocks": 1}
#: Training recipe of the spec (§2.3) as plain values (beside the builder: ``engine.training.loop``
#: reads ``RECIPE`` from the builder's module).  The engine's loop only has AdamW and no
#: step schedule.  AdamW equivalent: lr 1e-4 (ImageNet streams) / 3e-4 (random init), wd 1e-2,
#: poly decay after a one-epoch warm-up, the same loss.
RECIPE: Dict[str, object] = {
    "optimizer": "sgd",
    "momentum": 0.9,
    "lr": 7e-4,
    "weight_decay": 1e-4,
    "batch_size": 8,
    "epochs": 150,
    "schedule": "step",           # the spec: LR × 0.8 every 100 epochs (one drop in 150 epochs)
    "lr_step_epochs": 100,
    "lr_step_gamma": 0.8,
    "warmup_steps": 0,            # none in the spec
    "grad_clip": 0.0,             # none in the spec
    "loss": "cafe",               # multi-scale CE over both paths, 1:1, CEL weights on path (a)
    "aux_weight": 1.0,            # equal weights (used only by the generic fallback "enhanced_ce")
    "tile": 512,
    "pretrained": "imagenet",     # both streams; DSM stem = channel mean of the RGB stem
}
#: The ``cel_mode`` choices of :class:`CaFE`.
CEL_MODES = ("loss", "feature", "none")


@contextlib.contextmanager
def _keep_bn_statistics(module: nn.Module) -> Iterator[None]:
    """Within the block, BatchNorm layers normalise with batch statistics as usual but leave their
    running statistics unchanged (momentum 0)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


class CaFE(nn.Module):
    """Two-stream image + DSM segmentation network with category-wise fusion in training."""

    def __init__(self, in_channels: int, num_classes: int, aux_channels: int = 1,
                 depth: Optional[int] = 50, layers: Optional[Sequence[int]] = None,
                 block: Optional[str] = None, width: int = 64,
                 decoder_blocks: Sequence[int] = (6, 4, 3, 3), final_blocks: int = 3,
                 cff_mode: str = "eca",
                 cel_mode: str = "loss", cel_on_ca_path: bool = False, two_path: bool = True,
                 feed: str = "sum", mask_resize: str = "nearest", bn_stats: str = "ca") -> None:
        super().__init__()
        if layers is None:
            if depth not in DEPTHS:
                raise ValueError(f"depth must be one of {sorted(DEPTHS)} (or give layers=)")
            block_d, layers = DEPTHS[depth]
            block = block or block_d
        block = block or "basic"
        if block not in ("basic", "bottleneck") or len(layers) != 4:
            raise ValueError("block is 'basic' or 'bottleneck' and layers has four counts")
        if len(decoder_blocks) != 4:
            raise ValueError("decoder_blocks has four counts (up-stages 1/16, 1/8, 1/4, 1/2)")
        if cel_mode not in CEL_MODES:
            raise ValueError(f"cel_mode must be one of {CEL_MODES}, not {cel_mode!r}")
        if feed not in ("sum", "ca") or mask_resize not in ("nearest", "area") \
                or bn_stats not in ("ca", "both"):
            raise ValueError("feed is 'sum'|'ca', mask_resize 'nearest'|'area', "
                             "bn_stats 'ca'|'both'")
        self.num_classes, self.aux_channels = num_classes, aux_channels
        self.cel_mode, self.cel_on_ca_path, self.two_path = cel_mode, cel_on_ca_path, two_path
        self.feed, self.mask_resize, self.bn_stats = feed, mask_resize, bn_stats
        self.rgb = ResNetStream(in_channels, block, layers, width)
        self.dsm = ResNetStream(aux_channels, block, layers, width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans = self.rgb.channels
        self.ca = nn.ModuleList(ECA(c) for c in chans)
        self.cff = nn.ModuleList(CategoryFusion(c, num_classes, cff_mode) for c in chans)
        self.decoder = Decoder(chans, width, num_classes, decoder_blocks, final_blocks)

    # -- encoder ------------------------------------------------------------------------------
    def encode(self, image: torch.Tensor, aux: torch.Tensor
               ) -> Tuple[List[Tuple[torch.Tensor, torch.Tensor]], List[torch.Tensor]]:
        """Both streams once → ([(R_i, D_i)] for the five levels, [CA-fused F_i''])."""
        r, d = self.rgb.stem(image), self.dsm.stem(aux)
        pairs, fused = [], []
        for i in range(5):
            if i:
                r, d = self.rgb.stages[i - 1](x), self.dsm.stages[i - 1](d)
            pairs.append((r, d))
            fused.append(self.ca[i](r + d))
            x = fused[-1] if self.feed == "ca" else r + d
            if i == 0:
                x, d = self.maxpool(x), self.maxpool(d)
        return pairs, fused

    # -- labels → per-level masks / CEL weights ------------------------------------------------
    def _valid(self, targets: torch.Tensor) -> torch.Tensor:
        return (targets != IGNORE) & (targets >= 0) & (targets < self.num_classes)

    def level_masks(self, targets: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """One-hot masks M_c (B×K×h×w) of the labels resized to ``size``; unlabelled pixels 0."""
        valid = self._valid(targets)
        if self.mask_resize == "nearest":
            t = F.interpolate(torch.where(valid, targets, -1)[:, None].float(), size=size,
                              mode="nearest")[:, 0].long()
            ok = t >= 0
            return (F.one_hot(t.clamp_min(0), self.num_classes).permute(0, 3, 1, 2).float()
                    * ok[:, None].float())
        onehot = (F.one_hot(torch.where(valid, targets, 0), self.num_classes).permute(0, 3, 1, 2)
                  .float() * valid[:, None].float())
        return F.adaptive_avg_pool2d(onehot, size)

    def category_weights(self, targets: torch.Tensor) -> torch.Tensor:
        """Per-image CEL weights w_c (B×K), taken by value from ``enhancement_weights``; absent
        categories get 0 (they have no pixels to scale)."""
        valid = self._valid(targets)
        t = torch.where(valid, targets, IGNORE)
        pixel_w = enhancement_weights(t, self.num_classes).flatten(1)
        idx = torch.where(valid, targets, 0).flatten(1)
        return torch.zeros(targets.shape[0], self.num_classes, device=targets.device) \
            .scatter_reduce(1, idx, pixel_w, "amax")

    def cff_features(self, pairs: Sequence[Tuple[torch.Tensor, torch.Tensor]],
                     targets: torch.Tensor) -> List[torch.Tensor]:
        """Path (a): CFF (+ CEL feature scaling when ``cel_mode="feature"``) at every level."""
        weights = self.category_weights(targets) if self.cel_mode == "feature" else None
        out = []
        for i, (r, d) in enumerate(pairs):
            masks = self.level_masks(targets, r.shape[-2:])              # float32
            f = self.cff[i](r, d, masks, self.ca[i])
            if weights is not None:
                scale = torch.einsum("bkhw,bk->bhw", masks, weights) \
                    + (1 - masks.sum(1)).clamp_min(0)
                f = f * scale[:, None].to(f.dtype)
            if not self.two_path:
                f = self.ca[i](f)              # "CA kept in training and testing"
            out.append(f)
        return out

    # -- forward ------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor, aux: Optional[torch.Tensor] = None,
                targets: Optional[torch.Tensor] = None):
        if aux is None:
            raise ValueError("CaFE needs the height raster as the 'aux' input (DSM/nDSM)")
        if aux.shape[1] != self.aux_channels:
            raise ValueError(f"CaFE was built for {self.aux_channels} aux band(s), "
                             f"got {aux.shape[1]}")
        if image.shape[-1] % 32 or image.shape[-2] % 32:
            raise ValueError("CaFE needs height and width multiples of 32, "
                             f"got {tuple(image.shape[-2:])}")
        pairs, fused = self.encode(image, aux)
        if not self.training:
            return self.decoder(fused)[0]
        if targets is None:
            main, sides = self.decoder(fused, sides=True)
            return {"logits": main, "aux_logits": sides, "cel_weighted": [False] * (1 + len(sides))}
        cel = self.cel_mode == "loss"
        feats_a = self.cff_features(pairs, targets)
        if not self.two_path:
            main_a, sides_a = self.decoder(feats_a, sides=True)
            return {"logits": main_a, "aux_logits": sides_a,
                    "cel_weighted": [cel] * (1 + len(sides_a))}
        main_b, sides_b = self.decoder(fused, sides=True)
        keep = (_keep_bn_statistics(self.decoder) if self.bn_stats == "ca"
                else contextlib.nullcontext())
        with keep:
            main_a, sides_a = self.decoder(feats_a, sides=True)
        cel_b = cel and self.cel_on_ca_path
        return {"logits": main_b, "aux_logits": [main_a, *sides_a, *sides_b],
                "cel_weighted": [cel_b] + [cel] * (1 + len(sides_a)) + [cel_b] * len(sides_b)}


@register("cafe", task="segmentation",
          description="CaFE: two-stream image + DSM (aux) fusion with category-wise feature fusion "
                      "and enhancement learning in training, channel attention at inference "
                      "(RedNet decoder, ResNet-50 ×2, ~82 M parameters)",
          input_multiple=32, encoder=("rgb.", "dsm."))
def build_cafe(in_channels: int, num_classes: int, aux_channels: int = 1,
               **size_options) -> CaFE:
    """Build CaFE; defaults are the full configuration (two ResNet-50 streams, decoder 6/4/3/3).

    Size options: ``depth`` (18/34/50) or ``layers`` (four block counts) + ``block``
    ('basic'|'bottleneck'), ``width`` (stem width, 64), ``decoder_blocks`` (6, 4, 3, 3),
    ``final_blocks`` (3).  Reading switches:
    ``cff_mode``, ``cel_mode``, ``cel_on_ca_path``, ``two_path``, ``feed``, ``mask_resize``,
    ``bn_stats`` (see the module docstring)."""
    if "layers" in size_options and "depth" not in size_options:
        size_options["depth"] = None
    return CaFE(in_channels, num_classes, aux_channels, **size_options)
