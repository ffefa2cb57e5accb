"""Permutes, reshapes, slices and splits in the channel graph: where channels move.

Permutes and transposes move the channel dimension; reshapes split it (into heads, or into
q, k and v side by side) or merge it back, and flatten channels into blocks of features;
slices, chunks and ``unbind`` along the channels split their groups into pieces (selecting
q, k or v out of a fused projection); indexing other dimensions carries the channels.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

import torch
from torch import fx

from greedy_compress.graph.dependency import Layout, Segment, layout_width
from greedy_compress.graph.ops import argument, dims_of, methods, on, tensor_shape
from greedy_compress.graph.sites import record_cut, record_site
from greedy_compress.graph.values import Value, reshaped

if TYPE_CHECKING:
    from greedy_compress.graph.build import GraphBuilder

__all__: list[str] = []


@on(torch.permute, *methods("permute"))
def _permute(builder: GraphBuilder, node: fx.Node) -> Value | None:
    value = builder.value(node.args[0])
    if value is None:
        return None
    order = node.args[1] if len(node.args) == 2 else node.args[1:]
    order = node.kwargs.get("dims", order)
    ndim = len(tensor_shape(node) or ())
    perm = dims_of(list(order), ndim) if isinstance(order, (list, tuple)) else None
    if perm is None:
        return builder.unknown(node, "permute")
    return value.moved({old: perm.index(old) for old in value.dims})


@on(torch.transpose, *methods("transpose"))
def _transpose(builder: GraphBuilder, node: fx.Node) -> Value | None:
    value, shape = builder.value(node.args[0]), tensor_shape(node)
    if value is None or shape is None:
        return None
    pair = dims_of([argument(node, 1, "dim0"), argument(node, 2, "dim1")], len(shape))
    if pair is None:
        return builder.unknown(node, "transpose")
    a, b = pair
    return value.moved({d: b if d == a else a if d == b else d for d in value.dims})


@on(torch.unsqueeze, *methods("unsqueeze"))
def _unsqueeze(builder: GraphBuilder, node: fx.Node) -> Value | None:
    value, shape = builder.value(node.args[0]), tensor_shape(node)
    if value is None or shape is None:
        return None
    dim = argument(node, 1, "dim") % len(shape)
    return value.shifted(dim, 1)


def _reshaped_operand(
    builder: GraphBuilder, node: fx.Node
) -> tuple[Value, tuple[int, ...], tuple[int, ...]] | None:
    """The input's value and its shapes before and after ``node``; None where not traced."""
    value, before, after = (
        builder.value(node.args[0]),
        tensor_shape(node.args[0]),
        tensor_shape(node),
    )
    if value is None or before is None or after is None:
        return None
    return value, before, after


@on(torch.squeeze, *methods("squeeze"))
def _squeeze(builder: GraphBuilder, node: fx.Node) -> Value | None:
    operand = _reshaped_operand(builder, node)
    if operand is None:
        return None
    value, before, after = operand
    return _via_reshape(builder, node, value, before, after, site=False)


@on(*methods("expand", "expand_as"))
def _expand(builder: GraphBuilder, node: fx.Node) -> Value | None:
    operand = _reshaped_operand(builder, node)
    if operand is None:
        return None
    value, before, after = operand
    shift = len(after) - len(before)
    moved = value.shifted(0, shift)
    if any(after[d] != before[d - shift] for d in moved.dims):
        return builder.unknown(node, "expand of the channels")
    return moved


def _via_reshape(
    builder: GraphBuilder,
    node: fx.Node,
    value: Value,
    before: tuple[int, ...],
    after: tuple[int, ...],
    *,
    site: bool,
) -> Value | None:
    moved = reshaped(value, before, after)
    if isinstance(moved, str):
        return builder.unknown(node, f"{node.target} that {moved}")
    result: Value | None = moved
    if len(moved.dims) > 1 and len(moved.dims) > len(value.dims):
        result = _split(builder, node, moved)
        if result is None:
            return None
    if site and result is not None:
        record_site(builder, node, result, after)
    return result


def _split(builder: GraphBuilder, node: fx.Node, value: Value) -> Value | None:
    """Channels split over several dims: a stack of pieces of equal width (q, k and v), or
    one group split into heads (decided when the heads are used)."""
    outer, inner = value.sizes[0], math.prod(value.sizes[1:])
    layout = builder.uf.expand(value.layout)
    if any(s.block != 1 for s in layout):
        return builder.unknown(node, f"{node.target} that splits flattened channels")
    if len(layout) == 1 and len(value.dims) > 2:  # (3, heads, head_dim): q, k, v pieces
        builder.uf.refine(layout[0].group, [i * inner for i in range(1, outer)])
        layout = builder.uf.expand(layout)
    if len(layout) > 1 and (len(layout) != outer or any(s.size != inner for s in layout)):
        return builder.unknown(node, f"{node.target} that splits several channel groups")
    return Value(layout, value.dims, value.sizes)


@on(torch.reshape, torch.flatten, *methods("view", "reshape", "flatten", "unflatten"))
def _reshape(builder: GraphBuilder, node: fx.Node) -> Value | None:
    operand = _reshaped_operand(builder, node)
    if operand is None:
        return None
    value, before, after = operand
    site = node.target not in (torch.flatten, "flatten")
    return _via_reshape(builder, node, value, before, after, site=site)


# indexing and splitting -------------------------------------------------------------------


