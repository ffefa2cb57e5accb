"""A small ViT: patch embedding, class token, position embedding and pre-norm encoder blocks
(torchvision's layout, with ``nn.MultiheadAttention``), or the same blocks with attention
written by hand (separate q/k/v/o Linears and ``scaled_dot_product_attention``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from greedy_compress.demo.models.layers import Mlp

__all__ = ["EncoderBlock", "SelfAttention", "TinyViT"]


class SelfAttention(nn.Module):
    """Multi-head self-attention by hand: q, k, v and o Linears around SDPA."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        shape = (batch, tokens, self.num_heads, self.head_dim)
        q = self.q(x).view(shape).transpose(1, 2)
        k = self.k(x).view(shape).transpose(1, 2)
        v = self.v(x).view(shape).transpose(1, 2)
        out = functional.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).reshape(batch, tokens, channels))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, attention: str = "torch") -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = attention
        self.self_attention: nn.Module
        if attention == "torch":
            self.self_attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        else:
            self.self_attention = SelfAttention(dim, num_heads)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        if self.attention == "torch":
            y, _ = self.self_attention(y, y, y, need_weights=False)
        else:
            y = self.self_attention(y)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class TinyViT(nn.Module):
    """Patch embedding (a strided conv), class token, position embedding, encoder blocks,
    final LayerNorm and a Linear head on the class token.

    ``attention="torch"`` uses ``nn.MultiheadAttention`` (its fused kernel in eval mode);
    ``"hand"`` the hand-written :class:`SelfAttention`.

    Example:
        >>> TinyViT(in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 16,
        patch: int = 4,
        dim: int = 16,
        depth: int = 2,
        num_heads: int = 2,
        mlp_dim: int = 32,
        attention: str = "torch",
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        tokens = (image_size // patch) ** 2 + 1
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, tokens, dim))
        self.blocks = nn.Sequential(
            *(EncoderBlock(dim, num_heads, mlp_dim, attention) for _ in range(depth))
        )
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.blocks(x + self.pos_embedding)
        return self.head(self.ln(x)[:, 0])
