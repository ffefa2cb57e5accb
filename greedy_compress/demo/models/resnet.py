"""ResNet-style networks: a small one with basic blocks, and ImageNet ResNets with basic or
bottleneck blocks (residual adds, strided 1x1 shortcuts): ResNet-18 and -50, ResNeXt (grouped
3x3 convs) and Wide-ResNet (twice the inner width) for the benchmarks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "TinyResNet",
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "wide_resnet50_2",
]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual add; a 1x1 conv shortcut when shapes change.
    (``groups`` and ``base`` only match :class:`Bottleneck`'s signature: ResNet-18 has none.)"""

    expansion = 1

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1, base: int = 64
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class TinyResNet(nn.Module):
    """A stem conv, three stages of basic blocks (widths w, 2w, 4w), global pool, linear.

    Example:
        >>> TinyResNet(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 10, width: int = 16, blocks: int = 2
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages = []
        channels = width
        for index, stage_width in enumerate((width, 2 * width, 4 * width)):
            layers = []
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                layers.append(BasicBlock(channels, stage_width, stride))
                channels = stage_width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided; ``groups`` groups of ``planes * base / 64`` channels: ResNeXt,
    Wide-ResNet), 1x1 expand (to ``planes * 4``), each with BatchNorm; residual add."""

    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, groups: int = 1, base: int = 64
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        width = planes * base // 64 * groups
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class ResNet(nn.Module):
    """ImageNet-style ResNet: 7x7 stem, max pool, four stages of ``block`` (bottleneck by
    default; ``groups`` and ``base``, the channels per group at 64 planes, widen its 3x3)."""

    def __init__(
        self,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        num_classes: int = 1000,
        in_channels: int = 3,
        width: int = 64,
        block: type[BasicBlock] | type[Bottleneck] = Bottleneck,
        groups: int = 1,
        base: int = 64,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, channels = [], width
        for index, count in enumerate(layers):
            stage_width = width * 2**index
            blocks = []
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(channels, stage_width, stride, groups, base))
                channels = stage_width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50's architecture (25.6 M parameters, 4.1 GMACs at 224x224), random weights.

    Example:
        >>> sum(p.numel() for p in resnet50().parameters())
        25557032
    """
    return ResNet((3, 4, 6, 3), num_classes=num_classes)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18's architecture (11.7 M parameters, 1.8 GMACs at 224x224), random weights."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes, block=BasicBlock)


def resnext50_32x4d(num_classes: int = 1000) -> ResNet:
    """ResNeXt-50 32x4d's architecture (25.0 M parameters): 32 groups of 4 channels at 64
    planes in every 3x3 conv.

    Example:
        >>> sum(p.numel() for p in resnext50_32x4d().parameters())
        25028904
    """
    return ResNet((3, 4, 6, 3), num_classes=num_classes, groups=32, base=4)


def wide_resnet50_2(num_classes: int = 1000) -> ResNet:
    """Wide-ResNet-50-2's architecture (68.9 M parameters): bottlenecks twice as wide inside.

    Example:
        >>> sum(p.numel() for p in wide_resnet50_2().parameters())
        68883240
    """
    return ResNet((3, 4, 6, 3), num_classes=num_classes, base=128)
