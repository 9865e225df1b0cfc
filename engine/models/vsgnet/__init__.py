"""VSGNet: vision-foundation-model structure-guided multimodal fusion network.

Pan, Fan, Tjahjadi, Guan, Fu, Ye, Wang, IEEE JSTARS 18 (2025) 9409–9431; re-implemented from the
written specification ``docs/seed-models.md`` §4 (no seed code used; the release's listed bugs are
replaced by the intended design).

Semantic segmentation of an image (``image=``, RGB first) plus a "vision structure" modality
(``aux=``: a training-free edge map, a DSM/depth map or a SAM mask map written by
``python -m engine derive``).  Frozen DINOv2 features guide two convolutional streams that are fused
in four FE/FR stages and decoded by an all-MLP head.

This package re-exports the public names of its modules, which import one way:
:mod:`.blocks` (norms, drop path, layer scale, stem, conv-MLP) ← :mod:`.fusion` (FE blocks, FR,
stages) and :mod:`.foundation` (frozen encoders and their adapter) ← :mod:`.model` (the network,
its registry entry, sizes, loss, parameter groups and ``RECIPE``).  Parameter names are those of
the network's attributes, whichever module a part is defined in.
"""
from __future__ import annotations

from .blocks import ConvMlp, DropPath, LayerNorm2d, LayerScale, stem
from .foundation import FOUNDATION_DIR_ENV, ViTBranch, frozen_encoder, resolve_weights
from .fusion import FEBlock, FRModule, Stage
from .model import (FULL_PARAMS, RECIPE, STRUCTURE_MEAN, STRUCTURE_STD, TINY, MLPDecoder, VSGNet,
                    build_vsgnet, frozen_parameters, param_groups, vsgnet_loss)

__all__ = ["FULL_PARAMS", "TINY", "STRUCTURE_MEAN", "STRUCTURE_STD", "FOUNDATION_DIR_ENV",
           "RECIPE", "VSGNet", "build_vsgnet", "vsgnet_loss", "param_groups", "frozen_parameters",
           "resolve_weights", "frozen_encoder", "ViTBranch", "MLPDecoder", "Stage", "FEBlock",
           "FRModule", "LayerNorm2d", "DropPath", "LayerScale", "stem", "ConvMlp"]
