"""Fit a pre-trained first convolution (trained on RGB) to another number of input bands."""
from __future__ import annotations

import torch

from ..jobs import InputError


def adapt_first_conv(weight: torch.Tensor, bands: int, mode: str = "rgb") -> torch.Tensor:
    """``weight`` (out × in × k × k, in = 3 for RGB) re-shaped to ``bands`` input channels.

    ``mode="rgb"``: more bands keep the RGB filters unchanged and give each extra band the mean
    RGB filter; fewer bands give every band the RGB sum divided by ``bands`` (so a grey image
    repeated over the bands responds as the same grey in RGB did).  ``mode="mean"``: every band
    gets the mean RGB filter (CaFE's initialisation of the DSM stream).
    """
    if bands < 1:
        raise InputError(f"cannot adapt the first convolution to {bands} bands; the input needs "
                         f"at least one band")
    cin = weight.shape[1]
    mean = weight.mean(1, keepdim=True)
    if mode == "mean":
        return mean.expand(-1, bands, -1, -1).clone()
    if bands == cin:
        return weight.clone()
    if bands > cin:
        return torch.cat([weight, mean.expand(-1, bands - cin, -1, -1)], dim=1)
    return (weight.sum(1, keepdim=True) / bands).expand(-1, bands, -1, -1).clone()


def describe(cin: int, bands: int, mode: str) -> str:
    """Short description of an adaptation for the load report."""
    if mode == "mean":
        return f"{cin}→{bands} bands (mean RGB filter)"
    how = "RGB copied, extra bands = mean RGB filter" if bands > cin else "RGB sum / bands"
    return f"{cin}→{bands} bands ({how})"
