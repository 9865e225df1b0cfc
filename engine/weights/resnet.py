"""torchvision / timm ResNet checkpoints → the zoo's ResNet encoders.

CaFE's two streams (``rgb.``, ``dsm.``) and GLCNet's ``backbone.`` use torchvision's names
unchanged, so the mapping is a prefix.  SRCBTFusion-Net's trunk is BiT-style (weight-standardised
convolutions + GroupNorm, 3 stages): its convolutions take the ResNet's convolution weights and
its GroupNorm affine parameters the BatchNorm affine parameters; BatchNorm running statistics
have no GroupNorm counterpart and layer4 no trunk stage, so they are reported unexpected.  That
is a partial initialisation — the R50+ViT-B_16 ``.npz`` is this trunk's own pre-training.
"""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

import torch

from .transfer import Pairs


def prefixed(state: Dict[str, torch.Tensor], prefix: str) -> Tuple[Pairs, List[str]]:
    """Every tensor but the classifier (``fc.*``) under ``prefix``."""
    pairs: Pairs = {}
    unused: List[str] = []
    for key, value in state.items():
        if key.startswith("fc."):
            unused.append(key)
        else:
            pairs[prefix + key] = (key, value)
    return pairs, unused


_UNIT = re.compile(r"^layer([1-3])\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.(\w+)$")


def to_bit_trunk(state: Dict[str, torch.Tensor], prefix: str = "trunk.") -> Tuple[Pairs, List[str]]:
    """torchvision names → SRCBTFusion-Net trunk names (convolutions and norm affines only)."""
    pairs: Pairs = {}
    unused: List[str] = []
    for key, value in state.items():
        name = None
        if key == "conv1.weight":
            name = "root_conv.weight"
        elif key in ("bn1.weight", "bn1.bias"):
            name = "root_gn." + key.split(".")[1]
        else:
            m = _UNIT.match(key)
            if m and m.group(4) in ("weight", "bias"):
                layer = {"downsample.0": "downsample", "downsample.1": "gn_proj"}.get(
                    m.group(3), m.group(3).replace("bn", "gn"))
                name = f"stages.{int(m.group(1)) - 1}.{m.group(2)}.{layer}.{m.group(4)}"
        if name is None:
            unused.append(key)
        else:
            pairs[prefix + name] = (key, value)
    return pairs, unused
