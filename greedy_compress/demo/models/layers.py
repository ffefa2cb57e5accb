"""Building blocks the modern reference models share: stochastic depth, squeeze-excitation,
a channels-first LayerNorm and a transformer MLP, written as the original papers' code is."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DropPath", "LayerNorm2d", "Mlp", "SqueezeExcite", "conv_bn"]


class DropPath(nn.Module):
    """Stochastic depth: in training, drop the whole residual branch per sample with
    probability ``p`` (and rescale the kept ones); the identity in eval mode.

    Example:
        >>> DropPath(0.5).eval()(torch.ones(2, 3)).tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (ConvNeXt's channels-first norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global average, two 1x1 convs, a gate per channel (a sigmoid;
    MobileNetV3's hard sigmoid with ``gate=nn.Hardsigmoid``)."""

    def __init__(
        self,
        channels: int,
        reduced: int,
        activation: type[nn.Module] = nn.SiLU,
        gate: type[nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = activation()
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * self.gate(scale)


class Mlp(nn.Module):
    """Transformer feed-forward: Linear, GELU, Linear on the last dimension."""

    def __init__(self, features: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """A bias-free "same"-padded conv and its BatchNorm (to splice into a Sequential)."""
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
