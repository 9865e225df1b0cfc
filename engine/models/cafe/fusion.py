"""CaFE's fusion of the image and DSM features R_i, D_i at one level: the inference path's ECA
channel attention (CA) and the training path's category-wise feature fusion (CFF).

Our **readings** of the paper's contribution, each a constructor switch of
:class:`engine.models.cafe.model.CaFE`:

* **Inference (CA)**: X_i = R_i + D_i, then ECA channel attention
  F_i'' = X_i ⊙ σ(conv1d_k(GAP(X_i))) with k = odd(⌊(log2 C + 1)/2⌋).  Needs no labels;
  deterministic.
* **Training (CFF)**, label-driven, given the one-hot masks M_c of the categories at the level:
  ``cff_mode="eca"`` (default): one ECA kernel *per category* whose channel descriptor is the
  average of X_i over the category's own region, g_c(X) = X ⊙ σ(conv1d_c(GAP_{M_c}(X)));
  F_i' = Σ_c M_c ⊙ g_c(X_i).  ``cff_mode="modal"``: per-category, per-channel modality weights,
  g_c = α_c ⊙ R_i + β_c ⊙ D_i (α, β initialised to 1, i.e. the plain sum).  Pixels without a label
  (IGNORE) use the CA fusion.  Cost: K·k (eca) or 2·K·C (modal) parameters per level.
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: The ``cff_mode`` choices of :class:`CategoryFusion`.
CFF_MODES = ("eca", "modal")


def eca_kernel(channels: int) -> int:
    """ECA's adaptive kernel: t = ⌊(log2 C + 1) / 2⌋, raised to the next odd number if even."""
    k = max(int((math.log2(channels) + 1) // 2), 1)
    return k if k % 2 else k + 1


class ECA(nn.Module):
    """ECA channel attention (the CA of the inference path): X ⊙ σ(conv1d_k(GAP(X)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = eca_kernel(channels)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights B×C in (0, 1)."""
        return torch.sigmoid(self.conv(x.mean((2, 3))[:, None]))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, :, None, None]


class CategoryFusion(nn.Module):
    """CFF of one level (training only; our reading, see the module docstring).

    ``forward(r, d, masks, ca)`` with masks B×K×h×w (one-hot or soft; all-zero where unlabelled) and
    ``ca`` the level's inference CA (used where no label is known) returns F' (B×C×h×w).
    """

    def __init__(self, channels: int, num_classes: int, mode: str = "eca") -> None:
        super().__init__()
        if mode not in CFF_MODES:
            raise ValueError(f"cff_mode must be one of {CFF_MODES}, not {mode!r}")
        self.mode = mode
        if mode == "eca":
            k = eca_kernel(channels)
            # one 1-D kernel per category (groups = categories), no bias, as ECA
            self.conv = nn.Conv1d(num_classes, num_classes, k, padding=k // 2,
                                  groups=num_classes, bias=False)
        else:
            self.alpha = nn.Parameter(torch.ones(num_classes, channels))
            self.beta = nn.Parameter(torch.ones(num_classes, channels))

    def forward(self, r: torch.Tensor, d: torch.Tensor, masks: torch.Tensor,
                ca: ECA) -> torch.Tensor:
        x = r + d
        masks = masks.float()
        rest = (1 - masks.sum(1, keepdim=True)).clamp_min(0)       # unlabelled share, B×1×h×w
        unlabelled = rest.to(x.dtype) * ca(x)
        if self.mode == "eca":
            # masked average pool with normalised masks (a weighted mean: no fp16 overflow)
            area = masks.sum((2, 3), keepdim=True).clamp_min(1e-6)  # B×K×1×1, float32
            pooled = torch.einsum("bkhw,bchw->bkc", (masks / area).to(x.dtype), x)
            att = torch.sigmoid(self.conv(pooled))                  # B×K×C, one per category
            return x * torch.einsum("bkhw,bkc->bchw", masks.to(att.dtype), att) + unlabelled
        masks = masks.to(x.dtype)
        a = torch.einsum("bkhw,kc->bchw", masks, self.alpha.to(x.dtype))
        b = torch.einsum("bkhw,kc->bchw", masks, self.beta.to(x.dtype))
        return a * r + b * d + unlabelled
