"""A small VGG-style network: conv-BN-ReLU stages with max pooling, flattened into Linears."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TinyVGG"]


class TinyVGG(nn.Module):
    """Stages of two 3x3 conv-BN-ReLU layers and a 2x2 max pool, then a two-layer head on the
    flattened feature maps (so every channel of the last stage feeds a block of features).

    Example:
        >>> TinyVGG(in_channels=1, image_size=16)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64),
        image_size: int = 32,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(2):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
