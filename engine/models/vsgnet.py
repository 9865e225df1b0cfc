"""VSGNet: vision-foundation-model structure-guided multimodal fusion network.

Pan, Fan, Tjahjadi, Guan, Fu, Ye, Wang, IEEE JSTARS 18 (2025) 9409–9431; re-implemented from the
written specification ``docs/seed-models.md`` §4 (no seed code used; the release's listed bugs are
replaced by the intended design).

Semantic segmentation of an image (``image=``, RGB first) plus a "vision structure" modality
(``aux=``: a training-free edge map, a DSM/depth map or a SAM mask map written by
``python -m engine derive``).  Frozen DINOv2 features guide two convolutional streams that are fused
in four FE/FR stages and decoded by an all-MLP head.

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

FE (fusion enhancement) block, channels-last, both streams width C (heads h, window 7)::

    x̂ = LN(x1), ê = LN(x2)
    global: q = Linear(2C→C/2)(avgpool₇ₓ₇[x̂, ê]) (49 queries, h heads of C/(2h));
            [k | v] = Linear(C→C)(GELU(Linear(C→C)(x̂)))  (C/2 each);
            softmax(q·kᵀ/√d)·v over all H·W positions → 7×7×C/2 → bilinear to H×W
    local:  Linear(C→C/2)(x̂) ⊙ Linear(C/2→C/2)(dw7×7(Linear(C→C/2)(ê)))
    u = [global, local] (C);  x1 += ls·DropPath(Linear(C→C)(u));  x2 += ls·DropPath(Linear(C→C)(u))
    MLP per stream: LN → Linear C→rC → (+ dw3×3 conv) → GELU → Linear rC→C, residual, layer scale
    (the very last block of the network skips every structure-stream update: its output feeds
    only the RGB stream through the last FR).

FR (feature recalibration), stage inputs x1, x2 and FE outputs h1, h2 (B×C×H×W)::

    a_m = 1×1(2C→C)([x1, x2])             (m = 1, 2; separate convs)
    p_m = Σ_HW softmax_HW(a_m) ⊙ a_m        (self-weighted soft-max pooling → C-vector)
    g_m = σ(1×1(C/r→C)(1×1(C→C/r)(p_m)))   (two 1×1 convs, no activation, r = 4)
    r1 = x1·g1 + x2,  r2 = x2·g2 + x1
    s_m = Σ_C softmax_C(r_m) ⊙ r_m          (1×H×W)
    y1 = x1·s1 + x2 + h1,  y2 = x2·s2 + x1 + h2
    x1' = 1×1(2C→C)([y1, y2]),  x2' = 1×1(2C→C)([y1, y2])   (x2' not built in the last stage)

Readings chosen (where §4 is silent, ambiguous, or the release is buggy):

* **Token → map** ([reading] of §4.2.1): the normalised patch tokens are laid out as their true
  37×37 grid, projected by a 1×1 conv (+BN) straight to C1 and resized bilinearly to the stem
  resolution H/4 (``vit_branch="proj"``).  ``vit_branch="release"`` keeps the release's
  behaviour (the token memory reinterpreted as an (8·gh)×(8·gw)×D/64 image — 296²×24 for ViT-g
  at 518 — resized to H×W and reduced by a 2-conv stem to C1); spatially unfaithful, for
  comparison only.
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
  every model file.  A missing weights file at load time is an InputError naming the file and the
  fix; the folder(s) in ``RS_SEG_FOUNDATION_DIR`` are searched for the same file name first.
  Without weights (``vit_weights=None``) the ViT is randomly initialised from ``vit_seed``
  (deterministic, so a saved model reloads with the same features) and a one-time warning says
  the structure guidance is then only a random projection.
* **Both streams at width C** (§4.2.3; the release's half-width X stream / mismatched layer
  scales are bugs).  Stage loop applies each stage's own blocks once (release bug fixed).
* **FE update of x_e** is a separate Linear C→C; skipped in the very last block (and with it the
  structure-stream MLP), and the last FR builds no x2 output conv — so every trainable parameter
  receives a gradient (DDP without ``find_unused_parameters``).
* **FR**: single exponentials (the release's softmax of exp(a) double exponential is a bug);
  "weighted sum" read as the self-weighted soft-max pooling of the attention logits themselves;
  the two gate convs use a C/4 bottleneck (``fr_reduction``) with no activation between them.
* **Stage outputs** are LayerNorm'ed before the decoder (``out_norm=True``, as in DFormer).
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

import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from ..jobs import InputError
from .vit import (FrozenViT, load_foundation, parameter_count, random_foundation, vit_config,
                  to_patch_multiple, weights_fingerprint)

#: Trainable parameters of the full configuration (3 image bands, 1 structure band, 6 classes,
#: ViT-B/14 with registers shared by both modalities; the frozen ViT excluded).
FULL_PARAMS = 49_675_270
#: Tiny configuration for tests (widths 16…128, one FE block per stage, tiny frozen ViT).
TINY: Dict[str, Any] = {"widths": [16, 32, 64, 128], "depths": [1, 1, 1, 1],
                        "mlp_ratios": [2, 2, 2, 2], "decoder_dim": 32, "vit": "tiny_reg",
                        "drop_path": 0.0}
#: Structure-map normalisation of the release (0..1 grey map) — for 8-bit maps ×255.
STRUCTURE_MEAN, STRUCTURE_STD = 0.48, 0.28
#: Environment variable: folders (os.pathsep-separated) searched for missing foundation weights.
FOUNDATION_DIR_ENV = "RS_SEG_FOUNDATION_DIR"
#: Training recipe of the spec (§4.3) as plain values for the training loop.
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

_RANDOM_WARNED = False


def vsgnet_loss(output: Any, target: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """0.5·soft Dice + 0.5·cross-entropy with label smoothing (ignore 255): the JointLoss."""
    from .losses import cross_entropy, dice   # lazy: keeps the registry import light
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


# ---- building blocks --------------------------------------------------------------------------

class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a B×C×H×W tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with p = 0)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:     # channels-last
        return x * self.gamma


def stem(cin: int, cout: int) -> nn.Sequential:
    """3×3 s2 → C/2, BN, GELU, 3×3 s2 → C, BN (H/4)."""
    return nn.Sequential(nn.Conv2d(cin, cout // 2, 3, 2, 1), nn.BatchNorm2d(cout // 2), nn.GELU(),
                         nn.Conv2d(cout // 2, cout, 3, 2, 1), nn.BatchNorm2d(cout))


class ConvMlp(nn.Module):
    """LN → Linear C→rC → (+ depthwise 3×3 positional conv) → GELU → Linear rC→C (channels-last)."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.pos = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(self.norm(x))
        h = h + self.pos(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(self.act(h))


class FEBlock(nn.Module):
    """Fusion-enhancement block (DFormer-style RGB-X attention); streams channels-last B×H×W×C."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float,
                 ls_init: float, last: bool = False, window: int = 7) -> None:
        super().__init__()
        if dim % 2 or (dim // 2) % heads:
            raise ValueError(f"FE width {dim} must be even and C/2 divisible by {heads} heads")
        half = dim // 2
        self.heads, self.window, self.last = heads, window, last
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.norm_e = nn.LayerNorm(dim, eps=1e-6)
        # (i) global branch
        self.query = nn.Linear(2 * dim, half)
        self.kv_in = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim)
        # (ii) local branch
        self.local = nn.Linear(dim, half)
        self.local_e_in = nn.Linear(dim, half)
        self.local_e_conv = nn.Conv2d(half, half, 7, padding=3, groups=half)
        self.local_e_out = nn.Linear(half, half)
        self.proj = nn.Linear(dim, dim)
        self.ls1 = LayerScale(dim, ls_init)
        self.mlp = ConvMlp(dim, mlp_ratio)
        self.ls2 = LayerScale(dim, ls_init)
        if not last:
            self.proj_e = nn.Linear(dim, dim)
            self.ls1_e = LayerScale(dim, ls_init)
            self.mlp_e = ConvMlp(dim, mlp_ratio)
            self.ls2_e = LayerScale(dim, ls_init)
        self.drop_path = DropPath(drop_path)

    def _global(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        half, heads, win = c // 2, self.heads, self.window
        hd = half // heads
        pooled = F.adaptive_avg_pool2d(torch.cat([x, e], -1).permute(0, 3, 1, 2), win)
        q = self.query(pooled.permute(0, 2, 3, 1)).reshape(b, win * win, heads, hd).transpose(1, 2)
        kv = self.kv(F.gelu(self.kv_in(x))).reshape(b, h * w, 2, heads, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])          # B×heads×49×hd
        out = out.transpose(2, 3).reshape(b, half, win, win)
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        xn, en = self.norm(x), self.norm_e(e)
        le = self.local_e_in(en).permute(0, 3, 1, 2)
        le = self.local_e_out(self.local_e_conv(le).permute(0, 2, 3, 1))
        u = torch.cat([self._global(xn, en), self.local(xn) * le], dim=-1)
        x = x + self.drop_path(self.ls1(self.proj(u)))
        x = x + self.drop_path(self.ls2(self.mlp(x)))
        if not self.last:
            e = e + self.drop_path(self.ls1_e(self.proj_e(u)))
            e = e + self.drop_path(self.ls2_e(self.mlp_e(e)))
        return x, e


def _softmax_pool(a: torch.Tensor, dims: Tuple[int, ...]) -> torch.Tensor:
    """Σ softmax(a) ⊙ a over ``dims`` (flattened), keeping them as size-1 dims."""
    shape = a.shape
    keep = [d for d in range(a.ndim) if d not in dims]
    flat = a.permute(*keep, *dims).reshape(*[shape[d] for d in keep], -1)
    pooled = (torch.softmax(flat, dim=-1) * flat).sum(-1)
    out_shape = [1 if d in dims else shape[d] for d in range(a.ndim)]
    # restore the original dim order (kept dims are in order)
    return pooled.reshape(out_shape)


class FRModule(nn.Module):
    """Feature recalibration of the two streams after a stage's FE blocks (see module docstring)."""

    def __init__(self, dim: int, reduction: int = 4, last: bool = False) -> None:
        super().__init__()
        mid = max(dim // reduction, 1)
        self.att1 = nn.Conv2d(2 * dim, dim, 1)
        self.att2 = nn.Conv2d(2 * dim, dim, 1)
        self.gate1 = nn.Sequential(nn.Conv2d(dim, mid, 1), nn.Conv2d(mid, dim, 1))
        self.gate2 = nn.Sequential(nn.Conv2d(dim, mid, 1), nn.Conv2d(mid, dim, 1))
        self.out1 = nn.Conv2d(2 * dim, dim, 1)
        self.out2 = None if last else nn.Conv2d(2 * dim, dim, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        cat = torch.cat([x1, x2], dim=1)
        g1 = torch.sigmoid(self.gate1(_softmax_pool(self.att1(cat), (2, 3))))
        g2 = torch.sigmoid(self.gate2(_softmax_pool(self.att2(cat), (2, 3))))
        r1, r2 = x1 * g1 + x2, x2 * g2 + x1
        s1, s2 = _softmax_pool(r1, (1,)), _softmax_pool(r2, (1,))
        y = torch.cat([x1 * s1 + x2 + h1, x2 * s2 + x1 + h2], dim=1)
        return self.out1(y), (self.out2(y) if self.out2 is not None else None)


class Stage(nn.Module):
    """[downsample per stream] → FE blocks → FR → (x1, x2, decoder feature)."""

    def __init__(self, cin: int, dim: int, depth: int, heads: int, mlp_ratio: float,
                 drop_paths: Sequence[float], ls_init: float, last: bool,
                 fr_reduction: int, out_norm: bool) -> None:
        super().__init__()
        self.down1 = self.down2 = None
        if cin:
            self.down1 = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, dim, 3, 2, 1))
            self.down2 = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, dim, 3, 2, 1))
        self.blocks = nn.ModuleList(
            FEBlock(dim, heads, mlp_ratio, drop_paths[i], ls_init, last=last and i == depth - 1)
            for i in range(depth))
        self.fr = FRModule(dim, fr_reduction, last=last)
        self.out_norm = LayerNorm2d(dim, eps=1e-6) if out_norm else nn.Identity()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        if self.down1 is not None:
            x1, x2 = self.down1(x1), self.down2(x2)
        h1, h2 = x1.permute(0, 2, 3, 1), x2.permute(0, 2, 3, 1)
        for blk in self.blocks:
            h1, h2 = blk(h1, h2)
        n1, n2 = self.fr(x1, x2, h1.permute(0, 3, 1, 2), h2.permute(0, 3, 1, 2))
        return n1, n2, self.out_norm(n1)


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


