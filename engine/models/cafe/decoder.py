"""CaFE's RedNet decoder: 1×1 "agent" projections of the five fused levels, transposed-convolution
residual up-stages and the pyramid loss supervision (PLS) side heads.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from ..resnet_blocks import conv3x3


class TransBasicBlock(nn.Module):
    """Decoder residual block: conv3×3-BN-ReLU, then conv3×3 (or transposed 3×3 s2 when upsampling)
    -BN; the shortcut is a transposed 2×2 s2 conv-BN when upsampling; add, ReLU."""

    def __init__(self, inplanes: int, planes: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, inplanes)
        self.bn1 = nn.BatchNorm2d(inplanes)
        if upsample:
            self.conv2 = nn.ConvTranspose2d(inplanes, planes, 3, 2, 1, output_padding=1, bias=False)
            self.shortcut = nn.Sequential(nn.ConvTranspose2d(inplanes, planes, 2, 2, bias=False),
                                          nn.BatchNorm2d(planes))
        else:
            if inplanes != planes:
                raise ValueError("a non-upsampling block keeps its width")
            self.conv2 = conv3x3(inplanes, planes)
            self.shortcut = None
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + identity)


def _up_stage(inplanes: int, planes: int, blocks: int) -> nn.Sequential:
    """``blocks − 1`` width-keeping blocks, then one ×2 upsampling block inplanes→planes."""
    if blocks < 1:
        raise ValueError("every decoder up-stage needs at least one block")
    return nn.Sequential(*[TransBasicBlock(inplanes, inplanes) for _ in range(blocks - 1)],
                         TransBasicBlock(inplanes, planes, upsample=True))


def _agent(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Decoder(nn.Module):
    """RedNet decoder with PLS heads.  ``forward(levels, sides)`` → (main logits, [side logits])."""

    def __init__(self, enc_channels: Sequence[int], width: int, num_classes: int,
                 blocks: Sequence[int], final_blocks: int = 3) -> None:
        super().__init__()
        dec = [width, width, 2 * width, 4 * width, 8 * width]
        self.agents = nn.ModuleList(_agent(c, o) for c, o in zip(enc_channels, dec))
        self.ups = nn.ModuleList(_up_stage(dec[4 - j], dec[3 - j], n) for j, n in enumerate(blocks))
        self.sides = nn.ModuleList(nn.Conv2d(dec[3 - j], num_classes, 1) for j in range(4))
        self.final_conv = nn.Sequential(*[TransBasicBlock(width, width)
                                          for _ in range(final_blocks)])
        self.final_deconv = nn.ConvTranspose2d(width, num_classes, 2, 2)

    def forward(self, levels: Sequence[torch.Tensor], sides: bool = False
                ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        x = self.agents[4](levels[4])
        out: List[torch.Tensor] = []
        for j, (up, head) in enumerate(zip(self.ups, self.sides)):
            x = up(x)
            if sides:
                out.append(head(x))
            x = x + self.agents[3 - j](levels[3 - j])
        return self.final_deconv(self.final_conv(x)), out
