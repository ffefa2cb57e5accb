"""Mobile inverted-residual networks at ImageNet size, from one configurable block: MobileNetV2,
MobileNetV3-Large (hard swish, squeeze-excitation with a hard sigmoid), MnasNet-A1's
searched-free variant (torchvision's MNASNet 1.0: 3x3 / 5x5 depthwise, ReLU) and
EfficientNet-B0 (SiLU, squeeze-excitation, 3x3 / 5x5), with small versions for the tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from greedy_compress.demo.models.layers import SqueezeExcite, conv_bn

__all__ = [
    "MBBlock",
    "MobileNet",
    "TinyMnasNet",
    "TinyMobileNetV3",
    "efficientnet_b0",
    "mnasnet1_0",
    "mobilenet_v2",
    "mobilenet_v3_large",
]

#: One block: (hidden channels, out channels, kernel, stride, SE channels (0: none), activation)
Config = tuple[int, int, int, int, int, type[nn.Module]]


class MBBlock(nn.Module):
    """1x1 expansion (skipped when ``hidden == in_channels``), depthwise ``kernel`` conv,
    optional squeeze-excitation (``se`` reduced channels, ``gate`` its sigmoid), 1x1 linear
    projection; a residual add when shapes match."""

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        se: int = 0,
        activation: type[nn.Module] = nn.ReLU,
        gate: type[nn.Module] = nn.Sigmoid,
        se_activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers += [*conv_bn(in_channels, hidden, 1), activation()]
        layers += [*conv_bn(hidden, hidden, kernel, stride, groups=hidden), activation()]
        if se:
            layers.append(SqueezeExcite(hidden, se, se_activation, gate))
        layers += conv_bn(hidden, out_channels, 1)
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNet(nn.Module):
    """Stem conv-BN-activation (``stem`` channels, stride ``stem_stride``), :class:`MBBlock`
    configs, 1x1 conv to ``last``, global average, classifier (``hidden`` > 0: MobileNetV3's
    Linear-hardswish-dropout-Linear)."""

    def __init__(
        self,
        blocks: Sequence[Config],
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: int = 32,
        stem_stride: int = 2,
        stem_activation: type[nn.Module] = nn.ReLU6,
        last: int = 1280,
        hidden: int = 0,
        gate: type[nn.Module] = nn.Sigmoid,
        se_activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [*conv_bn(in_channels, stem, 3, stem_stride), stem_activation()]
        channels = stem
        for wide, out, kernel, stride, se, act in blocks:
            layers.append(
                MBBlock(channels, wide, out, kernel, stride, se, act, gate, se_activation)
            )
            channels = out
        layers += [*conv_bn(channels, last, 1), blocks[-1][5]()]
        self.features = nn.Sequential(*layers)
        self.classifier: nn.Module = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
        if hidden:
            self.classifier = nn.Sequential(
                nn.Linear(last, hidden),
                nn.Hardswish(),
                nn.Dropout(0.2),
                nn.Linear(hidden, num_classes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def _stages(
    stages: Sequence[tuple[int, int, int, int, int]],
    start: int,
    activation: type[nn.Module],
    se: bool,
) -> list[Config]:
    """Configs from (expand ratio, out, repeats, first stride, kernel) stages."""
    configs: list[Config] = []
    channels = start
    for expand, out, repeats, stride, kernel in stages:
        for index in range(repeats):
            squeeze = max(1, channels // 4) if se else 0
            configs.append(
                (channels * expand, out, kernel, stride if index == 0 else 1, squeeze, activation)
            )
            channels = out
    return configs


def mobilenet_v2(num_classes: int = 1000) -> MobileNet:
    """MobileNetV2's architecture (3.5 M parameters, 0.30 GMACs at 224x224), random weights.

    Example:
        >>> sum(p.numel() for p in mobilenet_v2().parameters())
        3504872
    """
    stages = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3)]
    stages += [(6, 96, 3, 1, 3), (6, 160, 3, 2, 3), (6, 320, 1, 1, 3)]
    return MobileNet(_stages(stages, 32, nn.ReLU6, se=False), num_classes=num_classes)


def efficientnet_b0(num_classes: int = 1000) -> MobileNet:
    """EfficientNet-B0's architecture (5.3 M parameters, 0.39 GMACs), random weights.

    Example:
        >>> sum(p.numel() for p in efficientnet_b0().parameters())
        5288548
    """
    stages = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3)]
    stages += [(6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)]
    blocks = _stages(stages, 32, nn.SiLU, se=True)
    return MobileNet(
        blocks, num_classes=num_classes, stem_activation=nn.SiLU, se_activation=nn.SiLU
    )


def mnasnet1_0(num_classes: int = 1000) -> MobileNet:
    """MNASNet 1.0's architecture as torchvision builds it (4.4 M parameters, 0.31 GMACs):
    a separable first block, then inverted residuals with 3x3 and 5x5 depthwise convs, ReLU.

    Example:
        >>> sum(p.numel() for p in mnasnet1_0().parameters())
        4383312
    """
    stages = [(1, 16, 1, 1, 3), (3, 24, 3, 2, 3), (3, 40, 3, 2, 5), (6, 80, 3, 2, 5)]
    stages += [(6, 96, 2, 1, 3), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)]
    blocks = _stages(stages, 32, nn.ReLU, se=False)
    return MobileNet(blocks, num_classes=num_classes, stem_activation=nn.ReLU)


def mobilenet_v3_large(num_classes: int = 1000) -> MobileNet:
    """MobileNetV3-Large's architecture (5.5 M parameters, 0.22 GMACs): hard swish in the
    later blocks, squeeze-excitation with a hard sigmoid gate.

    Example:
        >>> sum(p.numel() for p in mobilenet_v3_large().parameters())
        5483032
    """
    re, hs = nn.ReLU, nn.Hardswish
    table = [
        (16, 16, 3, 1, 0, re), (64, 24, 3, 2, 0, re), (72, 24, 3, 1, 0, re),
        (72, 40, 5, 2, 24, re), (120, 40, 5, 1, 32, re), (120, 40, 5, 1, 32, re),
        (240, 80, 3, 2, 0, hs), (200, 80, 3, 1, 0, hs), (184, 80, 3, 1, 0, hs),
        (184, 80, 3, 1, 0, hs), (480, 112, 3, 1, 120, hs), (672, 112, 3, 1, 168, hs),
        (672, 160, 5, 2, 168, hs), (960, 160, 5, 1, 240, hs), (960, 160, 5, 1, 240, hs),
    ]  # fmt: skip
    return MobileNet(
        table, num_classes=num_classes, stem=16, stem_activation=hs, last=960, hidden=1280,
        gate=nn.Hardsigmoid,
    )  # fmt: skip


class TinyMobileNetV3(MobileNet):
    """Four MobileNetV3 blocks (ReLU and hard swish, SE with a hard sigmoid) on 16x16 inputs.

    Example:
        >>> TinyMobileNetV3()(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        re, hs = nn.ReLU, nn.Hardswish
        table = [
            (8, 8, 3, 1, 0, re),
            (16, 8, 5, 1, 4, re),
            (24, 16, 3, 2, 8, hs),
            (32, 16, 5, 1, 8, hs),
        ]
        super().__init__(
            table, in_channels=in_channels, num_classes=num_classes, stem=8, stem_stride=1,
            stem_activation=hs, last=24, hidden=16, gate=nn.Hardsigmoid,
        )  # fmt: skip


class TinyMnasNet(MobileNet):
    """MnasNet blocks (expansions 1, 3 and 6; 3x3 and 5x5 depthwise; ReLU) on 16x16 inputs.

    Example:
        >>> TinyMnasNet()(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        stages = [(1, 4, 1, 1, 3), (3, 8, 2, 2, 5), (6, 16, 1, 2, 3)]  # 8 -> 4: as 32 -> 16
        super().__init__(
            _stages(stages, 8, nn.ReLU, se=False), in_channels=in_channels,
            num_classes=num_classes, stem=8, stem_stride=1, stem_activation=nn.ReLU, last=24,
        )  # fmt: skip
