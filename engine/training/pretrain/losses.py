"""The GLCNet contrastive objective: NT-Xent, the global style and local matching heads."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PROJ_DIM = 64


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent of N positive pairs (z1[i], z2[i]), masks built for this N.

    Cosine similarities / τ; each of the 2N vectors is classified against all 2N−1 others
    (itself excluded, its positive included), mean over the 2N anchors.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    target = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(sim.masked_fill(eye, float("-inf")), target)


def style_vector(deep: torch.Tensor) -> torch.Tensor:
    """[channel mean, channel variance over positions] of B×C×h×w features → B×2C."""
    flat = deep.float().flatten(2)
    return torch.cat([flat.mean(2), flat.var(2, unbiased=False)], dim=1)


def roi_max_pool(features: torch.Tensor, batch_index: torch.Tensor, centres: torch.Tensor,
                 patch_size: int) -> torch.Tensor:
    """RoIPool (scale 1, output ``patch_size``²) of boxes of ``patch_size`` centred on
    ``centres`` (N×2 row/col) in ``features[batch_index]`` → N×C×patch_size×patch_size.

    As torchvision rounds the corners and counts them in, each box spans ``patch_size + 1``
    pixels starting at ``centre − patch_size // 2``; the bins are those of adaptive max pooling.
    """
    r = patch_size + 1
    steps = torch.arange(r, device=features.device)
    top = (centres[:, 0] - patch_size // 2)[:, None] + steps
    left = (centres[:, 1] - patch_size // 2)[:, None] + steps
    crops = features[batch_index[:, None, None], :, top[:, :, None], left[:, None, :]]
    return F.adaptive_max_pool2d(crops.permute(0, 3, 1, 2), patch_size)


def mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """Projection head: Linear(cin→hidden) → ReLU → Linear(hidden→cout)."""
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, cout))


class GLCObjective(nn.Module):
    """The network plus the two projection heads; ``forward`` returns [total, global, local]."""

    def __init__(self, network: nn.Module, deep_channels: int, embedding: int, patch_size: int,
                 lam: float = 0.5, temperature: float = 0.5) -> None:
        super().__init__()
        self.network = network
        self.global_head = mlp(2 * deep_channels, deep_channels, PROJ_DIM)
        self.local_head = mlp(embedding, embedding, PROJ_DIM)
        self.patch_size, self.lam, self.temperature = patch_size, lam, temperature

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, c1: torch.Tensor,
                c2: torch.Tensor) -> torch.Tensor:
        b, p = c1.shape[:2]
        deep, emb = self.network.ssl_features(torch.cat([v1, v2]))
        z = self.global_head(style_vector(deep))
        global_loss = nt_xent(z[:b], z[b:], self.temperature)
        owner = torch.arange(b, device=v1.device).repeat_interleave(p)
        pooled = [roi_max_pool(emb, owner + off, c.reshape(-1, 2), self.patch_size).mean((2, 3))
                  for off, c in ((0, c1), (b, c2))]
        local = self.local_head(torch.cat(pooled).float())
        local_loss = nt_xent(local[:b * p], local[b * p:], self.temperature)
        total = self.lam * global_loss + (1 - self.lam) * local_loss
        return torch.stack([total, global_loss, local_loss])
