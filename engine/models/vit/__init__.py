"""A plain Vision Transformer with the parameter layout of the public DINOv2 checkpoints, and a
frozen, local-file-only feature extractor built on it (``load_foundation``).

Written from general knowledge of the DINOv2 architecture (Oquab et al., 2023); no DINOv2 code is
used.  The point of matching the layout is that the released ``dinov2_vit*14*_pretrain.pth`` files
load with a strict name check and no renaming.

This package re-exports the public names of its modules, which import one way:
:mod:`.config` (configurations and the state-dict layout) ← :mod:`.blocks` (the layers) ←
:mod:`.model` (the ViT) ← :mod:`.frozen` (the frozen extractor and its feature cache) ←
:mod:`.loading` (checkpoint files → frozen ViTs).
"""
from __future__ import annotations

from .blocks import Attention, Block, LayerScale, Mlp, PatchEmbed, SwiGLU
from .config import (CONFIG_NAMES, IMAGENET_MEAN, IMAGENET_STD, PATCH, ViTConfig, expected_shapes,
                     guess_config, parameter_count, vit_config)
from .frozen import FeatureCache, FrozenViT
from .loading import (check_state_dict, load_foundation, random_foundation, read_state_dict,
                      weights_fingerprint)
from .model import ViT, build_vit, to_patch_multiple

__all__ = ["ViT", "ViTConfig", "FrozenViT", "FeatureCache", "vit_config", "expected_shapes",
           "load_foundation", "random_foundation", "build_vit", "check_state_dict",
           "read_state_dict", "weights_fingerprint", "to_patch_multiple", "parameter_count",
           "guess_config", "CONFIG_NAMES", "IMAGENET_MEAN", "IMAGENET_STD", "PATCH", "PatchEmbed",
           "Attention", "LayerScale", "Mlp", "SwiGLU", "Block"]
