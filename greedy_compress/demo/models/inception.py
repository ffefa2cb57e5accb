"""A small Inception-style network: parallel 1x1, 3x3, double-3x3 and pooling branches
concatenated along the channels (Szegedy et al. 2015)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InceptionBlock", "TinyInception"]


def _conv_bn(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class InceptionBlock(nn.Module):
    """Four branches side by side: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3; 3x3 max pool -> 1x1."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.branch1 = _conv_bn(in_channels, width, 1)
        self.branch3 = nn.Sequential(_conv_bn(in_channels, width, 1), _conv_bn(width, width, 3))
        self.branch5 = nn.Sequential(
            _conv_bn(in_channels, width // 2, 1),
            _conv_bn(width // 2, width, 3),
            _conv_bn(width, width, 3),
        )
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv_bn(in_channels, width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch3(x), self.branch5(x), self.pool(x)]
        return torch.cat(branches, 1)


class TinyInception(nn.Module):
    """Stem conv, two Inception blocks with a max pool between them, pool, Linear.

    Example:
        >>> TinyInception(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 4) -> None:
        super().__init__()
        self.stem = _conv_bn(in_channels, 2 * width, 3)
        self.block1 = InceptionBlock(2 * width, width)
        self.pool = nn.MaxPool2d(2)
        self.block2 = InceptionBlock(4 * width, width)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.pool(self.block1(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
