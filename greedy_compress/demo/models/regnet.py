"""A small RegNetY-style network: bottleneck blocks whose 3x3 conv is grouped (a fixed group
width), with squeeze-excitation (Radosavovic et al. 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from greedy_compress.demo.models.layers import SqueezeExcite, conv_bn

__all__ = ["RegNetBlock", "TinyRegNet"]


class RegNetBlock(nn.Module):
    """1x1 conv, grouped 3x3 conv (``group_width`` channels per group), SE (RegNetY; none
    with ``se=False``: RegNetX), 1x1 conv, add."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, group_width: int, se: bool = True
    ) -> None:
        super().__init__()
        groups = out_channels // group_width
        excite = [SqueezeExcite(out_channels, max(1, in_channels // 4), nn.ReLU)] if se else []
        self.body = nn.Sequential(
            *conv_bn(in_channels, out_channels, 1),
            nn.ReLU(inplace=True),
            *conv_bn(out_channels, out_channels, 3, stride, groups),
            nn.ReLU(inplace=True),
            *excite,
            *conv_bn(out_channels, out_channels, 1),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.shortcut(x) + self.body(x))


class TinyRegNet(nn.Module):
    """Stem conv, RegNet blocks ``(out_channels, stride)``, pool, Linear.

    Example:
        >>> TinyRegNet(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 8,
        blocks: Sequence[tuple[int, int]] = ((8, 1), (16, 2), (16, 1)),
        group_width: int = 4,
        se: bool = True,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            *conv_bn(in_channels, width, 3, stem_stride), nn.ReLU(inplace=True)
        )
        layers, channels = [], width
        for out_channels, stride in blocks:
            layers.append(RegNetBlock(channels, out_channels, stride, group_width, se))
            channels = out_channels
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))
