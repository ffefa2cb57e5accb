"""Matmuls and ``scaled_dot_product_attention`` in the channel graph.

A matmul contracts one dimension and carries two. Channels in the contracted dimension of
both operands are tied (attention's ``Q K^T``: query channel j pairs with key channel j);
channels in a carried dimension of one operand pass to the output (``P V`` carries v's
channels); channels in a batch dimension of both are tied too (the heads). Channels split
``(heads, head_dim)`` are split into heads here: head h of the query pairs with head h of
the key and of the value, so the heads form a *part group* of their own, which also tracks
the attention scores' head dimension. Each matmul is priced with the width it scales with
(a ``matmul`` use); attention units are recorded for the head-pruning and SNP schemes.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

import torch
from torch import fx, nn
from torch.nn import functional

from greedy_compress.graph.dependency import Layout, ModuleUse, Segment, layout_width
from greedy_compress.graph.ops import argument, on, tensor_shape
from greedy_compress.graph.sites import record_sdpa_scale
from greedy_compress.graph.values import Value

if TYPE_CHECKING:
    from greedy_compress.graph.build import GraphBuilder

__all__: list[str] = []


class _Operand:
    """A tracked matmul operand: its heads (a part group, at an output batch position) and
    its inner channels (contracted or carried)."""

    def __init__(self, heads: Layout | None, head_at: int | None, inner: Layout | None, role: str):
        self.heads, self.head_at, self.inner, self.role = heads, head_at, inner, role


def _operand(
    builder: GraphBuilder, value: Value, ndim: int, out_ndim: int, last_role: str, second_role: str
) -> _Operand | None:
    """Classify ``value``'s channels: ``last_role`` / ``second_role`` for the last two dims."""
    shift = out_ndim - ndim
    roles = {ndim - 1: last_role, ndim - 2: second_role}
    if len(value.dims) == 1:
        dim = value.dims[0]
        if dim in roles:
            return _Operand(None, None, value.layout, roles[dim])
        return _Operand(value.layout, dim + shift, None, "batch")
    if len(value.dims) == 2 and value.dims[0] < ndim - 2 and value.dims[1] in roles:
        layout = builder.uf.expand(value.layout)
        if len(layout) != 1 or layout[0].block != 1:
            return None
        heads = value.sizes[0]
        group = builder.uf.split_parts(layout[0].group, heads)
        return _Operand(
            ((Segment(group, heads)),), value.dims[0] + shift, layout, roles[value.dims[1]]
        )
    return None


