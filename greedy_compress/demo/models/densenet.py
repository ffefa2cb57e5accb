"""A small DenseNet-style network: dense blocks concatenate every layer's output."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DenseBlock", "TinyDenseNet"]


class DenseLayer(nn.Module):
    """BN-ReLU-3x3 conv on everything before it; its ``growth`` channels are appended.
    ``bottleneck`` > 0 puts a BN-ReLU-1x1 conv to that many channels first (DenseNet-BC)."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int = 0) -> None:
        super().__init__()
        self.reduce: nn.Module = nn.Identity()
        width = in_channels
        if bottleneck:
            self.reduce = nn.Sequential(
                nn.BatchNorm2d(in_channels),
                nn.ReLU(),
                nn.Conv2d(in_channels, bottleneck, 1, bias=False),
            )
            width = bottleneck
        self.norm = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=False)
        self.conv = nn.Conv2d(width, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(self.relu(self.norm(self.reduce(x))))], dim=1)


class DenseBlock(nn.Sequential):
    """``layers`` dense layers; the output has ``in_channels + layers * growth`` channels."""

    def __init__(self, in_channels: int, growth: int, layers: int, bottleneck: int = 0) -> None:
        super().__init__(
            *(DenseLayer(in_channels + i * growth, growth, bottleneck) for i in range(layers))
        )


class TinyDenseNet(nn.Module):
    """Stem conv, dense block, transition (BN-ReLU-1x1 conv-avg pool), dense block, head.

    Example:
        >>> TinyDenseNet(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        stem: int = 16,
        growth: int = 8,
        layers: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        self.block1 = DenseBlock(stem, growth, layers)
        channels = stem + layers * growth
        self.transition = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels // 2, 1, bias=False),
            nn.AvgPool2d(2),
        )
        channels //= 2
        self.block2 = DenseBlock(channels, growth, layers)
        channels += layers * growth
        self.norm = nn.BatchNorm2d(channels)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.transition(self.block1(self.stem(x))))
        x = torch.relu(self.norm(x)).mean(dim=(2, 3))
        return self.classifier(x)
