"""Recognise a checkpoint's publisher layout from its key names (never from the file name).

Known layouts (the key names and shapes of the projects' own code):

``resnet``   torchvision ``resnet18/34/50/101`` and timm ``resnet*`` (the same names):
             ``conv1.weight``, ``bn1.{weight,bias,running_mean,running_var}``,
             ``layer{1-4}.{i}.conv{1-3}.weight``, ``….bn{1-3}.*``, ``….downsample.{0,1}.*``,
             ``fc.{weight,bias}``.
``vit_npz``  Google ViT / hybrid ``R50+ViT-B_16.npz`` (TransUNet's ImageNet-21k file):
             ``conv_root/kernel``, ``gn_root/{scale,bias}``,
             ``block{S}/unit{U}/{conv1..3,gn1..3,conv_proj,gn_proj}/…``, ``embedding/kernel``,
             ``Transformer/encoderblock_{i}/…``, ``Transformer/posembed_input/pos_embedding``.
``dinov2``   facebookresearch DINOv2 ViT-S/B/L/g-14 (``cls_token``, ``pos_embed``,
             ``patch_embed.proj.weight``, ``blocks.{i}.attn.qkv.weight``, ``blocks.{i}.ls1.gamma``).
``sam``      Segment Anything ``sam_vit_{b,l,h}`` (``image_encoder.…``, ``prompt_encoder.…``,
             ``mask_decoder.…``; an image-encoder-only file has the ``image_encoder.`` names
             without the prefix).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

from ..jobs import ModelFileError

#: Layout name → what a user would call the file.
KNOWN: Dict[str, str] = {
    "resnet": "ResNet ImageNet checkpoint (torchvision or timm layout, e.g. resnet50-0676ba61.pth)",
    "vit_npz": "Google ViT / TransUNet R50+ViT-B_16.npz (Flax layout)",
    "dinov2": "DINOv2 ViT-S/B/L/g-14 (facebookresearch layout, e.g. dinov2_vitb14_pretrain.pth)",
    "sam": "Segment Anything ViT-B/L/H (e.g. sam_vit_b_01ec64.pth)",
}

#: Input normalisation each layout's weights were trained with (RGB in 0..1).
NORMALISATION: Dict[str, str] = {"resnet": "imagenet", "vit_npz": "inception",
                                 "dinov2": "imagenet", "sam": "imagenet"}
NORMALISATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                  "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def detect(keys: Iterable[str]) -> Optional[str]:
    """The layout name whose signature keys are all present, or None."""
    k = set(keys)
    if {"conv_root/kernel", "gn_root/scale"} <= k or \
            any(x.startswith("Transformer/encoderblock_") for x in k):
        return "vit_npz"
    if "image_encoder.patch_embed.proj.weight" in k or \
            {"patch_embed.proj.weight", "neck.0.weight", "blocks.0.attn.rel_pos_h"} <= k:
        return "sam"
    if {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= k and \
            any(x.startswith("blocks.") and x.endswith(".attn.qkv.weight") for x in k):
        return "dinov2"
    if {"conv1.weight", "bn1.weight", "layer1.0.conv1.weight"} <= k:
        return "resnet"
    return None


def known_sentence() -> str:
    """The known layouts as one clause, for error messages."""
    return "; ".join(KNOWN.values())


def require(keys: Iterable[str], source: str) -> str:
    """:func:`detect` or a :class:`ModelFileError` that lists the known layouts."""
    keys = list(keys)
    found = detect(keys)
    if found is None:
        sample = ", ".join(sorted(keys)[:4])
        raise ModelFileError(f"{source} matches no known checkpoint layout (first keys: "
                             f"{sample}); known layouts: {known_sentence()}. Give one of those "
                             f"files as published, or a .rsmodel with train --init")
    return found


#: Normalisation stored in the card when the backbone asks for it and the data are 8-bit.
_SCALE = {"uint8": 255.0}


def pretrained_statistics(mean: List[float], std: List[float], dtype: str,
                          normalisation: str) -> tuple[List[float], List[float], bool]:
    """Band mean/std (raster units) for a backbone trained with ``normalisation`` on 0..1 RGB:
    the first three bands take its values, others keep the data statistics.  Only 8-bit data
    have a known 0..1 scale; other types keep the data statistics (``False`` returned)."""
    scale = _SCALE.get(dtype)
    if scale is None or normalisation not in NORMALISATIONS:
        return mean, std, False
    m, s = NORMALISATIONS[normalisation]
    if len(mean) < 3:                        # grey: the mean of the RGB statistics
        m, s = (sum(m) / 3,) * len(mean), (sum(s) / 3,) * len(mean)
    new_mean = [scale * v for v in m[:len(mean)]] + list(mean[3:])
    new_std = [scale * v for v in s[:len(std)]] + list(std[3:])
    return new_mean, new_std, True
