"""A small EfficientNet-style network: MBConv blocks (1x1 expansion, depthwise conv,
squeeze-excitation, 1x1 projection, stochastic depth on the residual)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from greedy_compress.demo.models.layers import DropPath, SqueezeExcite

__all__ = ["MBConv", "TinyEfficientNet"]


def _conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.SiLU(),
    ]


class MBConv(nn.Module):
    """Inverted residual with squeeze-excitation (EfficientNet's MBConv)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand: int = 4,
        kernel: int = 3,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.use_residual = stride == 1 and in_channels == out_channels
        self.block = nn.Sequential(
            *_conv_bn_act(in_channels, hidden, 1),
            *_conv_bn_act(hidden, hidden, kernel, stride, groups=hidden),
            SqueezeExcite(hidden, max(1, in_channels // 4)),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.drop_path(out) if self.use_residual else out


class TinyEfficientNet(nn.Module):
    """Stem conv, MBConv blocks ``(out_channels, stride)``, 1x1 head conv, pool, Linear.

    Example:
        >>> TinyEfficientNet(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 8,
        blocks: Sequence[tuple[int, int]] = ((8, 1), (16, 2), (16, 1)),
        expand: int = 4,
        last: int = 32,
        drop_path: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = _conv_bn_act(in_channels, width, 3)
        channels = width
        for out_channels, stride in blocks:
            layers.append(MBConv(channels, out_channels, stride, expand, drop_path=drop_path))
            channels = out_channels
        layers += _conv_bn_act(channels, last, 1)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))
