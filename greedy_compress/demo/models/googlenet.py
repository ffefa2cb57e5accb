"""GoogLeNet (Inception v1: 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and pool -> 1x1 branches of chosen
widths, concatenated) and Inception-v3 (factorized 1x7 / 7x1 convs, grid reductions that
concatenate a pooled input, and branches split into 1x3 and 3x1 halves), without auxiliary
classifiers, at ImageNet size; small versions for the tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "GOOGLENET",
    "GoogLeNet",
    "InceptionV1",
    "InceptionV3",
    "TinyGoogLeNet",
    "TinyInceptionV3",
]

Size = int | tuple[int, int]


def _conv(
    cin: int, cout: int, kernel: Size = 1, stride: int = 1, padding: Size = 0
) -> nn.Sequential:
    """torchvision's BasicConv2d: a bias-free conv, BatchNorm (eps 1e-3), ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(cout, eps=1e-3),
        nn.ReLU(inplace=True),
    )


class InceptionV1(nn.Module):
    """GoogLeNet's module: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1; concatenated."""

    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, proj: int) -> None:
        super().__init__()
        self.branch1 = _conv(cin, c1)
        self.branch2 = nn.Sequential(_conv(cin, r3), _conv(r3, c3, 3, padding=1))
        self.branch3 = nn.Sequential(_conv(cin, r5), _conv(r5, c5, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), _conv(cin, proj))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, 1)


class GoogLeNet(nn.Module):
    """Stem (7x7/2 conv, pool, 1x1, 3x3, pool), Inception v1 modules (``"M"``: a 3x3/2 max
    pool), global average, dropout, Linear."""

    def __init__(
        self,
        modules: Sequence[tuple[int, ...] | str],
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: tuple[int, int, int] = (64, 64, 192),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            _conv(in_channels, stem[0], 7, 2, 3),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _conv(stem[0], stem[1]),
            _conv(stem[1], stem[2], 3, padding=1),
            nn.MaxPool2d(3, 2, ceil_mode=True),
        ]
        channels = stem[2]
        for widths in modules:
            if isinstance(widths, str):
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
                continue
            layers.append(InceptionV1(channels, *widths))
            channels = widths[0] + widths[2] + widths[4] + widths[5]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x).mean((2, 3))))


GOOGLENET: list[tuple[int, ...] | str] = [
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M",
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "M",
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
]  # fmt: skip
"""GoogLeNet's modules (Szegedy et al. 2015, table 1): ``GoogLeNet(GOOGLENET)`` is the full
network (7.0 M parameters with 5x5 convs in the third branch, as in the paper)."""


class TinyGoogLeNet(GoogLeNet):
    """Two small Inception v1 modules on 16x16 inputs.

    Example:
        >>> TinyGoogLeNet()(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        modules = [(4, 4, 8, 2, 4, 4), (8, 4, 8, 2, 4, 4)]
        super().__init__(modules, in_channels, num_classes, stem=(8, 8, 8))


class InceptionA(nn.Module):
    """1x1; 1x1 -> 5x5; 1x1 -> 3x3 -> 3x3; avg pool -> 1x1 (``pool`` wide)."""

    def __init__(self, cin: int, pool: int, w: int = 64) -> None:
        super().__init__()
        self.branch1x1 = _conv(cin, w)
        self.branch5x5 = nn.Sequential(_conv(cin, 3 * w // 4), _conv(3 * w // 4, w, 5, padding=2))
        wide = 3 * w // 2
        self.branch3x3dbl = nn.Sequential(
            _conv(cin, w), _conv(w, wide, 3, padding=1), _conv(wide, wide, 3, padding=1)
        )
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), _conv(cin, pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.branch1x1(x), self.branch5x5(x), self.branch3x3dbl(x), self.branch_pool(x)]
        return torch.cat(parts, 1)


class Reduction(nn.Module):
    """Grid reduction: strided conv branches concatenated with the max-pooled input
    (Inception-v3's B (``seven=False``) and D (``seven=True``: a 1x7 / 7x1 branch))."""

    def __init__(self, cin: int, wide: int, reduce: int, out: int, seven: bool) -> None:
        super().__init__()
        if seven:
            self.branch3x3: nn.Module = nn.Sequential(_conv(cin, reduce), _conv(reduce, wide, 3, 2))
            chain = [_conv(cin, reduce), _conv(reduce, reduce, (1, 7), padding=(0, 3))]
            chain += [_conv(reduce, reduce, (7, 1), padding=(3, 0)), _conv(reduce, out, 3, 2)]
        else:
            self.branch3x3 = _conv(cin, wide, 3, 2)
            chain = [_conv(cin, reduce), _conv(reduce, out, 3, padding=1), _conv(out, out, 3, 2)]
        self.branch_tower = nn.Sequential(*chain)
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch_tower(x), self.pool(x)], 1)