def _price(builder: GraphBuilder, node: fx.Node, layout: Layout, total: int, tag: str = "") -> None:
    width = layout_width(layout)
    builder.record(ModuleUse(f"@{node.name}{tag}", "matmul", layout, (), total // width))


def _tie_heads(builder: GraphBuilder, node: fx.Node, operands: list[_Operand]) -> Layout | None:
    heads = [o for o in operands if o.heads is not None]
    if not heads:
        return None
    if len({o.head_at for o in heads}) != 1:
        builder.unknown(node, "a matmul of heads at different dims")
        return None
    return builder.tie(node, [o.heads for o in heads])  # type: ignore[misc]


def _per_head_untracked(
    builder: GraphBuilder, node: fx.Node, args: list[Any], at: int, heads: Layout
) -> None:
    """An untracked operand with a full head dimension: its heads cannot be removed."""
    out = tensor_shape(node) or ()
    for arg in args:
        shape = tensor_shape(arg)
        if builder.value(arg) is None and shape is not None:
            aligned = (1,) * (len(out) - len(shape)) + shape
            if at < len(aligned) and aligned[at] != 1:
                for segment in heads:
                    builder.uf.block(
                        segment.group, f"per head in {builder.origin(arg)} at {node.name}"
                    )


@on(torch.matmul, torch.bmm, operator.matmul, ("method", "matmul"), ("method", "bmm"))
def _matmul(builder: GraphBuilder, node: fx.Node) -> Value | None:
    left, right = node.args[0], node.args[1]
    a_shape, b_shape, out = tensor_shape(left), tensor_shape(right), tensor_shape(node)
    if a_shape is None or b_shape is None or out is None or len(a_shape) < 2 or len(b_shape) < 2:
        return builder.unknown(node, "matmul")
    va, vb = builder.value(left), builder.value(right)
    if va is None and vb is None:
        return None
    a = _operand(builder, va, len(a_shape), len(out), "k", "free") if va else None
    b = _operand(builder, vb, len(b_shape), len(out), "free", "k") if vb else None
    if (va is not None and a is None) or (vb is not None and b is None):
        return builder.unknown(node, "matmul of channels split this way")
    operands = [o for o in (a, b) if o is not None]
    contracted = [o for o in operands if o.role == "k"]
    free = [(o, side) for o, side in ((a, "a"), (b, "b")) if o is not None and o.role == "free"]
    if len(contracted) == 1 or len(free) > 1:
        return builder.unknown(node, "a matmul mixing channels")
    total = math.prod(out) * a_shape[-1]
    heads = _tie_heads(builder, node, operands)
    head_at = next((o.head_at for o in operands if o.heads is not None), None)
    if heads is not None and head_at is not None:
        _per_head_untracked(builder, node, [left, right], head_at, heads)
    if contracted:
        inner = builder.tie(node, [o.inner for o in contracted])  # type: ignore[misc]
        _price(builder, node, inner, total)
        if heads is not None:
            builder.attention.append(
                {"kind": "qk", "node": node.name, "heads": heads[0].group, "group": inner[0].group}
            )
            return Value.along(heads, head_at)  # type: ignore[arg-type]
        return None
    if free:
        operand, side = free[0]
        inner_layout = operand.inner
        assert inner_layout is not None
        _price(builder, node, inner_layout, total)
        at = len(out) - 2 if side == "a" else len(out) - 1
        if heads is not None and operand.heads is not None:
            if any(o is not operand and o.heads is not None for o in operands):
                builder.attention.append(
                    {
                        "kind": "pv",
                        "node": node.name,
                        "heads": heads[0].group,
                        "group": inner_layout[0].group,
                    }
                )
            sizes = (layout_width(heads), layout_width(inner_layout) // layout_width(heads))
            return Value(inner_layout, (head_at, at), sizes)  # type: ignore[arg-type]
        if heads is not None:
            return builder.unknown(node, "a matmul of heads with channels not split by heads")
        return Value.along(inner_layout, at)
    assert heads is not None and head_at is not None  # only heads tracked: scores @ tokens
    _price(builder, node, heads, total)
    return Value.along(heads, head_at)


@on(functional.scaled_dot_product_attention)
def _sdpa(builder: GraphBuilder, node: fx.Node) -> Value | None:
    query, key, value = node.args[0], node.args[1], node.args[2]
    q_shape, k_shape, v_shape = (tensor_shape(t) for t in (query, key, value))
    out = tensor_shape(node)
    if q_shape is None or k_shape is None or v_shape is None or out is None:
        return builder.unknown(node, "scaled_dot_product_attention")
    if argument(node, 7, "enable_gqa", False):
        return builder.unknown(node, "grouped-query attention")
    vq, vk, vv = (builder.value(t) for t in (query, key, value))
    n = len(out)
    parts = [
        _operand(builder, v, len(s), n, "k", "free") if v is not None else None
        for v, s in ((vq, q_shape), (vk, k_shape), (vv, v_shape))
    ]
    if any(v is not None and p is None for v, p in zip((vq, vk, vv), parts, strict=True)):
        return builder.unknown(node, "attention on channels split this way")
    q, k, v = parts
    if (q is None) != (k is None) or (q is not None and (q.role, k.role) != ("k", "k")):  # type: ignore[union-attr]
        return builder.unknown(node, "attention whose query and key channels differ")
    if v is not None and v.role != "k":
        return builder.unknown(node, "attention on the value's tokens")
    operands = [o for o in parts if o is not None]
    heads = _tie_heads(builder, node, operands)
    head_at = next((o.head_at for o in operands if o.heads is not None), None)
    mask = argument(node, 3, "attn_mask")
    if heads is not None and head_at is not None:
        mask_value = builder.value(mask)
        if mask_value is not None and mask_value.dims == (
            head_at - (n - len(tensor_shape(mask) or ())),
        ):
            builder.tie(node, [heads, mask_value.layout])
        elif mask_value is not None:
            builder.unknown(node, "an attention mask with channels")
        else:
            _per_head_untracked(builder, node, [query, key, value, mask], head_at, heads)
    batch = math.prod(out[:-2])
    pairs = batch * q_shape[-2] * k_shape[-2]
    result = None
    if q is not None and k is not None:
        inner = builder.tie(node, [q.inner, k.inner])  # type: ignore[list-item]
        _price(builder, node, inner, pairs * q_shape[-1], "#qk")
        if argument(node, 6, "scale") is None:
            record_sdpa_scale(builder, node, vq)  # type: ignore[arg-type]
        if heads is not None:
            builder.attention.append(
                {"kind": "qk", "node": node.name, "heads": heads[0].group, "group": inner[0].group}
            )
    if v is not None:
        assert v.inner is not None
        _price(builder, node, v.inner, pairs * v_shape[-1], "#pv")
        if heads is not None and v.heads is not None:
            builder.attention.append(
                {
                    "kind": "pv",
                    "node": node.name,
                    "heads": heads[0].group,
                    "group": v.inner[0].group,
                }
            )
            width = layout_width(v.inner)
            assert head_at is not None
            sizes = (layout_width(heads), width // layout_width(heads))
            result = Value(v.inner, (head_at, n - 1), sizes)
        elif heads is None:
            result = Value.along(v.inner, n - 1)
        else:
            return builder.unknown(node, "attention on values not split by heads")
    return result


@on(functional.layer_norm)
def _layer_norm(builder: GraphBuilder, node: fx.Node) -> Value | None:
    """``F.layer_norm`` over the channels alone, with an ``nn.LayerNorm``'s own weight and
    bias (a channels-first LayerNorm subclass that permutes, normalizes, permutes back): that
    LayerNorm carries the channels."""
    value, shape = builder.value(node.args[0]), tensor_shape(node.args[0])
    if value is None or shape is None:
        return value
    if all(d < len(shape) - len(argument(node, 1, "normalized_shape") or ()) for d in value.dims):
        return value
    weight = argument(node, 2, "weight")
    owner = str(weight.target).rpartition(".")[0] if isinstance(weight, fx.Node) else None
    attr = isinstance(weight, fx.Node) and weight.op == "get_attr"
    module = builder.model.get_submodule(owner) if owner and attr else None
    if not isinstance(module, nn.LayerNorm) or value.dims != (len(shape) - 1,):
        return builder.unknown(node, "layer_norm")
    if owner in builder.uses:  # the same LayerNorm again: its channels are the same
        builder.tie(node, [builder.uses[owner].inputs, value.layout])
        return value
    positions = math.prod(shape) // shape[-1]
    affine = module.weight is not None
    role = "norm" if module.bias is not None or not affine else "scale"
    builder.record(ModuleUse(owner, role, value.layout, value.layout, positions, 1, False, affine))  # type: ignore[arg-type]
    return value
