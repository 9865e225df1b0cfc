"""SRCBTFusion-Net's ViT encoder: 1×1 patch embedding of the stage-3 map, a learned position
embedding resized to any token grid, and the pre-norm ViT-B blocks (TransUNet's module names,
which ``engine.weights.vit_npz`` maps the R50+ViT-B_16 checkpoint onto).

Dropout 0.1 on the token embedding and inside the MLPs (after the activation and after the
second linear layer); attention dropout 0 (a reading where the specification is silent or
ambiguous).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with separate query/key/value/out projections."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError("vit_hidden must be divisible by vit_heads")
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)),
                                           split(self.value(x)))
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Linear hidden→mlp → GELU → dropout → Linear mlp→hidden → dropout."""

    def __init__(self, hidden: int, mlp: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp)
        self.fc2 = nn.Linear(mlp, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm ViT block: x + Attn(LN(x)); x + MLP(LN(x))."""

    def __init__(self, hidden: int, heads: int, mlp: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ffn = Mlp(hidden, mlp, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attention_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """1×1 patch embedding (patch size 1 on the H/16 grid) + learned positional embedding (no class
    token; stored for a ``grid``×``grid`` token grid and resized bicubically to the input's grid)
    + ``depth`` ViT blocks + final LayerNorm.  Returns B × hidden × h × w."""

    def __init__(self, cin: int, hidden: int = 768, depth: int = 8, heads: int = 12,
                 mlp: int = 3072, grid: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.grid = grid
        self.patch_embeddings = nn.Conv2d(cin, hidden, 1)
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid, hidden))
        nn.init.trunc_normal_(self.position_embeddings, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, heads, mlp, dropout) for _ in range(depth))
        self.encoder_norm = nn.LayerNorm(hidden, eps=1e-6)

    def position(self, h: int, w: int) -> torch.Tensor:
        """Positional embedding for an h×w token grid (1 × h·w × hidden)."""
        pos = self.position_embeddings
        if (h, w) == (self.grid, self.grid):
            return pos
        return resize_position_embedding(pos, self.grid, self.grid, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embeddings(x)
        b, d, h, w = x.shape
        tokens = self.dropout(x.flatten(2).transpose(1, 2) + self.position(h, w))
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.encoder_norm(tokens)
        return tokens.transpose(1, 2).reshape(b, d, h, w)


def resize_position_embedding(pos: torch.Tensor, gh: int, gw: int, h: int, w: int
                              ) -> torch.Tensor:
    """Resize a 1 × (gh·gw) × D embedding to 1 × (h·w) × D (bicubic on the 2-D grid)."""
    d = pos.shape[-1]
    grid = pos.reshape(1, gh, gw, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(h, w), mode="bicubic", align_corners=False)
    return grid.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, h * w, d)
