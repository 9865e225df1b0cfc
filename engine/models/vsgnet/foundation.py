"""VSGNet's frozen foundation encoders: finding their weights, loading them (DINOv2 or SAM) or
seeding a random stand-in, and the trainable adapter from their patch maps to stem features.

A weights file is looked up at its recorded path, then by file name in the folder(s) of
``RS_SEG_FOUNDATION_DIR``; a missing one is an InputError naming the file and the fix, and one
whose fingerprint differs from the one the model was trained with is refused.  Without weights
the ViT is randomly initialised from a seed (deterministic, so a saved model reloads with the
same features) and a one-time warning says the structure guidance is then only a random
projection.

Reading chosen (where §4 is silent, ambiguous, or the release is buggy):

* **Token → map** ([reading] of §4.2.1): the normalised patch tokens are laid out as their true
  37×37 grid, projected by a 1×1 conv (+BN) straight to C1 and resized bilinearly to the stem
  resolution H/4 (``vit_branch="proj"``).  ``vit_branch="release"`` keeps the release's
  behaviour (the token memory reinterpreted as an (8·gh)×(8·gw)×D/64 image — 296²×24 for ViT-g
  at 518 — resized to H×W and reduced by a 2-conv stem to C1); spatially unfaithful, for
  comparison only.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...jobs import InputError
from ..vit import FrozenViT, load_foundation, random_foundation, weights_fingerprint
from .blocks import stem

#: Environment variable: folders (os.pathsep-separated) searched for missing foundation weights.
FOUNDATION_DIR_ENV = "RS_SEG_FOUNDATION_DIR"

# The random-encoder warning is given once per process, not once per model built.
_RANDOM_WARNED = False


def resolve_weights(path: str | os.PathLike) -> Path:
    """``path`` if it exists, else the same file name in a ``RS_SEG_FOUNDATION_DIR`` folder."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    for folder in filter(None, os.environ.get(FOUNDATION_DIR_ENV, "").split(os.pathsep)):
        candidate = Path(folder).expanduser() / p.name
        if candidate.is_file():
            return candidate
    raise InputError(
        f"foundation weights {p} not found. This VSGNet model uses a frozen DINOv2 encoder that "
        f"is not stored in the model file (to keep it small); put the same weights file at "
        f"{p}, or into a folder listed in the {FOUNDATION_DIR_ENV} environment variable. "
        f"Nothing is downloaded")


def frozen_encoder(config: str, weights: Optional[str], layers: Sequence[int], seed: int,
                   fingerprint: Optional[str]) -> FrozenViT:
    """The frozen encoder ``config`` (a DINOv2 ViT name or ``sam_*``) reading ``layers``: from
    ``weights`` (checked against ``fingerprint`` when given), else random from ``seed``."""
    global _RANDOM_WARNED
    if config.startswith("sam_"):         # SAM's image encoder instead of a DINOv2 ViT
        from ..sam.features import sam_foundation
        return sam_foundation(config, resolve_weights(weights) if weights else None, layers,
                              seed, fingerprint)
    if weights:
        path = resolve_weights(weights)
        if fingerprint and weights_fingerprint(path) != fingerprint:
            raise InputError(f"foundation weights {path} differ from those the model was trained "
                             f"with (fingerprint {fingerprint}); give the original file")
        return load_foundation(path, config, layers)
    if not _RANDOM_WARNED:
        _RANDOM_WARNED = True
        warnings.warn(f"VSGNet: no foundation weights given (vit_weights); the frozen {config} "
                      f"encoder is randomly initialised (seed {seed}), so the structure "
                      f"guidance is a random projection. Pass vit_weights=<local DINOv2 .pth> "
                      f"for the real model", RuntimeWarning, stacklevel=3)
    return random_foundation(config, seed, layers)


class ViTBranch(nn.Module):
    """Frozen-ViT patch maps → C1 features at the stem resolution (trainable adapter)."""

    def __init__(self, vit_dim: int, n_layers: int, out: int, mode: str = "proj") -> None:
        super().__init__()
        self.mode = mode
        if mode == "proj":
            self.proj = nn.Sequential(nn.Conv2d(vit_dim * n_layers, out, 1), nn.BatchNorm2d(out))
        elif mode == "release":
            if vit_dim % 64:
                raise ValueError("vit_branch='release' needs a ViT width divisible by 64")
            self.proj = stem(vit_dim // 64 * n_layers, out)
        else:
            raise InputError(f"vit_branch must be 'proj' or 'release', not {mode!r}")

    def forward(self, maps: Sequence[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
        if self.mode == "proj":
            y = self.proj(torch.cat(list(maps), dim=1))
            return F.interpolate(y, size=(size[0] // 4, size[1] // 4), mode="bilinear",
                                 align_corners=False)
        images = []
        for m in maps:     # release quirk: B×N×D token memory read as an (8gh)×(8gw)×(D/64) image
            b, d, gh, gw = m.shape
            tokens = m.flatten(2).transpose(1, 2).contiguous()
            img = tokens.reshape(b, 8 * gh, 8 * gw, d // 64).permute(0, 3, 1, 2)
            images.append(F.interpolate(img, size=size, mode="bilinear", align_corners=False))
        return self.proj(torch.cat(images, dim=1))
