"""VSGNet assembled from its parts — frozen encoders, stems, FE/FR stages and the all-MLP decoder —
with its registry entry, sizes, loss, parameter groups and training recipe.

Shapes (full configuration, 512² input, widths C = [96, 192, 288, 576])::

    ViT (frozen, no grad)  image[:, :3] → resize 518² → DINOv2 → normalised patch tokens 37²×D
                           aux (1st band ×3, or its 3 bands) → the same or a second frozen ViT
    ViT branch (per modality, trainable)  1×1 conv D→C1 + BN → bilinear to H/4        C1 @ 128²
    CNN stem  (per modality)  3×3 s2 → C1/2, BN, GELU, 3×3 s2 → C1, BN                 C1 @ 128²
    stage-1 input  x = stem(m) + vit_branch(m)            (RGB stream x1, structure stream x2)
    stage s (s = 1…4): [s > 1: BN + 3×3 s2 conv per stream]  → FE blocks ×depth_s → FR
                       → x1, x2 at C_s @ H/2^(s+1);  decoder input_s = LayerNorm(x1)
    decoder  per stage 1×1 → E=512, bilinear to H/4, concat 4E → 1×1 conv-BN-ReLU → Dropout2d 0.1
             → 1×1 conv → classes → bilinear to H×W

Readings chosen (where §4 is silent, ambiguous, or the release is buggy; the fusion's are in
:mod:`engine.models.vsgnet.fusion`, the token → map adapter's in
:mod:`engine.models.vsgnet.foundation`):

* **ViT inputs**: the image's first three bands (``vit_bands``) as RGB, standardised by the
  card's statistics (close to, though not exactly, DINOv2's ImageNet normalisation); the
  structure ViT gets the aux raster's three bands if it has exactly three, else its first band
  replicated ×3 (the release uses the first channel).  Inputs are resized to the next multiple
  of 14 (512 → 518).  The CNN stems see all bands of both inputs.
* **One or two frozen ViTs**: by default one ViT (``vit``) serves both modalities (one set of
  weights in memory).  The paper's setting (ViT-g/14-reg on RGB, ViT-B/14-reg on X) is
  ``vit="vitg14_reg", aux_vit="vitb14_reg"`` with ``vit_weights``/``aux_vit_weights``.
* **Frozen ViTs are not part of the state dict.**  They are held outside the module tree (so
  ``state_dict``, ``parameters()``, the optimiser, DDP and ``load_state_dict(strict=True)`` never
  see them; ``.to()``/``.cuda()``/``.half()`` are forwarded) and are rebuilt on load from the
  ``vit_weights`` path recorded in the hyper-parameters — a ViT-g would otherwise put 4.5 GB into
  every model file (how the file is found, checked, or replaced by a seeded random ViT with a
  one-time warning when ``vit_weights=None``: :mod:`engine.models.vsgnet.foundation`).
* **Both streams at width C** (§4.2.3; the release's half-width X stream / mismatched layer
  scales are bugs).  Stage loop applies each stage's own blocks once (release bug fixed).
* **Layer scale** (init 1e-6) and norm parameters are trained without weight decay
  (:func:`param_groups`); the release never optimised the layer-scale vectors (bug).
* Drop path 0.2 linearly increasing over all FE blocks; DropPath, Dropout and BN are the only
  train/eval differences.  Stem and downsampling convs keep their bias (DFormer style); the
  decoder's fuse conv, followed by BN, has none (SegFormer).
* Any input edge works: the network pads (reflect) to a multiple of 32 and crops the logits;
  ``input_multiple`` is 32 so that tiles need no padding.
* Loss (§4.3): 0.5·Dice + 0.5·CE with label smoothing 0.1, ignore 255 — :func:`vsgnet_loss`
  (the registry's ``ce``/``dice`` terms have no smoothing option; register it as ``"vsgnet"``).

Cost (3 + 1 bands, 6 classes; MACs from ``torch.utils.flop_counter`` at a 512² input, whose ViT
input is 518²; a shared ViT runs twice per forward, once per modality)::

    trainable, full configuration   49,675,270 parameters (``FULL_PARAMS``, ViT-B)  87.5 GMACs
    trainable, ``TINY``                 644,926 parameters (632,638 with ViT-S)     0.66 GMACs
    frozen ViT-S/14-reg                 22.06 M parameters, 46.9 GMACs per modality
    frozen ViT-B/14-reg                 86.58 M parameters, 152.1 GMACs per modality
    frozen ViT-g/14-reg (paper, RGB)    1.137 B parameters, 1789 GMACs

``input_multiple`` is 32 (stage 4 is at H/32).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...jobs import InputError
from .. import register
from ..losses import cross_entropy, dice
from ..vit import FrozenViT, parameter_count, to_patch_multiple, vit_config
from .blocks import stem
from .foundation import ViTBranch, frozen_encoder
from .fusion import Stage

#: Trainable parameters of the full configuration (3 image bands, 1 structure band, 6 classes,
#: ViT-B/14 with registers shared by both modalities; the frozen ViT excluded).
FULL_PARAMS = 49_675_270
#: Tiny configuration for tests (widths 16…128, one FE block per stage, tiny frozen ViT).
TINY: Dict[str, Any] = {"widths": [16, 32, 64, 128], "depths": [1, 1, 1, 1],
                        "mlp_ratios": [2, 2, 2, 2], "decoder_dim": 32, "vit": "tiny_reg",
                        "drop_path": 0.0}
#: Structure-map normalisation of the release (0..1 grey map) — for 8-bit maps ×255.
STRUCTURE_MEAN, STRUCTURE_STD = 0.48, 0.28
#: Training recipe of the spec (§4.3) as plain values for the training loop (which reads
#: ``RECIPE`` and ``param_groups`` from the builder's module, hence both live here).
RECIPE: Dict[str, Any] = {
    "optimizer": "adamw",
    "betas": (0.9, 0.999),
    "lr": 8e-5,
    "weight_decay": 0.01,
    "no_weight_decay": "norms, biases, layer scales (param_groups())",
    "schedule": "poly",            # power 0.9 (the engine's poly)
    "poly_power": 0.9,
    "warmup_epochs": 10,           # linear warm-up over 10 epochs (the loop counts steps)
    "epochs": 300,
    "batch_size": 16,
    "loss": "vsgnet",              # 0.5·Dice + 0.5·CE(label smoothing 0.1), ignore 255
    "label_smoothing": 0.1,
    "grad_clip": 0.0,              # the recipe clips nothing
    "amp": True,
    "tile": 512,                   # the encoder's 512 (→ 518 ViT input); the config's crop is 640
    "hflip": True,
    "scales": (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
    "pad_label": 255,
    "eval_scales": (0.5, 0.75, 1.0, 1.25, 1.5),
    "eval_flip": True,
    "eval_overlap": 1 / 3,         # sliding window, stride rate 2/3
    "select_metric": "miou",
    "keep_above": 0.5,
    "structure_mean": STRUCTURE_MEAN,
    "structure_std": STRUCTURE_STD,
}


def vsgnet_loss(output: Any, target: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """0.5·soft Dice + 0.5·cross-entropy with label smoothing (ignore 255): the JointLoss."""
    logits = (output["logits"] if isinstance(output, dict) else output).float()
    return 0.5 * dice(logits, target) + 0.5 * cross_entropy(logits, target,
                                                            label_smoothing=label_smoothing)


def param_groups(net: nn.Module, weight_decay: float = 0.01) -> List[Dict[str, Any]]:
    """AdamW groups: decay on conv/linear weights (≥2-D), none on norms, biases, layer scales."""
    decay, no_decay = [], []
    for p in net.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class MLPDecoder(nn.Module):
    """SegFormer all-MLP head: per-stage 1×1 → E, upsample to H/4, concat, 1×1-BN-ReLU, dropout,
    1×1 → classes."""

    def __init__(self, widths: Sequence[int], dim: int, num_classes: int, dropout: float = 0.1
                 ) -> None:
        super().__init__()
        self.embed = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in widths)
        self.fuse = nn.Sequential(nn.Conv2d(dim * len(widths), dim, 1, bias=False),
                                  nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout2d(dropout)
        self.classify = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        ups = [F.interpolate(m(f), size=size, mode="bilinear", align_corners=False)
               if f.shape[-2:] != size else m(f) for m, f in zip(self.embed, feats)]
        return self.classify(self.dropout(self.fuse(torch.cat(ups[::-1], dim=1))))


class VSGNet(nn.Module):
    """VSGNet (see the module docstring).  ``forward(image, aux)`` → B×classes×H×W logits."""

    def __init__(self, in_channels: int, num_classes: int, aux_channels: int = 1,
                 vit: str = "vitb14_reg", vit_weights: Optional[str] = None,
                 aux_vit: Optional[str] = None, aux_vit_weights: Optional[str] = None,
                 vit_layers: Sequence[int] = (-1,), vit_seed: int = 0,
                 vit_fingerprint: Optional[str] = None,
                 aux_vit_fingerprint: Optional[str] = None,
                 vit_bands: Sequence[int] = (0, 1, 2), vit_branch: str = "proj",
                 widths: Sequence[int] = (96, 192, 288, 576), depths: Sequence[int] = (3, 3, 12, 2),
                 heads: Sequence[int] = (1, 2, 4, 8), mlp_ratios: Sequence[float] = (8, 8, 4, 4),
                 drop_path: float = 0.2, layer_scale_init: float = 1e-6, fr_reduction: int = 4,
                 out_norm: bool = True, decoder_dim: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        if not (len(widths) == len(depths) == len(heads) == len(mlp_ratios) == 4):
            raise InputError("VSGNet needs four stages: widths, depths, heads and mlp_ratios of "
                             "length 4")
        self.in_channels, self.aux_channels = in_channels, aux_channels
        self.vit_bands = [min(int(b), in_channels - 1) for b in vit_bands][:3]
        self.vit_bands += [self.vit_bands[-1]] * (3 - len(self.vit_bands))
        layers = tuple(int(i) for i in vit_layers)
        rgb_vit = frozen_encoder(vit, vit_weights, layers, vit_seed, vit_fingerprint)
        if aux_vit is None and aux_vit_weights is None:
            aux_frozen = rgb_vit
        else:
            aux_frozen = frozen_encoder(aux_vit or vit, aux_vit_weights, layers, vit_seed + 1,
                                        aux_vit_fingerprint)
        # Held outside the module tree: not in state_dict/parameters (see the docstring).
        object.__setattr__(self, "_frozen", (rgb_vit, aux_frozen))
        c1 = widths[0]
        self.stem1 = stem(in_channels, c1)
        self.stem2 = stem(aux_channels, c1)
        self.vit1 = ViTBranch(rgb_vit.dim, len(layers), c1, vit_branch)
        self.vit2 = ViTBranch(aux_frozen.dim, len(layers), c1, vit_branch)
        n = sum(depths)
        rates = [drop_path * i / max(n - 1, 1) for i in range(n)]   # linear 0 … drop_path
        stages, start = [], 0
        for s in range(4):
            stages.append(Stage(widths[s - 1] if s else 0, widths[s], depths[s], heads[s],
                                mlp_ratios[s], rates[start:start + depths[s]], layer_scale_init,
                                last=s == 3, fr_reduction=fr_reduction, out_norm=out_norm))
            start += depths[s]
        self.stages = nn.ModuleList(stages)
        self.decoder = MLPDecoder(widths, decoder_dim, num_classes, dropout)

    # -- the frozen encoders (not submodules) --
    @property
    def frozen_vits(self) -> Tuple[FrozenViT, ...]:
        """The distinct frozen ViTs (one if shared by both modalities)."""
        a, b = self._frozen
        return (a,) if a is b else (a, b)

    def frozen_parameter_count(self) -> int:
        return sum(p.numel() for v in self.frozen_vits for p in v.parameters())

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        for v in self.frozen_vits:
            v._apply(fn, recurse)
        return self

    def _vit_maps(self, frozen: FrozenViT, x: torch.Tensor) -> List[torch.Tensor]:
        return frozen(to_patch_multiple(x, frozen.config.patch_size))

    def forward(self, image: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        if aux.shape[-2:] != (h, w):
            raise ValueError(f"image {tuple(image.shape[-2:])} and aux {tuple(aux.shape[-2:])} "
                             f"windows differ in size")
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            image = F.pad(image, (0, pw, 0, ph), mode=mode)
            aux = F.pad(aux, (0, pw, 0, ph), mode=mode)
        size = image.shape[-2:]
        rgb = image[:, self.vit_bands]
        struct = aux if aux.shape[1] == 3 else aux[:, :1].expand(-1, 3, -1, -1)
        f1, f2 = self._frozen
        x1 = self.stem1(image) + self.vit1(self._vit_maps(f1, rgb), size)
        x2 = self.stem2(aux) + self.vit2(self._vit_maps(f2, struct), size)
        feats = []
        for stage in self.stages:
            x1, x2, out = stage(x1, x2)
            feats.append(out)
        logits = F.interpolate(self.decoder(feats), size=size, mode="bilinear",
                               align_corners=False)
        return logits[..., :h, :w]


@register("vsgnet", task="segmentation",
          description="VSGNet: frozen DINOv2 features guide RGB + structure-map fusion "
                      "(needs an aux structure raster from 'derive'; ~50 M trainable parameters "
                      "+ frozen ViT)",
          input_multiple=32, encoder=("stem1.", "stem2.", "vit1.", "vit2.", "stages."))
def build_vsgnet(in_channels: int, num_classes: int, aux_channels: int = 1,
                 vit: str = "vitb14_reg", vit_weights: Optional[str] = None,
                 **size_options: Any) -> VSGNet:
    """Build VSGNet; defaults are the full configuration (widths 96…576, depths 3/3/12/2) with a
    shared frozen DINOv2 ViT-B/14-reg.  ``vit_weights``: local DINOv2 checkpoint (None → random
    frozen ViT with a warning).  Size options: see :class:`VSGNet`."""
    for name in (vit, size_options.get("aux_vit")):
        if name is not None and not str(name).startswith("sam_"):
            vit_config(name)   # fail early on an unknown name
    return VSGNet(in_channels, num_classes, aux_channels, vit=vit, vit_weights=vit_weights,
                  **size_options)


def frozen_parameters(vit: str = "vitb14_reg") -> int:
    """Parameters of a frozen foundation ViT configuration (no allocation)."""
    return parameter_count(vit)
