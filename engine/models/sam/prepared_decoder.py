"""SAM's prompt encoder + mask decoder split for speed: a per-window part and a per-prompt part.

The published decoder spends most of a click on products with the 4096 image tokens (64²):
ten 4096×256 by 256×128 projections and the two transposed convolutions.  Here

* what does not depend on the prompt is computed once per window (:meth:`PreparedDecoder.prepare`):
  the image tokens plus the no-mask embedding, and the first layer's key and value projections
  (token→image) and query projection (image→token) of them;
* later attentions re-associate their products so the image side is multiplied by small
  token-side matrices instead of being projected: ``(k W_k) q`` becomes ``k (W_k q)`` with the
  key bias dropped (a constant per query row, which the softmax cancels), and
  ``A (k W_v + b)`` becomes ``(A k) W_v + b`` (attention rows sum to 1); the image→token
  output projection is folded into the token values, so ``4096×256·56`` multiply-adds replace
  ``4096×256·128``;
* the two stride-2, kernel-2 transposed convolutions are plain matrix products on channel-last
  tokens (no overlap, so each token's 2×2, then 4×4 block of pixels is independent); the masks
  leave the graph in that block order (4 × N·16) and only the one that is used is put in place
  (:func:`unblock`).

The result is the published decoder's up to float rounding (tests compare both with
segment-anything's).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import Sam
from .mask_decoder import Attention

#: Names of the per-window tensors, in :meth:`PreparedDecoder.prepare`'s order.
WINDOW_INPUTS = ("image_tokens", "keys0_t", "values0", "image_queries0")
#: The two up-scaling matrices (the transposed convolutions' weights), named in the graph.
UPSCALING_WEIGHTS = ("upscale_w1", "upscale_w2")


def unblock(blocks: np.ndarray, grid: int) -> np.ndarray:
    """One mask's logits in block order (grid²·16: token row, token column, then the 4×4 pixels
    the two up-samplings make of it) → its 4·grid × 4·grid map."""
    return np.ascontiguousarray(blocks.reshape(grid, grid, 2, 2, 2, 2)
                                .transpose(0, 2, 4, 1, 3, 5).reshape(4 * grid, 4 * grid))


def _heads(x: torch.Tensor, attn: Attention) -> torch.Tensor:
    """N×C → heads×N×C/heads."""
    n, c = x.shape
    return x.reshape(n, attn.heads, c // attn.heads).transpose(0, 1)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """heads×N×c → N×heads·c."""
    h, n, c = x.shape
    return x.transpose(0, 1).reshape(n, h * c)


def _scale(attn: Attention) -> float:
    return (attn.q_proj.out_features // attn.heads) ** -0.5


class PreparedDecoder(nn.Module):
    """Image embedding → per-window tensors (:meth:`prepare`); those + unified prompts
    (1024-frame pixels, SAM's ONNX labels) → the 4 masks' logits in block order (4×N·16) and
    their 4 IoUs (1×4) (:meth:`forward`)."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        pe = sam.prompt_encoder
        self.pe_layer, self.img_size, self.grid = pe.pe_layer, pe.img_size, pe.grid
        self.decoder = sam.mask_decoder
        self.transformer = sam.mask_decoder.transformer
        types = [pe.not_a_point_embed.weight] + [e.weight for e in pe.point_embeddings]
        with torch.no_grad():
            self.register_buffer("types", torch.cat(types).detach().clone())  # -1, 0, 1, 2, 3
            self.register_buffer("key_pe", pe.dense_pe()[0].flatten(1).t().contiguous())
            self.register_buffer("no_mask", pe.no_mask_embed.weight.detach().clone())
            # The up-scaling as matrices, under names the int8 graph picks them by
            # (:data:`UPSCALING_WEIGHTS`): 256 × (2·2·64), then 64 × (2·2·32).
            up = sam.mask_decoder.output_upscaling
            for name, conv in zip(UPSCALING_WEIGHTS, (up[0], up[3])):
                self.register_buffer(name, conv.weight.permute(0, 2, 3, 1)
                                     .reshape(conv.in_channels, -1).detach().clone())

    @torch.no_grad()
    def prepare(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """1×256×64×64 embedding → the prompt-independent tensors (:data:`WINDOW_INPUTS`)."""
        keys = image[0].flatten(1).t() + self.no_mask
        keys_pe = keys + self.key_pe
        first = self.transformer.layers[0]
        to_image, to_token = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        keys0_t = _heads(to_image.k_proj(keys_pe), to_image).transpose(1, 2)
        values0 = _heads(to_image.v_proj(keys), to_image)
        queries0 = _heads(to_token.q_proj(keys_pe), to_token) * _scale(to_token)
        return tuple(t.contiguous() for t in (keys, keys0_t, values0, queries0))

    def forward(self, image_tokens: torch.Tensor, keys0_t: torch.Tensor, values0: torch.Tensor,
                image_queries0: torch.Tensor, point_coords: torch.Tensor,
                point_labels: torch.Tensor):
        d = self.decoder
        tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight, self._sparse(
            point_coords, point_labels)])
        first, second = self.transformer.layers
        queries = first.norm1(first.self_attn(tokens[None], tokens[None], tokens[None])[0])
        a = first.cross_attn_token_to_image
        q = _heads(a.q_proj(queries + tokens), a) * _scale(a)
        out = a.out_proj(_merge(torch.softmax(q @ keys0_t, -1) @ values0))
        queries = first.norm2(queries + out)
        queries = first.norm3(queries + first.mlp(queries))
        b = first.cross_attn_image_to_token
        k = _heads(b.k_proj(queries + tokens), b)
        weights = torch.softmax(image_queries0 @ k.transpose(1, 2), -1)  # heads×N×T
        keys = first.norm4(self._to_image(image_tokens, weights.transpose(0, 1), queries, b))

        q = queries + tokens
        queries = second.norm1(queries + second.self_attn(q[None], q[None], queries[None])[0])
        keys_pe = keys + self.key_pe
        queries = second.norm2(queries + self._to_tokens(
            second.cross_attn_token_to_image, queries + tokens, keys_pe, keys))
        queries = second.norm3(queries + second.mlp(queries))
        b = second.cross_attn_image_to_token
        k = _heads(b.k_proj(queries + tokens), b) * _scale(b)               # heads×T×c
        w_q = b.q_proj.weight.reshape(b.heads, -1, keys.shape[1])            # heads×c×256
        proj = (w_q.transpose(1, 2) @ k.transpose(1, 2)).transpose(0, 1)     # 256×heads×T
        bias = (b.q_proj.bias.reshape(b.heads, 1, -1) @ k.transpose(1, 2))   # heads×1×T
        scores = keys_pe @ proj.reshape(keys.shape[1], -1) + bias.transpose(0, 1).reshape(1, -1)
        weights = torch.softmax(scores.reshape(keys.shape[0], b.heads, -1), -1)
        keys = second.norm4(self._to_image(keys, weights, queries, b))

        t = self.transformer
        queries = t.norm_final_attn(queries + self._to_tokens(
            t.final_attn_token_to_image, queries + tokens, keys + self.key_pe, keys))
        return self._masks(keys, queries[1:1 + d.num_mask_tokens]), \
            d.iou_prediction_head(queries[0])[None]

    def _sparse(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The prompt tokens (T×256) of 1×T×2 coordinates and 1×T labels (-1 padding, 0/1
        background/object, 2/3 box corners)."""
        emb = self.pe_layer.points(coords + 0.5, (self.img_size, self.img_size))
        labels = labels[..., None]
        emb = emb * (labels != -1)
        for k in range(5):
            emb = emb + (labels == k - 1) * self.types[k]
        return emb[0]

    @staticmethod
    def _to_tokens(attn: Attention, queries: torch.Tensor, keys_pe: torch.Tensor,
                   keys: torch.Tensor) -> torch.Tensor:
        """Token→image attention without projecting the image tokens: the query goes through
        the key weights instead (T×256 → heads·T×256) and the attended tokens through the value
        weights afterwards."""
        heads, dim = attn.heads, keys.shape[1]
        q = _heads(attn.q_proj(queries), attn) * _scale(attn)                 # heads×T×c
        w_k = attn.k_proj.weight.reshape(heads, -1, dim)                      # heads×c×256
        weights = torch.softmax((q @ w_k).reshape(-1, dim) @ keys_pe.t(), -1)  # heads·T×N
        seen = (weights @ keys).reshape(heads, -1, dim)                      # heads×T×256
        w_v = attn.v_proj.weight.reshape(heads, -1, dim).transpose(1, 2)      # heads×256×c
        values = seen @ w_v + attn.v_proj.bias.reshape(heads, 1, -1)
        return attn.out_proj(_merge(values))

    @staticmethod
    def _to_image(keys: torch.Tensor, weights: torch.Tensor, queries: torch.Tensor,
                  attn: Attention) -> torch.Tensor:
        """``keys`` (N×256) plus their image→token attention output, from its weights
        (N×heads×T): the output projection is folded into the token values (heads·T×256), its
        bias too, spread over the heads (each head's weights sum to 1), so the residual sum is
        one matrix product-and-add."""
        n, heads, t = weights.shape
        values = _heads(attn.v_proj(queries), attn)                           # heads×T×c
        w_out = attn.out_proj.weight.t().reshape(heads, -1, attn.out_proj.out_features)
        folded = (values @ w_out).reshape(heads * t, -1) + attn.out_proj.bias / heads
        return torch.addmm(keys, weights.reshape(n, heads * t), folded)

    def _masks(self, keys: torch.Tensor, mask_tokens: torch.Tensor) -> torch.Tensor:
        """Channel-last image tokens (N×256) and mask tokens (M×256) → mask logits in block
        order (:func:`unblock`)."""
        up = self.decoder.output_upscaling
        conv1, norm, conv2 = up[0], up[1], up[3]
        x = (keys @ self.upscale_w1 + conv1.bias.repeat(4)).reshape(-1, conv1.out_channels)
        x = F.gelu(F.layer_norm(x, (conv1.out_channels,), norm.weight, norm.bias, norm.eps))
        x = F.gelu((x @ self.upscale_w2 + conv2.bias.repeat(4)).reshape(-1, conv2.out_channels))
        hyper = torch.stack([mlp(mask_tokens[i]) for i, mlp in
                             enumerate(self.decoder.output_hypernetworks_mlps)])  # M×32
        return hyper @ x.t()
