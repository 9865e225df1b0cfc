"""SAM's image encoder: a plain ViT (patch 16) with windowed and global attention, decomposed
relative positions and a convolutional neck to 256 channels (Kirillov et al., 2023, §3 and
appendix A), written with the parameter names of the published ``sam_vit_*`` checkpoints::

    patch_embed.proj.{weight [D,3,16,16], bias [D]}     pos_embed [1, 64, 64, D]
    blocks.{i}.norm1/norm2.{weight,bias} [D]
    blocks.{i}.attn.qkv.{weight [3D,D], bias [3D]}  blocks.{i}.attn.proj.{weight [D,D], bias}
    blocks.{i}.attn.rel_pos_h / rel_pos_w [2·S−1, D/heads]   S = 14 (window) or 64 (global)
    blocks.{i}.mlp.lin1.{weight [4D,D], bias}  blocks.{i}.mlp.lin2.{weight [D,4D], bias}
    neck.0.weight [256,D,1,1]  neck.1.{weight,bias} [256]  neck.2.weight [256,256,3,3]
    neck.3.{weight,bias} [256]
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a B×C×H×W map (SAM's ``LayerNorm2d``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


def relative_positions(q: int, k: int, table: torch.Tensor) -> torch.Tensor:
    """q×k×C relative-position embeddings picked from a (2·max(q,k)−1)×C table (resized
    linearly when the table was stored for another size)."""
    n = 2 * max(q, k) - 1
    if table.shape[0] != n:
        table = F.interpolate(table.t()[None], size=n, mode="linear")[0].t()
    qc = torch.arange(q, device=table.device)[:, None] * max(k / q, 1.0)
    kc = torch.arange(k, device=table.device)[None, :] * max(q / k, 1.0)
    return table[((qc - kc) + (k - 1) * max(q / k, 1.0)).long()]


class Attention(nn.Module):
    """Multi-head attention on a B×H×W×C map with decomposed relative positions: the bias of
    query (y, x) to key (y', x') is q·Rh[y−y'] + q·Rw[x−x']."""

    def __init__(self, dim: int, heads: int, size: Tuple[int, int]) -> None:
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, h * w, -1).unbind(0)
        rh = relative_positions(h, h, self.rel_pos_h)
        rw = relative_positions(w, w, self.rel_pos_w)
        # global blocks (64×64 tokens) build a 4096² bias per head: a few heads at a time
        step = max(1, (1 << 26) // (h * w) ** 2) if h * w > 1024 else q.shape[0]
        out = torch.cat([self._attend(q[i:i + step], k[i:i + step], v[i:i + step], rh, rw, h, w)
                         for i in range(0, q.shape[0], step)])
        out = out.view(b, self.heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)

    @staticmethod
    def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rh: torch.Tensor,
                rw: torch.Tensor, h: int, w: int) -> torch.Tensor:
        rq = q.reshape(-1, h, w, q.shape[-1])
        bias_h = torch.einsum("bhwc,hkc->bhwk", rq, rh)
        bias_w = torch.einsum("bhwc,wkc->bhwk", rq, rw)
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(-1, h * w, h * w)
        # the bias is part of the logits: softmax(q·k/√d + bias), as SAM's explicit product
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))


def window_partition(x: torch.Tensor, size: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """B×H×W×C → (B·n)×size×size×C windows (zero-padded to multiples of ``size``)."""
    b, h, w, c = x.shape
    ph, pw = (size - h % size) % size, (size - w % size) % size
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // size, size, wp // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size, size, c), (hp, wp)


def window_unpartition(x: torch.Tensor, size: int, padded: Tuple[int, int],
                       hw: Tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = x.shape[0] // (hp * wp // size // size)
    x = x.view(b, hp // size, wp // size, size, size, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, :hw[0], :hw[1]].contiguous()


class Block(nn.Module):
    """Pre-norm transformer block; ``window`` > 0 attends within window×window windows."""

    def __init__(self, dim: int, heads: int, window: int, grid: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, (window, window) if window else (grid, grid))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window:
            hw = y.shape[1:3]
            y, padded = window_partition(y, self.window)
            y = window_unpartition(self.attn(y), self.window, padded, hw)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """1024² RGB (normalised) → 256×64×64 image embedding."""

    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12,
                 global_blocks: Sequence[int] = (2, 5, 8, 11), img_size: int = 1024,
                 patch: int = 16, window: int = 14, out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        self.blocks = nn.ModuleList(
            Block(dim, heads, 0 if i in set(global_blocks) else window, grid)
            for i in range(depth))
        self.neck = nn.Sequential(nn.Conv2d(dim, out_chans, 1, bias=False),
                                  LayerNorm2d(out_chans),
                                  nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
                                  LayerNorm2d(out_chans))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)
        pos = self.pos_embed
        if pos.shape[1:3] != x.shape[1:3]:      # another input size: resize the table
            pos = F.interpolate(pos.permute(0, 3, 1, 2), size=x.shape[1:3], mode="bicubic",
                                align_corners=False).permute(0, 2, 3, 1)
        x = x + pos
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
