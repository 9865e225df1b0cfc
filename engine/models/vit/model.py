"""The DINOv2-layout Vision Transformer: token preparation, the blocks and normalised patch
features, plus a seeded random build and the input resize to a patch multiple.

Forward: patch embedding → prepend the cls token → add the position table (bicubically resized to
the token grid of the input; the non-register models use DINOv2's 0.1 offset without
antialiasing, the register models size-based resizing with antialiasing) → insert the register
tokens after the cls token → L pre-norm blocks ``x += ls1(attn(norm1(x))); x += ls2(mlp(norm2(x)))``
→ final norm.  The "normalised patch tokens" are the final-norm outputs at the patch positions
(cls and registers dropped).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block, PatchEmbed
from .config import PATCH, ViTConfig, vit_config


class ViT(nn.Module):
    """DINOv2-layout Vision Transformer (forward: this module's docstring; parameter layout:
    :mod:`engine.models.vit.config`)."""

    def __init__(self, config: str | ViTConfig) -> None:
        super().__init__()
        c = self.config = vit_config(config)
        d = c.embed_dim
        self.patch_embed = PatchEmbed(c.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + c.grid ** 2, d))
        self.register_tokens = (nn.Parameter(torch.zeros(1, c.num_register_tokens, d))
                                if c.num_register_tokens else None)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, d))
        if not any(p.is_meta for p in self.parameters()):
            self.reset_parameters()

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.config.num_register_tokens

    def reset_parameters(self) -> None:
        """Random initialisation (truncated normal 0.02 for weights and tables, zero biases)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        nn.init.zeros_(self.mask_token)

    def position_table(self, gh: int, gw: int) -> torch.Tensor:
        """Position embeddings for a gh×gw token grid (1 × (1+gh·gw) × D)."""
        c, pos = self.config, self.pos_embed
        m = c.grid
        if (gh, gw) == (m, m):
            return pos
        patch = pos[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
        if c.interpolate_offset:
            off = c.interpolate_offset
            kw = {"scale_factor": ((gh + off) / m, (gw + off) / m)}
        else:
            kw = {"size": (gh, gw)}
        patch = F.interpolate(patch, mode="bicubic", antialias=c.interpolate_antialias, **kw)
        patch = patch[..., :gh, :gw].permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([pos[:, :1].float(), patch], dim=1).to(pos.dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Input tokens: [cls, registers…, patches…] with positions added (B × T × D)."""
        b, _, h, w = x.shape
        p = self.config.patch_size
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(b, -1, -1), t], dim=1)
        t = t + self.position_table(h // p, w // p).to(t.dtype)
        if self.register_tokens is not None:
            t = torch.cat([t[:, :1], self.register_tokens.expand(b, -1, -1), t[:, 1:]], dim=1)
        return t

    def forward_layers(self, x: torch.Tensor, layers: Sequence[int]) -> List[torch.Tensor]:
        """Normalised patch features (B × D × H/14 × W/14) after each block index in ``layers``
        (negative indexes count from the end; -1 is the last block)."""
        p = self.config.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            raise ValueError(f"ViT input edges must be multiples of {p}, got {tuple(x.shape[-2:])}")
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        wanted = sorted({i % len(self.blocks) for i in layers})
        t = self.tokens(x)
        out: Dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks):
            t = blk(t)
            if i in wanted:
                f = self.norm(t)[:, self.num_prefix_tokens:]
                out[i] = f.transpose(1, 2).reshape(t.shape[0], -1, gh, gw)
            if i >= wanted[-1]:
                break
        return [out[i % len(self.blocks)] for i in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised patch tokens of the last block as a B × D × H/14 × W/14 map."""
        return self.forward_layers(x, [-1])[0]


def build_vit(config: str | ViTConfig, seed: Optional[int] = None) -> ViT:
    """A randomly initialised ViT; with ``seed`` the result is the same on every call and the
    global random state is left untouched."""
    if seed is None:
        return ViT(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return ViT(config)


def to_patch_multiple(x: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """Resize (bilinear) to the next multiple of ``patch`` on both edges (512 → 518)."""
    h, w = x.shape[-2:]
    th, tw = math.ceil(h / patch) * patch, math.ceil(w / patch) * patch
    if (th, tw) == (h, w):
        return x
    return F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
