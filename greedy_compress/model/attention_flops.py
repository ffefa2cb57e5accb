"""FLOP formulas for the fused attention kernels torch's flop counter does not know.

``torch.utils.flop_counter`` counts matmuls, convolutions and the CUDA attention kernels, but
on the CPU ``F.scaled_dot_product_attention`` runs ``_scaled_dot_product_flash_attention_for_cpu``,
``nn.MultiheadAttention`` in eval mode runs ``_native_multi_head_attention`` and
``nn.TransformerEncoderLayer`` runs ``_transformer_encoder_layer_fwd``: each one op, counted
as zero, so a ViT's attention vanished from its MACs in eval mode. The formulas here count
every matmul those kernels do, exactly as the unfused path in train mode is counted (the
projections, ``Q K^T`` and ``softmax(.) V``; masks, softmax and norms are not
multiply-accumulates). :data:`ATTENTION_FLOPS` is passed to ``FlopCounterMode(custom_mapping=)``
by :func:`greedy_compress.model.cost.count_macs`; torch itself is left unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ATTENTION_FLOPS"]

aten = torch.ops.aten


def _tokens_and_pairs(tensor: torch.Tensor) -> tuple[int, int, int]:
    """(sequences x length, sum of length^2, features) of a batch-first (B, L, E) tensor,
    or of a nested tensor of (L_i, E) sequences."""
    if tensor.is_nested:
        sizes = tensor._nested_tensor_size()  # one (L_i, E) row per sequence
        lengths = [int(n) for n in sizes[:, 0].tolist()]
        return sum(lengths), sum(n * n for n in lengths), int(sizes[0, 1])
    batch, length, features = tensor.shape
    return batch * length, batch * length * length, features


def _pairs(query: torch.Tensor, key: torch.Tensor) -> int:
    """Number of (query, key) token pairs attended to, per head."""
    if query.is_nested or key.is_nested:
        lengths_q = [int(n) for n in query._nested_tensor_size()[:, 0].tolist()]
        lengths_k = [int(n) for n in key._nested_tensor_size()[:, 0].tolist()]
        return sum(a * b for a, b in zip(lengths_q, lengths_k, strict=True))
    return query.shape[0] * query.shape[1] * key.shape[1]


def _tokens(tensor: torch.Tensor) -> int:
    if tensor.is_nested:
        return int(tensor._nested_tensor_size()[:, 0].sum())
    return tensor.shape[0] * tensor.shape[1]


def sdpa_cpu_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    """``(..., L, E) x (..., S, E) x (..., S, Ev)``: ``Q K^T`` and ``P V`` (query heads may be
    a multiple of the key/value heads)."""
    *batch, length, features = query.shape
    source = key.shape[-2]
    value_features = value.shape[-1]
    count = 1
    for size in batch:
        count *= size
    return 2 * count * length * source * (features + value_features)


def native_mha_flops(query: Any, key: Any, value: Any, embed_dim: int, *args: Any, **kwargs: Any):
    """``nn.MultiheadAttention``'s fused eval-mode kernel on batch-first (B, L, E) inputs:
    the q, k and v projections, the two attention matmuls and the output projection."""
    queries, keys = _tokens(query), _tokens(key)
    pairs = _pairs(query, key)
    projections = (2 * queries + 2 * keys) * embed_dim * embed_dim
    return 2 * (projections + 2 * pairs * embed_dim)


def encoder_layer_flops(
    src: Any, embed_dim: int, num_heads: int, qkv_weight: Any, *args: Any, **kwargs: Any
) -> int:
    """``nn.TransformerEncoderLayer``'s fused eval-mode kernel: self-attention (packed
    projection, two attention matmuls, output projection) and the two feed-forward Linears."""
    tokens, pairs, _ = _tokens_and_pairs(src)
    ffn_weight_1 = args[10] if len(args) > 10 else kwargs["ffn_weight_1"]
    hidden = ffn_weight_1.shape[0]
    attention = tokens * 4 * embed_dim * embed_dim + 2 * pairs * embed_dim
    return 2 * (attention + 2 * tokens * embed_dim * hidden)


def _raw(formula: Any) -> Any:
    formula._get_raw = True  # FlopCounterMode: pass the tensors, not their shapes
    return formula


ATTENTION_FLOPS: dict[Any, Any] = {
    aten._scaled_dot_product_flash_attention_for_cpu: _raw(sdpa_cpu_flops),
    aten._scaled_dot_product_fused_attention_overrideable: _raw(sdpa_cpu_flops),
    aten._native_multi_head_attention: _raw(native_mha_flops),
    aten._transformer_encoder_layer_fwd: _raw(encoder_layer_flops),
}
"""FLOP formulas by op, for ``FlopCounterMode(custom_mapping=ATTENTION_FLOPS)``.

Example:
    >>> from torch.utils.flop_counter import FlopCounterMode
    >>> q = torch.zeros(1, 2, 5, 4)
    >>> with FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOPS) as counter:
    ...     _ = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    >>> counter.get_total_flops() // 2  # 2 heads x 5 x 5 pairs x (4 + 4) features
    400
"""
