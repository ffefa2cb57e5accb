"""A small MobileNetV2-style network: inverted residual blocks with depthwise convs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from greedy_compress.demo.models.layers import conv_bn

__all__ = ["InvertedResidual", "TinyMobileNetV2"]


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, 1x1 linear projection; a residual add when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.use_residual = stride == 1 and in_channels == out_channels
        self.block = nn.Sequential(
            *conv_bn(in_channels, hidden, 1),
            nn.ReLU6(inplace=True),
            *conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU6(inplace=True),
            *conv_bn(hidden, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class TinyMobileNetV2(nn.Module):
    """Stem conv, inverted residual blocks ``(out_channels, stride)``, 1x1 conv, pool, linear.

    Example:
        >>> TinyMobileNetV2(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 8,
        blocks: Sequence[tuple[int, int]] = ((8, 1), (16, 2), (16, 1), (24, 2), (24, 1)),
        expand: int = 4,
        last: int = 64,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [*conv_bn(in_channels, width, 3), nn.ReLU6(inplace=True)]
        channels = width
        for out_channels, stride in blocks:
            layers.append(InvertedResidual(channels, out_channels, stride, expand))
            channels = out_channels
        layers += [*conv_bn(channels, last, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
