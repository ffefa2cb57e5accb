"""A small ConvNeXt-style network: depthwise 7x7 conv, channels-last LayerNorm and MLP,
layer scale and stochastic depth, as in Liu et al. 2022."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from greedy_compress.demo.models.layers import DropPath, LayerNorm2d

__all__ = ["ConvNeXtBlock", "TinyConvNeXt"]


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> permute to (B, H, W, C) -> LayerNorm -> Linear(4C) -> GELU -> Linear(C)
    -> layer scale -> permute back -> drop path -> residual add."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = (self.gamma * x).permute(0, 3, 1, 2)
        return shortcut + self.drop_path(x)


class TinyConvNeXt(nn.Module):
    """Patchify stem, stages of ConvNeXt blocks with LayerNorm + 2x2 conv downsampling,
    global average, LayerNorm, Linear head.

    Example:
        >>> TinyConvNeXt(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        dims: Sequence[int] = (8, 16),
        depths: Sequence[int] = (1, 1),
        stem: int = 2,
        drop_path: float = 0.1,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, dims[0], stem, stride=stem),
            LayerNorm2d(dims[0], eps=1e-6),
        ]
        for index, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            if index > 0:
                layers += [
                    LayerNorm2d(dims[index - 1], eps=1e-6),
                    nn.Conv2d(dims[index - 1], dim, 2, 2),
                ]
            layers += [ConvNeXtBlock(dim, drop_path, layer_scale) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.features(x).mean((2, 3))))
