"""Classical baseline: per-pixel minimum-distance classifier on normalised bands.

Class means are fitted in closed form from the training windows (no gradient descent) and kept as
a buffer, so the classifier is saved, loaded and run exactly like a deep model: it is the floor
every network must beat.
"""
from __future__ import annotations

import torch
from torch import nn

from . import register


class MinimumDistance(nn.Module):
    """Logits = −squared Euclidean distance of each pixel to each class mean."""

    closed_form = True

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("means", torch.zeros(num_classes, in_channels))
        self.register_buffer("sums", torch.zeros(num_classes, in_channels, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(num_classes, dtype=torch.float64))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.float()
        d = (x.pow(2).sum(1, keepdim=True) - 2 * torch.einsum("bchw,kc->bkhw", x, self.means)
             + self.means.pow(2).sum(1)[None, :, None, None])
        return -d

    @torch.no_grad()
    def accumulate(self, image: torch.Tensor, target: torch.Tensor, ignore: int) -> None:
        """Add the pixels of a batch to the per-class sums (``target`` holds class indexes)."""
        k = self.means.shape[0]
        keep = target != ignore
        px = image.permute(0, 2, 3, 1)[keep].double()
        cls = target[keep]
        self.sums.index_add_(0, cls, px)
        self.counts += torch.bincount(cls, minlength=k).double()[:k]

    @torch.no_grad()
    def finalise(self) -> None:
        """Class means from the accumulated sums (classes never seen keep a far-away mean)."""
        seen = self.counts > 0
        self.means.copy_(torch.where(seen[:, None], self.sums / self.counts.clamp_min(1)[:, None],
                                     torch.full_like(self.sums, 1e6)).float())


@register("mindist", task="segmentation",
          description="classical minimum-distance classifier (no GPU, closed-form fit)",
          input_multiple=1)
def build_mindist(in_channels: int, num_classes: int) -> MinimumDistance:
    return MinimumDistance(in_channels, num_classes)
