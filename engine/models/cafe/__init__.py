"""CaFE: category-wise fusion and enhancement learning for image + DSM segmentation.

Zheng, He, Wang, Li, Luo, IEEE TGRS 60 (2022), doi 10.1109/TGRS.2022.3225843; re-implemented from
the written specification in ``docs/seed-models.md`` §2 (no seed code used: the authors' code is
GPL-3.0 and was not consulted).

Multimodal semantic segmentation: an optical image (input group ``image``, 3–4 bands) and a height
raster (input group ``aux``: DSM or nDSM, 1+ bands, warped onto the image grid by the data layer).
Two ResNet encoders, one per modality, RedNet-style: at the stem (1/2) and after each of the four
stages (1/4 … 1/32) the two streams are fused; the plain sum R_i + D_i feeds the next stage of the
image stream while the DSM stream goes on alone.  The fused features of the five levels go through
1×1 "agent" projections into a RedNet decoder (transposed-convolution residual blocks) with pyramid
loss supervision (PLS: a 1×1 classifier after each of the four up-stages plus the final output).

This package re-exports the public names of its modules, which import one way:
:mod:`.resnet` (the streams) ← :mod:`.decoder` (RedNet decoder + PLS heads); :mod:`.fusion`
(CA and CFF of one level); these three ← :mod:`.model` (the network, its registry entry, sizes
and ``RECIPE``); :mod:`.loss` (``cafe_loss``) stands apart.  Parameter names are those of the
network's attributes, whichever module a part is defined in.
"""
from __future__ import annotations

from ..losses import IGNORE
from .decoder import Decoder, TransBasicBlock
from .fusion import CFF_MODES, ECA, CategoryFusion, eca_kernel
from .loss import cafe_loss
from .model import CEL_MODES, FULL_PARAMS, RECIPE, SPEC_PARAMS, TINY, CaFE, build_cafe
from ..resnet_blocks import BasicBlock, Bottleneck, conv3x3
from .resnet import DEPTHS, ResNetStream

__all__ = ["IGNORE", "FULL_PARAMS", "SPEC_PARAMS", "TINY", "RECIPE", "DEPTHS", "CFF_MODES",
           "CEL_MODES", "CaFE", "build_cafe", "cafe_loss", "eca_kernel", "ECA", "CategoryFusion",
           "BasicBlock", "Bottleneck", "ResNetStream", "conv3x3", "TransBasicBlock", "Decoder"]
