"""Attention with separate q, k, v and output projections, a drop-in for ``nn.MultiheadAttention``.

``nn.MultiheadAttention`` packs its q, k and v projections in one ``in_proj_weight``, calls
none of its projections as modules, insists on ``embed_dim = num_heads * head_dim`` and a
square output projection, and in eval mode runs a fused kernel. A compressed attention needs
none of that: :class:`Attention` holds four ordinary modules (Linears, low-rank pairs, pruned
Linears of any width), keeps the original scale, and takes ``nn.MultiheadAttention``'s call
(masks, ``need_weights``, ``batch_first``) so the module around it is unchanged. It is plain
torch that ``torch.fx`` traces. :func:`Attention.from_multihead` converts exactly.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import fx, nn
from torch.nn import functional

__all__ = ["Attention", "linear_from"]


def linear_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding ``weight`` (out, in) and ``bias`` (sharing their storage)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    layer.weight = nn.Parameter(weight.detach(), requires_grad=weight.requires_grad)
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach(), requires_grad=bias.requires_grad)
    return layer


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)
    return mask.to(dtype)


def merge_masks(
    attn_mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    batch: int,
    heads: int,
    queries: int,
    keys: int,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """``nn.MultiheadAttention``'s masks as one additive mask broadcastable to
    (batch, heads, queries, keys): ``attn_mask`` (L, S) or (batch * heads, L, S), ``True`` or
    ``-inf`` where not allowed; ``key_padding_mask`` (batch, S), ``True`` for padding.

    Kept whole by ``torch.fx`` (it branches on dtypes).
    """
    merged = None
    if attn_mask is not None:
        mask = _additive(attn_mask, dtype)
        merged = (
            mask.view(1, 1, queries, keys)
            if mask.dim() == 2
            else mask.view(batch, heads, queries, keys)
        )
    if key_padding_mask is not None:
        padding = _additive(key_padding_mask, dtype).view(batch, 1, 1, keys)
        merged = padding if merged is None else merged + padding
    return merged


fx.wrap("merge_masks")


class Attention(nn.Module):
    """Multi-head attention from four modules: ``q_proj``, ``k_proj``, ``v_proj`` (embed ->
    heads x per-head width, each any module) and ``out_proj``.

    The q/k per-head width and the v per-head width may differ (as after pruning q and k
    neurons apart from v ones); ``scale`` is the original ``1 / sqrt(head_dim)``, kept when
    the widths change. ``forward`` takes ``nn.MultiheadAttention``'s arguments and returns
    ``(output, weights or None)`` likewise. Attributes ``batch_first``, ``num_heads``,
    ``embed_dim`` and ``in_proj_bias = None`` keep modules that read them (the fast-path
    checks of ``nn.TransformerEncoderLayer``) working; those checks then take the regular path.

    Example:
        >>> mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
        >>> x = torch.randn(3, 5, 8)
        >>> same = Attention.from_multihead(mha)
        >>> torch.allclose(same(x, x, x)[0], mha(x, x, x)[0], atol=1e-6)
        True
    """

    in_proj_bias = None
    in_proj_weight = None
    _qkv_same_embed_dim = False

    def __init__(
        self,
        q_proj: nn.Module,
        k_proj: nn.Module,
        v_proj: nn.Module,
        out_proj: nn.Module,
        *,
        num_heads: int,
        scale: float,
        embed_dim: int,
        batch_first: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = q_proj, k_proj, v_proj, out_proj
        self.num_heads = num_heads
        self.scale = scale
        self.embed_dim = embed_dim
        self.batch_first = batch_first
        self.dropout = dropout

    @classmethod
    def from_multihead(cls, mha: nn.MultiheadAttention) -> Attention:
        """The same attention (sharing ``mha``'s parameter storage; no copy).

        Raises:
            ValueError: ``mha`` uses ``add_bias_kv`` or ``add_zero_attn``, which this module
                does not implement.
        """
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("add_bias_kv and add_zero_attn are not supported")
        embed = mha.embed_dim
        if mha._qkv_same_embed_dim:
            assert mha.in_proj_weight is not None
            weights = mha.in_proj_weight.chunk(3)
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        biases = (None,) * 3 if mha.in_proj_bias is None else mha.in_proj_bias.chunk(3)
        q, k, v = (linear_from(w, b) for w, b in zip(weights, biases, strict=True))
        return cls(
            q,
            k,
            v,
            mha.out_proj,
            num_heads=mha.num_heads,
            scale=1.0 / math.sqrt(mha.head_dim),
            embed_dim=embed,
            batch_first=mha.batch_first,
            dropout=mha.dropout,
        ).train(mha.training)

    def materialized(self) -> Attention:
        """A copy whose parameters own their storage (a converted ``nn.MultiheadAttention``
        shares slices of its ``in_proj_weight``; a deep copy clones each slice alone)."""
        return copy.deepcopy(self)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        batch, queries = q.shape[0], q.shape[1]
        keys = k.shape[1]
        q = q.view(batch, queries, self.num_heads, -1).transpose(1, 2)
        k = k.view(batch, keys, self.num_heads, -1).transpose(1, 2)
        v = v.view(batch, keys, self.num_heads, -1).transpose(1, 2)
        mask = merge_masks(
            attn_mask, key_padding_mask, batch, self.num_heads, queries, keys, q.dtype
        )
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * self.scale
            if mask is not None:
                scores = scores + mask
            elif is_causal:
                causal = torch.ones(queries, keys, dtype=torch.bool, device=q.device).tril()
                scores = scores.masked_fill(causal.logical_not(), -math.inf)
            weights = functional.dropout(scores.softmax(dim=-1), dropout, self.training)
            out = weights @ v
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            out = functional.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout,
                is_causal=is_causal and mask is None,
                scale=self.scale,
            )
        out = self.out_proj(out.transpose(1, 2).reshape(batch, queries, -1))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, scale={self.scale:.4g}, batch_first={self.batch_first}"
