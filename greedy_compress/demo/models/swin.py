"""A small Swin-style network: windowed self-attention with a relative position bias,
shifted windows with their attention mask, and patch merging (Liu et al. 2021), written like
the reference implementation (a fused qkv Linear, sizes read from the input's shape)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from greedy_compress.demo.models.layers import DropPath, Mlp

__all__ = ["PatchMerging", "SwinBlock", "TinySwin", "WindowAttention", "relative_position_index"]


def relative_position_index(window: int) -> torch.Tensor:
    """For each pair of the ``window * window`` tokens, the row of their relative offset in a
    ``(2 * window - 1) ** 2``-row bias table (Swin's and MaxViT's relative position bias)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = coords.flatten(1)
    relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (B * windows, window * window, C) token groups, with a
    learned bias per head and relative offset, and an optional additive mask per window."""

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            0.02 * torch.randn((2 * window - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.softmax = nn.Softmax(dim=-1)
        self.relative_position_index: torch.Tensor

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(batch // windows, windows, self.num_heads, tokens, tokens)
            attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.num_heads, tokens, tokens)
        attn = self.softmax(attn)
        x = (attn @ v).transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj(x)


def _shift_mask(resolution: int, window: int, shift: int) -> torch.Tensor:
    """Swin's mask: tokens of a shifted window that came from different regions ignore each
    other (-100 before the softmax)."""
    regions = torch.zeros(1, resolution, resolution, 1)
    spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in spans:
        for cols in spans:
            regions[:, rows, cols, :] = label
            label += 1
    windows = _partition(regions, window).squeeze(-1)
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0)


def _partition(x: torch.Tensor, window: int) -> torch.Tensor:
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, channels)


def _reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    channels = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


class SwinBlock(nn.Module):
    """LayerNorm, (shifted) window attention, residual; LayerNorm, MLP, residual; on
    channels-last (B, H, W, C) maps."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        resolution: int,
        window: int,
        shift: int = 0,
        mlp_ratio: int = 2,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio * dim)
        self.attn_mask: torch.Tensor | None
        if shift:
            self.register_buffer("attn_mask", _shift_mask(resolution, window, shift))
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, height, width, _ = x.shape
        shortcut = x
        x = self.norm1(x)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(_partition(x, self.window), mask=self.attn_mask)
        x = _reverse(windows, self.window, height, width)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C), LayerNorm, Linear to 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))


class TinySwin(nn.Module):
    """Patch embedding, stages of (regular, shifted) Swin blocks with patch merging between
    them, LayerNorm, average over tokens, Linear head.

    Example:
        >>> TinySwin(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 16,
        patch: int = 2,
        dim: int = 8,
        depths: Sequence[int] = (2, 2),
        num_heads: Sequence[int] = (2, 4),
        window: int = 4,
        mlp_ratio: int = 2,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.embed_norm = nn.LayerNorm(dim)
        resolution = image_size // patch
        stages: list[nn.Module] = []
        for index, (depth, heads) in enumerate(zip(depths, num_heads, strict=True)):
            if index > 0:
                stages.append(PatchMerging(dim))
                dim, resolution = 2 * dim, resolution // 2
            for block in range(depth):
                shift = window // 2 if block % 2 and resolution > window else 0
                stages.append(
                    SwinBlock(dim, heads, resolution, min(window, resolution), shift, mlp_ratio)
                )
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))
        return self.head(self.norm(self.stages(x)).mean((1, 2)))
