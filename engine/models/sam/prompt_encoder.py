"""SAM's prompt encoder: points and box corners as random-Fourier positional encodings plus
learned type embeddings (sparse), masks as a small conv stack (dense).  Published names::

    pe_layer.positional_encoding_gaussian_matrix [2, 128]
    point_embeddings.{0: negative, 1: positive, 2: box top-left, 3: box bottom-right}.weight [1,256]
    not_a_point_embed.weight [1,256]   no_mask_embed.weight [1,256]
    mask_downscaling.{0: conv 1→4 k2s2, 1: LN2d, 3: conv 4→16 k2s2, 4: LN2d, 6: conv 16→256 1×1}
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from .image_encoder import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with a fixed random Gaussian frequency matrix (Tancik et al.)."""

    def __init__(self, features: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, features))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Coordinates in [0, 1] (… × 2, x then y) → … × 2·features."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def grid(self, h: int, w: int) -> torch.Tensor:
        """C×h×w encoding of the pixel centres of an h×w grid."""
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return self._encode(torch.stack([xx, yy], dim=-1)).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """Encode B×N×2 pixel coordinates (x, y) of an image of ``size`` (h, w)."""
        c = coords.clone().float()
        c[..., 0] = c[..., 0] / size[1]
        c[..., 1] = c[..., 1] / size[0]
        return self._encode(c)


class PromptEncoder(nn.Module):
    def __init__(self, dim: int = 256, grid: int = 64, img_size: int = 1024,
                 mask_chans: int = 16) -> None:
        super().__init__()
        self.dim, self.grid, self.img_size = dim, grid, img_size
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_chans // 4, 2, 2), LayerNorm2d(mask_chans // 4), nn.GELU(),
            nn.Conv2d(mask_chans // 4, mask_chans, 2, 2), LayerNorm2d(mask_chans), nn.GELU(),
            nn.Conv2d(mask_chans, dim, 1))
        self.no_mask_embed = nn.Embedding(1, dim)

    def dense_pe(self) -> torch.Tensor:
        """1×dim×grid×grid positional encoding of the image embedding."""
        return self.pe_layer.grid(self.grid, self.grid)[None]

    def _points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        coords = coords + 0.5                                  # pixel centres
        if pad:                                                # a point, no box: pad token
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.points(coords, (self.img_size, self.img_size))
        emb = torch.where((labels == -1)[..., None], torch.zeros_like(emb), emb)
        emb = emb + (labels == -1)[..., None] * self.not_a_point_embed.weight
        emb = emb + (labels == 0)[..., None] * self.point_embeddings[0].weight
        return emb + (labels == 1)[..., None] * self.point_embeddings[1].weight

    def _boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.points(corners, (self.img_size, self.img_size))
        return emb + torch.cat([self.point_embeddings[2].weight,
                                self.point_embeddings[3].weight])[None]

    def forward(self, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                boxes: Optional[torch.Tensor] = None, masks: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Points (B×N×2 in 1024-frame pixels, labels B×N: 1 object, 0 background), boxes (B×4
        x0 y0 x1 y1) and mask logits (B×1×256×256) → sparse B×T×dim, dense B×dim×64×64."""
        b = (points[0] if points is not None else boxes if boxes is not None else masks).shape[0]
        device = self.no_mask_embed.weight.device
        sparse = torch.empty(b, 0, self.dim, device=device)
        if points is not None:
            sparse = torch.cat([sparse, self._points(points[0], points[1], boxes is None)], 1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                b, -1, self.grid, self.grid)
        return sparse, dense
