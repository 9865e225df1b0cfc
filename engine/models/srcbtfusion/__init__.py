"""SRCBTFusion-Net: a CNN + Transformer ("double coding") hybrid for remote-sensing segmentation.

Chen, Yi, Chen, Lin, IEEE TGRS 61 (2023), doi 10.1109/TGRS.2023.3336689; re-implemented from the
written specification in ``docs/seed-models.md`` §1 (no seed code used).

A TransUNet-like network.  A 3-stage ResNet-50-v2 hybrid trunk ("SRCB encoder": weight-standardised
convs + GroupNorm) encodes the image down to H/16; its deepest map feeds both a ViT encoder (8
ViT-B blocks on the H/16 grid) and a semantic-information enhancement module (SIEM) that produces
"EM", a 64-channel map in (0, 1).  The stage-1 map goes through the multipath atrous
self-attention module (MASM) before it becomes a skip.  Two decoder blocks upsample the
transformer output, each first re-weighting its input with EM through a relationship guidance
module (RGM), and the multi-scale feature aggregation module (MFAM) fuses the three decoder
levels into the logits.

This package re-exports the public names of its modules, which import one way:
:mod:`.blocks` (norms, conv units, resize) ← :mod:`.trunk` (SRCB encoder),
:mod:`.transformer` (ViT encoder), :mod:`.modules` (SIEM, MASM, RGM/decoder block, MFAM) ←
:mod:`.model` (the network, its registry entry, sizes and ``RECIPE``); :mod:`.loss` (the
dual-task loss) stands apart.  Parameter names are those of the network's attributes, whichever
module a part is defined in.
"""
from __future__ import annotations

from ..losses import IGNORE
from .blocks import (DropPath, DWSeparable, SafeBatchNorm2d, StdConv2d, conv_bn_act, group_norm,
                     resize)
from .loss import ce_dual_task_loss, dual_task_loss, gradient_magnitude
from .model import (FULL_PARAMS, RECIPE, SPEC_PARAMS, TINY, SRCBTFusionNet,
                    build_srcbtfusion)
from .modules import (DCM, MASM, MFAM, RGM, SIEM, AdaptiveAttention, DecoderBlock,
                      MultiReceptiveField)
from .transformer import Attention, Block, Mlp, Transformer, resize_position_embedding
from .trunk import Bottleneck, ResNetTrunk

__all__ = ["IGNORE", "FULL_PARAMS", "SPEC_PARAMS", "TINY", "RECIPE", "SRCBTFusionNet",
           "build_srcbtfusion", "group_norm", "StdConv2d", "SafeBatchNorm2d", "conv_bn_act",
           "resize", "DropPath", "DWSeparable", "Bottleneck", "ResNetTrunk", "SIEM", "Attention",
           "Mlp", "Block", "Transformer", "resize_position_embedding", "MultiReceptiveField",
           "AdaptiveAttention", "MASM", "RGM", "DecoderBlock", "DCM", "MFAM",
           "gradient_magnitude", "dual_task_loss", "ce_dual_task_loss"]
