"""DINOv2 ViT configurations by name and the state-dict layout each implies.

State-dict layout (D = width, L = depth, R = register tokens, N = (img_size/14)² = 37² = 1369 for
the released 518-pixel position table, hidden = 4·D)::

    cls_token                    [1, 1, D]
    pos_embed                    [1, 1 + N, D]          (cls position first, then a 37×37 grid)
    register_tokens              [1, R, D]              (only the "_reg" models, R = 4)
    mask_token                   [1, D]                 (iBOT mask token; unused for features)
    patch_embed.proj.weight      [D, 3, 14, 14]
    patch_embed.proj.bias        [D]
    blocks.{i}.norm1.weight/bias                [D]      i = 0 … L-1
    blocks.{i}.attn.qkv.weight  [3D, D]  .bias [3D]      rows: q | k | v, heads contiguous
    blocks.{i}.attn.proj.weight [D, D]   .bias [D]
    blocks.{i}.ls1.gamma                        [D]      LayerScale
    blocks.{i}.norm2.weight/bias                [D]
    blocks.{i}.mlp.fc1.weight [hidden, D] .bias [hidden] (ViT-S/B/L: GELU MLP)
    blocks.{i}.mlp.fc2.weight [D, hidden] .bias [D]
    blocks.{i}.mlp.w12.weight [2h, D] .bias [2h]         (ViT-g: fused SwiGLU,
    blocks.{i}.mlp.w3.weight  [D, h]  .bias [D]           h = round8(⌊hidden·2/3⌋) = 4096)
    blocks.{i}.ls2.gamma                        [D]
    norm.weight / norm.bias                     [D]      final LayerNorm

=========  =====  =====  =====  ========  ==================
name       D      L      heads  MLP       parameters
=========  =====  =====  =====  ========  ==================
vits14     384    12     6      GELU 4×   22.06 M
vitb14     768    12     12     GELU 4×   86.58 M
vitl14     1024   24     16     GELU 4×   304.4 M
vitg14     1536   40     24     SwiGLU    1.137 B
=========  =====  =====  =====  ========  ==================

(``_reg`` adds 4·D parameters.)
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import torch

from ...jobs import InputError

#: Patch edge of the DINOv2 ViTs, in pixels.
PATCH = 14
#: Mean/std of the ImageNet normalisation the DINOv2 weights were trained with (0..1 RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a DINOv2-style ViT."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    ffn: str = "mlp"                 # "mlp" (GELU) or "swiglu" (fused SwiGLU, ViT-g)
    num_register_tokens: int = 0
    patch_size: int = PATCH
    img_size: int = 518              # size the position table was trained for (37×37 tokens)
    interpolate_antialias: bool = False
    interpolate_offset: float = 0.1

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def hidden(self) -> int:
        """MLP hidden width (per half for SwiGLU)."""
        h = int(self.embed_dim * self.mlp_ratio)
        if self.ffn == "swiglu":
            h = (int(h * 2 / 3) + 7) // 8 * 8
        return h


_BASE = {
    "vits14": dict(embed_dim=384, depth=12, num_heads=6),
    "vitb14": dict(embed_dim=768, depth=12, num_heads=12),
    "vitl14": dict(embed_dim=1024, depth=24, num_heads=16),
    "vitg14": dict(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
    # tiny stand-in for tests (patch 14, 4×4 position grid): same code paths, ~0.1 M parameters
    "tiny": dict(embed_dim=64, depth=2, num_heads=2, img_size=56),
}
CONFIG_NAMES = tuple(sorted([n for n in _BASE] + [n + "_reg" for n in _BASE]))


def vit_config(name: str | ViTConfig) -> ViTConfig:
    """Configuration by name: ``vits14``, ``vitb14``, ``vitl14``, ``vitg14``, ``tiny``, each
    optionally with ``_reg`` (4 register tokens) and an optional ``dinov2_`` prefix."""
    if isinstance(name, ViTConfig):
        return name
    key = str(name).lower().strip()
    key = key[len("dinov2_"):] if key.startswith("dinov2_") else key
    reg = key.endswith("_reg")
    base = key[:-4] if reg else key
    if base not in _BASE:
        raise InputError(f"unknown foundation ViT '{name}'; available: {', '.join(CONFIG_NAMES)}")
    extra = dict(num_register_tokens=4, interpolate_antialias=True, interpolate_offset=0.0) \
        if reg else {}
    return ViTConfig(name=base + ("_reg" if reg else ""), **{**_BASE[base], **extra})


def expected_shapes(config: str | ViTConfig) -> "OrderedDict[str, Tuple[int, ...]]":
    """The state-dict keys and shapes of ``config`` in DINOv2 order (see the module docstring)."""
    c = vit_config(config)
    d, h = c.embed_dim, c.hidden
    out: "OrderedDict[str, Tuple[int, ...]]" = OrderedDict()
    out["cls_token"] = (1, 1, d)
    out["pos_embed"] = (1, 1 + c.grid ** 2, d)
    if c.num_register_tokens:
        out["register_tokens"] = (1, c.num_register_tokens, d)
    out["mask_token"] = (1, d)
    out["patch_embed.proj.weight"] = (d, 3, c.patch_size, c.patch_size)
    out["patch_embed.proj.bias"] = (d,)
    for i in range(c.depth):
        p = f"blocks.{i}."
        out[p + "norm1.weight"] = (d,)
        out[p + "norm1.bias"] = (d,)
        out[p + "attn.qkv.weight"] = (3 * d, d)
        out[p + "attn.qkv.bias"] = (3 * d,)
        out[p + "attn.proj.weight"] = (d, d)
        out[p + "attn.proj.bias"] = (d,)
        out[p + "ls1.gamma"] = (d,)
        out[p + "norm2.weight"] = (d,)
        out[p + "norm2.bias"] = (d,)
        if c.ffn == "swiglu":
            out[p + "mlp.w12.weight"] = (2 * h, d)
            out[p + "mlp.w12.bias"] = (2 * h,)
            out[p + "mlp.w3.weight"] = (d, h)
            out[p + "mlp.w3.bias"] = (d,)
        else:
            out[p + "mlp.fc1.weight"] = (h, d)
            out[p + "mlp.fc1.bias"] = (h,)
            out[p + "mlp.fc2.weight"] = (d, h)
            out[p + "mlp.fc2.bias"] = (d,)
        out[p + "ls2.gamma"] = (d,)
    out["norm.weight"] = (d,)
    out["norm.bias"] = (d,)
    return out


def guess_config(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The configuration name whose layout a state dict has, or None."""
    for name in CONFIG_NAMES:
        shapes = expected_shapes(name)
        if set(shapes) == set(state) and all(tuple(state[k].shape) == s
                                             for k, s in shapes.items()):
            return name
    return None


def parameter_count(config: str | ViTConfig) -> int:
    """Number of parameters of ``config`` (from the layout, no allocation)."""
    return sum(math.prod(s) for s in expected_shapes(config).values())