def _select(builder: GraphBuilder, node: fx.Node, value: Value, index: int) -> Value | None:
    """Piece ``index`` of a stack (``qkv[0]``): the rest of its dims."""
    layout = builder.uf.expand(value.layout)
    outer = value.sizes[0]
    if len(layout) == 1:
        inner = layout[0].size // outer
        builder.uf.refine(layout[0].group, [i * inner for i in range(1, outer)])
        layout = builder.uf.expand(layout)
    if len(layout) != outer:
        return builder.unknown(node, "a selection across channel groups")
    return Value((layout[index],), value.dims[1:], value.sizes[1:])


def _cut(builder: GraphBuilder, layout: Layout, offsets: list[int]) -> list[Layout]:
    """``layout`` cut at feature offsets into consecutive layouts (groups refined)."""
    start = 0
    for segment in builder.uf.expand(layout):
        width = segment.size * segment.block
        inner = [(o - start) // segment.block for o in offsets if start < o < start + width]
        builder.uf.refine(segment.group, inner)
        start += width
    out: list[list[Segment]] = [[]]
    bounds = set(offsets)
    start = 0
    for segment in builder.uf.expand(layout):
        if start in bounds and out[-1]:
            out.append([])
        out[-1].append(segment)
        start += segment.size * segment.block
    return [tuple(part) for part in out]


@on(operator.getitem)
def _getitem(builder: GraphBuilder, node: fx.Node) -> Any:
    source, index = node.args[0], node.args[1]
    stored = builder.values.get(source) if isinstance(source, fx.Node) else None
    if isinstance(stored, tuple):
        return stored[index] if isinstance(index, int) else builder.unknown(node, "getitem")
    value, shape = builder.value(source), tensor_shape(source)
    if value is None or shape is None:
        return None
    items = list(index) if isinstance(index, tuple) else [index]
    used = sum(1 for item in items if item is not None and item is not Ellipsis)
    spread = (len(items), 0)  # items at or after this position moved by this many
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (len(shape) - used)
        spread = (at, len(shape) - used - 1)
    items += [slice(None)] * (len(shape) - used - items.count(Ellipsis))
    mapping: dict[int, int] = {}
    dim = out = 0
    for position, item in enumerate(items):
        if item is None:
            out += 1
            continue
        channel = dim in value.dims
        if isinstance(item, int):
            if channel and dim == value.dims[0] and len(value.dims) > 1:
                selected = _select(builder, node, value, item % shape[dim])
                if selected is None:
                    return None
                value = selected
            elif channel:
                return builder.unknown(node, "indexing of one channel")
        elif isinstance(item, slice):
            whole = item.start in (None, 0) and item.stop is None and item.step in (None, 1)
            if channel and not whole:
                if len(value.dims) > 1 or item.step not in (None, 1):
                    return builder.unknown(node, "a strided slice of the channels")
                begin, end, _ = item.indices(shape[dim])
                parts = _cut(builder, value.layout, [begin, end])
                start = 0
                cut: tuple[list[Segment], ...] = ([], [], [])
                for part in parts:
                    cut[0 if start < begin else 1 if start < end else 2].extend(part)
                    start += layout_width(part)
                if isinstance(index, tuple):
                    slot = position if position < spread[0] else position - spread[1]
                else:
                    slot = -1
                record_cut(builder, node, "slice", [tuple(c) for c in cut], dim, slot)
                value = Value.along(tuple(cut[1]), dim)
            mapping[dim] = out
            out += 1
        elif isinstance(item, fx.Node) and not channel:
            mapping[dim] = out  # one tensor index on another dim: its dims take this place
            out += len(tensor_shape(item) or (1,))
        else:
            return builder.unknown(node, "indexing of the channels")
        dim += 1
    return value.moved({d: mapping[d] for d in value.dims})


def _pieces(builder: GraphBuilder, node: fx.Node, dim_arg: int, drop: bool) -> Any:
    value, shape = builder.value(node.args[0]), tensor_shape(node.args[0])
    metas = node.meta.get("tensor_meta")
    if shape is None or not isinstance(metas, (tuple, list)):
        return builder.unknown(node, str(node.target))
    dim = argument(node, dim_arg, "dim", 0) % len(shape)
    count = len(metas)
    if value is None:
        return (None,) * count
    if dim not in value.dims:
        moved = value.moved({d: d - (drop and d > dim) for d in value.dims})
        return (moved,) * count
    if drop and dim == value.dims[0] and len(value.dims) > 1:  # unbind a stack: q, k, v
        pieces = [_select(builder, node, value, i) for i in range(count)]
        return tuple(p.shifted(dim + 1, -1) if p is not None else None for p in pieces)
    if not drop and value.dims == (dim,):
        widths = [tuple(m.shape)[dim] for m in metas]
        offsets = [sum(widths[: i + 1]) for i in range(count - 1)]
        parts = _cut(builder, value.layout, offsets)
        if len(parts) == count:
            record_cut(builder, node, "pieces", parts, dim)
            return tuple(Value.along(part, dim) for part in parts)
    builder.unknown(node, f"{node.target} of the channels")
    return (None,) * count


on(torch.chunk, torch.split, torch.tensor_split, *methods("chunk", "split", "tensor_split"))(
    lambda builder, node: _pieces(builder, node, 2, drop=False)
)
on(torch.unbind, *methods("unbind"))(lambda builder, node: _pieces(builder, node, 1, drop=True))
