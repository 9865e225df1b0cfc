"""CaFE's encoder streams: ResNet trunks without the classifier, with torchvision's parameter
names so that ImageNet weights load into both the image and the DSM stream.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from ..resnet_blocks import BasicBlock, Bottleneck, projection

#: ResNet depth → (block kind, blocks per stage).
DEPTHS: Dict[int, Tuple[str, Tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


class ResNetStream(nn.Module):
    """ResNet trunk without the classifier: ``stem`` (7×7 s2 conv-BN-ReLU) and ``layer1..4``.

    ``channels`` = widths of the five levels [stem, layer1, layer2, layer3, layer4].
    """

    def __init__(self, in_channels: int, block: str, layers: Sequence[int], width: int) -> None:
        super().__init__()
        cls = Bottleneck if block == "bottleneck" else BasicBlock
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = width
        self.layer1 = self._make_layer(cls, width, layers[0], 1)
        self.layer2 = self._make_layer(cls, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(cls, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(cls, width * 8, layers[3], 2)
        self.channels = [width] + [width * m * cls.expansion for m in (1, 2, 4, 8)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, cls, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = projection(self.inplanes, planes * cls.expansion, stride)
        out = [cls(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * cls.expansion
        out += [cls(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*out)

    @property
    def stages(self) -> List[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))
