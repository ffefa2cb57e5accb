"""A MaxViT-style network (Tu et al. 2022), written like torchvision's implementation: each
block is an MBConv with squeeze-excitation, then block (window) attention and grid
attention, both on the 4-d token layout (batch, partitions, tokens, channels) made by
``reshape`` / ``permute`` partitions, with a fused qkv Linear split by ``chunk`` and a
relative position bias per head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from greedy_compress.demo.models.layers import DropPath, SqueezeExcite, conv_bn
from greedy_compress.demo.models.swin import relative_position_index

__all__ = ["MaxViT", "MaxViTBlock", "MaxViTMBConv", "PartitionAttention", "TinyMaxViT", "maxvit_t"]


class MaxViTMBConv(nn.Module):
    """Pre-norm MBConv: BN, 1x1 expand (x4), depthwise 3x3 (strided), SE, 1x1 project; the
    shortcut is an average pool and a 1x1 conv when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        hidden = 4 * out_channels
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(3, stride, 1), nn.Conv2d(in_channels, out_channels, 1)
            )
        self.layers = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            *conv_bn(in_channels, hidden, 1),
            nn.GELU(),
            *conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.GELU(),
            SqueezeExcite(hidden, out_channels // 4),
            nn.Conv2d(hidden, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.layers(x)


class RelativeAttention(nn.Module):
    """Multi-head attention inside each partition of (B, G, P, C) tokens, with a learned bias
    per head and relative offset (torchvision's ``RelativePositionalMultiHeadAttention``)."""

    def __init__(self, dim: int, head_dim: int, partition: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = dim // head_dim, head_dim
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.merge = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            0.02 * torch.randn((2 * partition - 1) ** 2, self.num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(partition))
        self.relative_position_index: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, groups, tokens, _ = x.shape
        shape = (batch, groups, tokens, self.num_heads, self.head_dim)
        q, k, v = torch.chunk(self.to_qkv(x), 3, dim=-1)
        q, k, v = (t.reshape(shape).permute(0, 1, 3, 2, 4) for t in (q, k, v))
        attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(tokens, tokens, -1).permute(2, 0, 1)
        out = (attn.softmax(-1) @ v).permute(0, 1, 3, 2, 4)
        return self.merge(out.reshape(batch, groups, tokens, self.num_heads * self.head_dim))


def _partition(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, p * p, C): non-overlapping p x p windows."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels, height // p, p, width // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(batch, (height // p) * (width // p), p * p, channels)


def _departition(x: torch.Tensor, p: int, rows: int, cols: int) -> torch.Tensor:
    batch, _, _, channels = x.shape
    x = x.reshape(batch, rows, cols, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(batch, channels, rows * p, cols * p)


class PartitionAttention(nn.Module):
    """Block attention (``grid=False``: tokens of one p x p window attend to each other) or
    grid attention (``grid=True``: tokens p apart, on a p x p grid spread over the map); pre-
    norm attention and MLP with residuals, on the partitioned tokens."""

    def __init__(
        self, dim: int, head_dim: int, partition: int, grid: bool, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.partition, self.grid = partition, grid
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RelativeAttention(dim, head_dim, partition)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        # A grid partition is a window partition of size H/p with windows and tokens swapped.
        p = size // self.partition if self.grid else self.partition
        x = _partition(x, p)
        if self.grid:
            x = x.transpose(-2, -3)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.fc2(self.act(self.fc1(self.norm2(x)))))
        if self.grid:
            x = x.transpose(-2, -3)
        return _departition(x, p, size // p, size // p)


class MaxViTBlock(nn.Module):
    """MBConv, block attention, grid attention."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, head_dim: int, partition: int
    ) -> None:
        super().__init__()
        self.mbconv = MaxViTMBConv(in_channels, out_channels, stride)
        self.block_attention = PartitionAttention(out_channels, head_dim, partition, grid=False)
        self.grid_attention = PartitionAttention(out_channels, head_dim, partition, grid=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grid_attention(self.block_attention(self.mbconv(x)))


class MaxViT(nn.Module):
    """Conv stem (stride 2), stages of MaxViT blocks (the first of each strided), average
    pool, LayerNorm, Linear-Tanh-Linear head."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: int = 64,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 5, 2),
        head_dim: int = 32,
        partition: int = 7,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            *conv_bn(in_channels, stem, 3, 2), nn.GELU(), nn.Conv2d(stem, stem, 3, 1, 1)
        )
        blocks, channels = [], stem
        for width, depth in zip(widths, depths, strict=True):
            for index in range(depth):
                stride = 2 if index == 0 else 1
                blocks.append(MaxViTBlock(channels, width, stride, head_dim, partition))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(channels)
        self.pre_logits = nn.Linear(channels, channels)
        self.head = nn.Linear(channels, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(self.stem(x)).mean((2, 3)))
        return self.head(torch.tanh(self.pre_logits(x)))


class TinyMaxViT(MaxViT):
    """Two MaxViT blocks on (B, 1, 16, 16) inputs (4x4 then 2x2 maps, 2x2 partitions).

    Example:
        >>> TinyMaxViT()(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__(in_channels, num_classes, 8, (8, 16), (1, 1), head_dim=4, partition=2)


def maxvit_t(num_classes: int = 1000) -> MaxViT:
    """MaxViT-T's architecture (30.9 M parameters, 5.6 GMACs at 224x224), random weights.

    Example:
        >>> round(sum(p.numel() for p in maxvit_t().parameters()) / 1e6, 1)
        30.9
    """
    return MaxViT(num_classes=num_classes)
