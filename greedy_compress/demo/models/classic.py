"""Classic plain and fire-module networks: AlexNet, VGG with BatchNorm from a configuration
(VGG-11-BN) and SqueezeNet's fire modules (a 1x1 squeeze feeding 1x1 and 3x3 expansions that
are concatenated), at ImageNet size and small for the tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "VGG",
    "AlexNet",
    "Fire",
    "SqueezeNet",
    "alexnet",
    "squeezenet1_0",
    "vgg11_bn",
]


class AlexNet(nn.Module):
    """Five convs with ReLU (max pools after the 1st, 2nd and 5th), an adaptive average pool
    to ``pool`` x ``pool``, then dropout-Linear-ReLU twice and a Linear."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        widths: Sequence[int] = (64, 192, 384, 256, 256),
        kernels: Sequence[int] = (11, 5, 3, 3, 3),
        stride: int = 4,
        pool: int = 6,
        hidden: int = 4096,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, (width, kernel) in enumerate(zip(widths, kernels, strict=True)):
            step = stride if index == 0 else 1
            padding = 2 if index == 0 and kernel == 11 else kernel // 2
            layers += [nn.Conv2d(channels, width, kernel, step, padding), nn.ReLU(inplace=True)]
            if index in (0, 1, len(widths) - 1):
                layers.append(nn.MaxPool2d(3, 2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(channels * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def alexnet(num_classes: int = 1000) -> AlexNet:
    """AlexNet's architecture as torchvision builds it (61.1 M parameters, 0.71 GMACs).

    Example:
        >>> sum(p.numel() for p in alexnet().parameters())
        61100840
    """
    return AlexNet(num_classes=num_classes)


class VGG(nn.Module):
    """VGG from a configuration: ints are 3x3 conv-BN-ReLU widths, ``"M"`` a 2x2 max pool;
    an adaptive average pool to ``pool`` x ``pool``, then Linear-ReLU-dropout twice, Linear."""

    def __init__(
        self,
        config: Sequence[int | str],
        in_channels: int = 3,
        num_classes: int = 1000,
        pool: int = 7,
        hidden: int = 4096,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            width = int(item)
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width)]
            layers.append(nn.ReLU(inplace=True))
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg11_bn(num_classes: int = 1000) -> VGG:
    """VGG-11 with BatchNorm (132.9 M parameters, 7.6 GMACs at 224x224).

    Example:
        >>> sum(p.numel() for p in vgg11_bn().parameters())
        132868840
    """
    config: list[int | str] = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    return VGG(config, num_classes=num_classes)


class Fire(nn.Module):
    """SqueezeNet's fire module: 1x1 squeeze + ReLU, then 1x1 and 3x3 expansions (+ ReLU)
    concatenated along the channels."""

    def __init__(self, in_channels: int, squeeze: int, expand1: int, expand3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        left = self.expand1x1_activation(self.expand1x1(x))
        return torch.cat([left, self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    """Stem conv (``stem`` channels, ``kernel``, stride 2), max pool, fire modules
    ``(squeeze, expand)`` (each expansion ``expand`` wide; ``"M"`` a 3x3 max pool), then a
    dropout, a 1x1 conv classifier, ReLU and a global average.

    Example:
        >>> SqueezeNet(1, 10, 8, 3, [(2, 4), "M", (4, 8)])(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: int = 96,
        kernel: int = 7,
        fires: Sequence[tuple[int, int] | str] = (),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, stem, kernel, 2, kernel // 2 if kernel < 7 else 0),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
        ]
        channels = stem
        for fire in fires:
            if isinstance(fire, str):
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
                continue
            squeeze, expand = fire
            layers.append(Fire(channels, squeeze, expand, expand))
            channels = 2 * expand
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(channels, num_classes, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_0(num_classes: int = 1000) -> SqueezeNet:
    """SqueezeNet 1.0's architecture (1.25 M parameters, 0.82 GMACs at 224x224).

    Example:
        >>> sum(p.numel() for p in squeezenet1_0().parameters())
        1248424
    """
    fires: list[tuple[int, int] | str] = [(16, 64), (16, 64), (32, 128), "M", (32, 128)]
    fires += [(48, 192), (48, 192), (64, 256), "M", (64, 256)]
    return SqueezeNet(num_classes=num_classes, fires=fires)
