"""Google ViT / TransUNet ``R50+ViT-B_16.npz`` (Flax layout) → SRCBTFusion-Net.

The published file (ImageNet-21k, used by TransUNet's ``VisionTransformer.load_from``) holds::

    conv_root/kernel [7,7,3,64]  gn_root/{scale,bias} [64]
    block{1-3}/unit{U}/{conv1,conv2,conv3,conv_proj}/kernel [k,k,in,out] (HWIO)
    block{1-3}/unit{U}/{gn1,gn2,gn3,gn_proj}/{scale,bias} [C]     (units 3 / 4 / 9)
    embedding/kernel [1,1,1024,768]  embedding/bias [768]          (hybrid patch embedding)
    cls [1,1,768]   Transformer/posembed_input/pos_embedding [1,1+14·14,768]
    Transformer/encoderblock_{0-11}/LayerNorm_{0,2}/{scale,bias} [768]
    Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/{query,key,value}/kernel
        [768,12,64], …/bias [12,64];  …/out/kernel [12,64,768], …/out/bias [768]
    Transformer/encoderblock_{i}/MlpBlock_3/Dense_{0,1}/{kernel [in,out], bias [out]}
    Transformer/encoder_norm/{scale,bias} [768]   head/… pre_logits/… (classifier)

Names map as TransUNet's loader reads them; kernels are transposed to PyTorch's layout
(HWIO → OIHW, (in, out) → (out, in), heads merged).  Encoder blocks beyond the model's
``vit_depth`` (8 of 12) and the classifier are reported unexpected; the class-token position is
dropped and the 14×14 table resized bicubically to the model's grid.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch

from .transfer import Pairs

POSITION = "transformer.position_embeddings"


def our_name(key: str) -> Optional[str]:
    """Our SRCBTFusion-Net parameter name for an ``.npz`` key (None: no counterpart)."""
    parts = key.split("/")
    if key == "Transformer/posembed_input/pos_embedding":
        return POSITION
    leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}.get(parts[-1])
    if leaf is None:
        return None
    if parts[0] in ("conv_root", "gn_root") and len(parts) == 2:
        return f"trunk.root_{parts[0][:-5]}.{leaf}"
    if parts[0].startswith("block") and len(parts) == 4 and parts[1].startswith("unit"):
        stage, unit = int(parts[0][5:]) - 1, int(parts[1][4:]) - 1
        layer = {"conv_proj": "downsample"}.get(parts[2], parts[2])
        return f"trunk.stages.{stage}.{unit}.{layer}.{leaf}"
    if parts[0] == "embedding":
        return f"transformer.patch_embeddings.{leaf}"
    if parts[0] != "Transformer" or len(parts) < 3:
        return None
    if parts[1] == "encoder_norm":
        return f"transformer.encoder_norm.{leaf}"
    if parts[1].startswith("encoderblock_"):
        i = int(parts[1].split("_")[1])
        sub = {"LayerNorm_0": "attention_norm", "LayerNorm_2": "ffn_norm",
               "MlpBlock_3/Dense_0": "ffn.fc1", "MlpBlock_3/Dense_1": "ffn.fc2"}
        mid = "/".join(parts[2:-1])
        if mid in sub:
            return f"transformer.blocks.{i}.{sub[mid]}.{leaf}"
        if parts[2] == "MultiHeadDotProductAttention_1" and len(parts) == 5:
            return f"transformer.blocks.{i}.attn.{parts[3]}.{leaf}"
    return None


def torch_layout(key: str, value: torch.Tensor) -> torch.Tensor:
    """A Flax array in PyTorch layout (HWIO → OIHW, (in, out) → (out, in), heads merged)."""
    t = value.float()
    leaf = key.rsplit("/", 1)[-1]
    if key.endswith("pos_embedding"):
        return t
    if "MultiHeadDotProductAttention_1" in key:
        if leaf == "kernel":
            if key.split("/")[-2] == "out":                       # heads × dh × D
                return t.reshape(-1, t.shape[-1]).t().contiguous()
            return t.reshape(t.shape[0], -1).t().contiguous()     # D × heads × dh
        return t.reshape(-1)
    if leaf == "kernel" and t.ndim == 4:
        return t.permute(3, 2, 0, 1).contiguous()
    if leaf == "kernel" and t.ndim == 2:
        return t.t().contiguous()
    return t.reshape(-1) if leaf in ("scale", "bias") else t


def srcbtfusion_pairs(state: Dict[str, torch.Tensor]) -> Tuple[Pairs, List[str]]:
    """``.npz`` arrays → our names and layouts, plus the keys without a counterpart."""
    pairs: Pairs = {}
    unused: List[str] = []
    for key, value in state.items():
        name = our_name(key)
        if name is None:
            unused.append(key)
        else:
            pairs[name] = (key, torch_layout(key, value))
    return pairs, unused


def fit_position(pos: torch.Tensor, like: torch.Tensor) -> Optional[torch.Tensor]:
    """A 1 × N × D position table (optionally with a class token first) resized to ``like``'s
    square grid, or None when the shapes cannot correspond."""
    from ..models.srcbtfusion import resize_position_embedding
    if pos.ndim != 3 or like.ndim != 3 or pos.shape[-1] != like.shape[-1]:
        return None
    n = pos.shape[1]
    if math.isqrt(n) ** 2 != n:                       # drop a class token
        pos, n = pos[:, 1:], n - 1
    side, target = math.isqrt(n), math.isqrt(like.shape[1])
    if side * side != n or target * target != like.shape[1]:
        return None
    return resize_position_embedding(pos.float(), side, side, target, target)
