"""Segment Anything (Kirillov et al., 2023), written for the engine from the paper and the
published checkpoint layout (no segment-anything or torchvision code): an image encoder run once
per 1024² window, and a light prompt encoder + mask decoder run per click.

``build_sam("vit_b")`` builds a network with random weights; :func:`engine.models.sam.checkpoint.load_sam`
loads a published ``sam_vit_{b,l,h}_*.pth`` (keys ``image_encoder.*``, ``prompt_encoder.*``,
``mask_decoder.*``) with a strict name and shape check.  :mod:`.predictor` does the
pre-processing, the per-window embedding cache and mask selection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ...jobs import InputError
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

#: Pixel statistics SAM normalises 0..255 RGB with (ImageNet's, in 8-bit units).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
IMG_SIZE = 1024


@dataclass(frozen=True)
class SamConfig:
    name: str
    dim: int
    depth: int
    heads: int
    global_blocks: Tuple[int, ...]


CONFIGS: Dict[str, SamConfig] = {
    "vit_b": SamConfig("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamConfig("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamConfig("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    # a stand-in for tests: the same code paths at a fraction of the cost
    "tiny": SamConfig("tiny", 64, 2, 2, (1,)),
}


class Sam(nn.Module):
    """The three SAM parts under their published names."""

    def __init__(self, config: SamConfig, img_size: int = IMG_SIZE) -> None:
        super().__init__()
        self.config, self.img_size = config, img_size
        self.image_encoder = ImageEncoderViT(config.dim, config.depth, config.heads,
                                             config.global_blocks, img_size=img_size)
        self.prompt_encoder = PromptEncoder(grid=img_size // 16, img_size=img_size)
        self.mask_decoder = MaskDecoder()

    @torch.inference_mode()
    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """B×3×S×S normalised, padded images → B×256×S/16×S/16 embeddings (the slow part)."""
        return self.image_encoder(image)

    @torch.inference_mode()
    def decode(self, embedding: torch.Tensor, points: Optional[Tuple[torch.Tensor, torch.Tensor]]
               = None, box: Optional[torch.Tensor] = None, multimask: bool = True,
               image_pe: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """One image embedding (1×256×64×64) and prompts in the 1024 frame → low-resolution mask
        logits (B×M×256×256) and IoU scores (B×M).  ``image_pe``: the embedding's positional
        encoding when the caller keeps it (it depends only on the weights)."""
        sparse, dense = self.prompt_encoder(points, box, None)
        pe = self.prompt_encoder.dense_pe() if image_pe is None else image_pe
        return self.mask_decoder(embedding, pe, sparse, dense, multimask)


def sam_config(name: str) -> SamConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise InputError(f"unknown SAM variant '{name}'; use one of "
                         f"{', '.join(sorted(CONFIGS))}") from None


def build_sam(name: str = "vit_b", img_size: int = IMG_SIZE, seed: Optional[int] = None) -> Sam:
    """A SAM network with random weights (reproducible from ``seed``)."""
    config = sam_config(name)
    if seed is None:
        return Sam(config, img_size).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return Sam(config, img_size).eval()


__all__ = ["Sam", "SamConfig", "CONFIGS", "build_sam", "sam_config", "PIXEL_MEAN", "PIXEL_STD",
           "IMG_SIZE"]