class ViTBranch(nn.Module):
    """Frozen-ViT patch maps → C1 features at the stem resolution (trainable adapter)."""

    def __init__(self, vit_dim: int, n_layers: int, out: int, mode: str = "proj") -> None:
        super().__init__()
        self.mode = mode
        if mode == "proj":
            self.proj = nn.Sequential(nn.Conv2d(vit_dim * n_layers, out, 1), nn.BatchNorm2d(out))
        elif mode == "release":
            if vit_dim % 64:
                raise ValueError("vit_branch='release' needs a ViT width divisible by 64")
            self.proj = stem(vit_dim // 64 * n_layers, out)
        else:
            raise InputError(f"vit_branch must be 'proj' or 'release', not {mode!r}")

    def forward(self, maps: Sequence[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
        if self.mode == "proj":
            y = self.proj(torch.cat(list(maps), dim=1))
            return F.interpolate(y, size=(size[0] // 4, size[1] // 4), mode="bilinear",
                                 align_corners=False)
        images = []
        for m in maps:     # release quirk: B×N×D token memory read as an (8gh)×(8gw)×(D/64) image
            b, d, gh, gw = m.shape
            tokens = m.flatten(2).transpose(1, 2).contiguous()
            img = tokens.reshape(b, 8 * gh, 8 * gw, d // 64).permute(0, 3, 1, 2)
            images.append(F.interpolate(img, size=size, mode="bilinear", align_corners=False))
        return self.proj(torch.cat(images, dim=1))


# ---- foundation handling ----------------------------------------------------------------------

def resolve_weights(path: str | os.PathLike) -> Path:
    """``path`` if it exists, else the same file name in a ``RS_SEG_FOUNDATION_DIR`` folder."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    for folder in filter(None, os.environ.get(FOUNDATION_DIR_ENV, "").split(os.pathsep)):
        candidate = Path(folder).expanduser() / p.name
        if candidate.is_file():
            return candidate
    raise InputError(
        f"foundation weights {p} not found. This VSGNet model uses a frozen DINOv2 encoder that "
        f"is not stored in the model file (to keep it small); put the same weights file at "
        f"{p}, or into a folder listed in the {FOUNDATION_DIR_ENV} environment variable. "
        f"Nothing is downloaded")


def _foundation(config: str, weights: Optional[str], layers: Sequence[int], seed: int,
                fingerprint: Optional[str]) -> FrozenViT:
    global _RANDOM_WARNED
    if config.startswith("sam_"):         # SAM's image encoder instead of a DINOv2 ViT
        from .sam.features import sam_foundation
        return sam_foundation(config, resolve_weights(weights) if weights else None, layers,
                              seed, fingerprint)
    if weights:
        path = resolve_weights(weights)
        if fingerprint and weights_fingerprint(path) != fingerprint:
            raise InputError(f"foundation weights {path} differ from those the model was trained "
                             f"with (fingerprint {fingerprint}); give the original file")
        return load_foundation(path, config, layers)
    if not _RANDOM_WARNED:
        _RANDOM_WARNED = True
        warnings.warn(f"VSGNet: no foundation weights given (vit_weights); the frozen {config} "
                      f"encoder is randomly initialised (seed {seed}), so the structure "
                      f"guidance is a random projection. Pass vit_weights=<local DINOv2 .pth> "
                      f"for the real model", RuntimeWarning, stacklevel=3)
    return random_foundation(config, seed, layers)


# ---- network ----------------------------------------------------------------------------------

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
        rgb_vit = _foundation(vit, vit_weights, layers, vit_seed, vit_fingerprint)
        if aux_vit is None and aux_vit_weights is None:
            aux_frozen = rgb_vit
        else:
            aux_frozen = _foundation(aux_vit or vit, aux_vit_weights, layers, vit_seed + 1,
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
