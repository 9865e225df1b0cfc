"""SAM's image encoder as a frozen feature extractor for VSGNet (in place of a DINOv2 ViT).

:class:`SamFeatures` offers what :class:`engine.models.vit.FrozenViT` asks of a ViT — ``config``
(``name``, ``embed_dim``, ``patch_size``) and ``forward_layers(x, layers)`` — and returns SAM's
image embedding (the neck's 256 channels at 1/16; any input size, the position table resized).
Only the last layer (``-1``) exists: SAM's blocks have no final norm to read earlier ones by.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from torch import nn

from ...jobs import InputError
from .image_encoder import ImageEncoderViT

#: VSGNet ``vit`` names served by SAM encoders (``sam_tiny``: the test stand-in).
NAMES = ("sam_vit_b", "sam_vit_l", "sam_vit_h", "sam_tiny")


@dataclass(frozen=True)
class SamFeatureConfig:
    name: str
    embed_dim: int = 256
    patch_size: int = 16


class SamFeatures(nn.Module):
    def __init__(self, encoder: ImageEncoderViT, name: str) -> None:
        super().__init__()
        self.image_encoder = encoder
        self.config = SamFeatureConfig(name)

    def forward_layers(self, x: torch.Tensor, layers: Sequence[int]) -> List[torch.Tensor]:
        if tuple(layers) != (-1,):
            raise InputError("a SAM encoder gives one feature map (its image embedding): use "
                             "vit_layers [-1]")
        return [self.image_encoder(x)]


def sam_foundation(name: str, weights: Optional[str | Path], layers: Sequence[int], seed: int,
                   fingerprint: Optional[str] = None):
    """A :class:`FrozenViT` over SAM's encoder: the checkpoint's (checked against the
    ``fingerprint`` the model was trained with), or random from ``seed``."""
    from .checkpoint import load_sam
    from ..vit import FrozenViT, weights_fingerprint
    from . import build_sam
    if name not in NAMES:
        raise InputError(f"unknown SAM encoder '{name}'; use one of {', '.join(NAMES)}")
    if weights is None:
        sam = build_sam(name[len("sam_"):], seed=seed)
        return FrozenViT(SamFeatures(sam.image_encoder, name), layers,
                         fingerprint=f"random:{name}:{int(seed)}")
    if fingerprint and weights_fingerprint(weights) != fingerprint:
        raise InputError(f"SAM weights {weights} differ from those the model was trained with "
                         f"(fingerprint {fingerprint}); give the original file")
    sam = load_sam(weights, need_decoder=False)
    if f"sam_{sam.config.name}" != name:
        raise InputError(f"{weights} is a SAM {sam.config.name} checkpoint, not {name}")
    return FrozenViT(SamFeatures(sam.image_encoder, name), layers, source=str(weights),
                     fingerprint=weights_fingerprint(weights))
