"""VSGNet's small building blocks: channel LayerNorm for maps, stochastic depth, layer scale, the
2-conv stem and the FE blocks' conv-MLP.
"""
from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a B×C×H×W tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with p = 0)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (channels-last input)."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:     # channels-last
        return x * self.gamma


def stem(cin: int, cout: int) -> nn.Sequential:
    """3×3 s2 → C/2, BN, GELU, 3×3 s2 → C, BN (H/4)."""
    return nn.Sequential(nn.Conv2d(cin, cout // 2, 3, 2, 1), nn.BatchNorm2d(cout // 2), nn.GELU(),
                         nn.Conv2d(cout // 2, cout, 3, 2, 1), nn.BatchNorm2d(cout))


class ConvMlp(nn.Module):
    """LN → Linear C→rC → (+ depthwise 3×3 positional conv) → GELU → Linear rC→C (channels-last)."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.pos = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(self.norm(x))
        h = h + self.pos(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(self.act(h))