class InceptionC(nn.Module):
    """1x1; 1x1 -> 1x7 -> 7x1; 1x1 -> (7x1 -> 1x7) x2; avg pool -> 1x1; each 192 wide."""

    def __init__(self, cin: int, c7: int, w: int = 192) -> None:
        super().__init__()
        one, row = (1, 7), (7, 1)
        self.branch1x1 = _conv(cin, w)
        self.branch7x7 = nn.Sequential(
            _conv(cin, c7), _conv(c7, c7, one, padding=(0, 3)), _conv(c7, w, row, padding=(3, 0))
        )
        tower = [_conv(cin, c7)]
        for index in range(4):
            kernel, pad = (row, (3, 0)) if index % 2 == 0 else (one, (0, 3))
            tower.append(_conv(c7, w if index == 3 else c7, kernel, padding=pad))
        self.branch7x7dbl = nn.Sequential(*tower)
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), _conv(cin, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.branch1x1(x), self.branch7x7(x), self.branch7x7dbl(x), self.branch_pool(x)]
        return torch.cat(parts, 1)


class InceptionE(nn.Module):
    """1x1 (320); 1x1 -> [1x3, 3x1]; 1x1 -> 3x3 -> [1x3, 3x1]; avg pool -> 1x1: the split
    branches concatenate two convs of one input."""

    def __init__(self, cin: int, w: int = 384) -> None:
        super().__init__()
        self.branch1x1 = _conv(cin, 5 * w // 6)
        self.branch3x3_1 = _conv(cin, w)
        self.branch3x3_2a = _conv(w, w, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _conv(w, w, (3, 1), padding=(1, 0))
        self.branch3x3dbl = nn.Sequential(
            _conv(cin, 7 * w // 6), _conv(7 * w // 6, w, 3, padding=1)
        )
        self.branch3x3dbl_3a = _conv(w, w, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _conv(w, w, (3, 1), padding=(1, 0))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), _conv(cin, w // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl(x)
        parts = [
            self.branch1x1(x),
            torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1),
            torch.cat([self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b)], 1),
            self.branch_pool(x),
        ]
        return torch.cat(parts, 1)


class InceptionV3(nn.Module):
    """Inception-v3's architecture at 299x299 (or 224x224) without the auxiliary head: a conv
    stem, 3 A modules, reduction B, 4 C modules, reduction D, 2 E modules, pool, Linear
    (23.8 M parameters).

    Example:
        >>> sum(p.numel() for p in InceptionV3().parameters())
        23834568
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv(in_channels, 32, 3, 2), _conv(32, 32, 3), _conv(32, 64, 3, padding=1),
            nn.MaxPool2d(3, 2), _conv(64, 80), _conv(80, 192, 3), nn.MaxPool2d(3, 2),
        )  # fmt: skip
        self.blocks = nn.Sequential(
            InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64),
            Reduction(288, 384, 64, 96, seven=False),
            InceptionC(768, 128), InceptionC(768, 160), InceptionC(768, 160), InceptionC(768, 192),
            Reduction(768, 320, 192, 192, seven=True),
            InceptionE(1280), InceptionE(2048),
        )  # fmt: skip
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.blocks(self.stem(x)).mean((2, 3))))


class TinyInceptionV3(nn.Module):
    """One small A, C and E module each on 16x16 inputs (1x7 / 7x1 and 1x3 / 3x1 convs).

    Example:
        >>> TinyInceptionV3()(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _conv(in_channels, 8, 3, 2, 1)
        self.blocks = nn.Sequential(
            InceptionA(8, 4, w=8), InceptionC(32, 4, w=8), InceptionE(32, w=6)
        )
        self.fc = nn.Linear(5 + 12 + 12 + 3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))
