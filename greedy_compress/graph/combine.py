"""Element-wise ops and concatenation in the channel graph: where groups are tied.

Residual adds, gates and masks tie the groups of their operands; a tensor broadcast along
the channels is fine, a parameter laid out along them (layer scale, position embedding,
class token) is a carrier pruned with them, anything else full-size blocks them.
Concatenation along the channels lays groups side by side; along another dimension it ties
them.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import torch
from torch import fx

from greedy_compress.graph.ops import argument, carrier, methods, on, tensor_shape
from greedy_compress.graph.values import Value

if TYPE_CHECKING:
    from greedy_compress.graph.build import GraphBuilder

__all__: list[str] = []


def _combine(builder: GraphBuilder, node: fx.Node, tensors: list[Any], out: tuple[int, ...]):
    """Tie the tracked ``tensors`` (aligned right to ``out``); untracked ones must broadcast
    along the channels or be parameters laid out along them."""
    tracked: list[Value] = []
    untracked: list[tuple[Any, tuple[int, ...], int]] = []
    for arg in tensors:
        shape = tensor_shape(arg)
        if shape is None:
            continue
        shift = len(out) - len(shape)
        value = builder.value(arg)
        if value is None:
            untracked.append((arg, shape, shift))
        else:
            tracked.append(value.shifted(0, shift))
    if not tracked:
        return None
    first = tracked[0]
    if any(v.dims != first.dims or v.sizes != first.sizes for v in tracked[1:]):
        return builder.unknown(node, f"{node.target} of channels laid out differently")
    layout = builder.tie(node, [v.layout for v in tracked])
    for arg, shape, shift in untracked:
        aligned = (1,) * shift + shape
        full = [d for d in first.dims if aligned[d] != 1]
        if not full:
            continue
        if len(first.dims) == 1 and carrier(builder, arg, first.dims[0] - shift, layout, node):
            continue
        builder.block_layout(layout, f"combined with {builder.origin(arg)} at {node.name}")
        return None
    return Value(layout, first.dims, first.sizes)


@on(
    operator.add,
    operator.iadd,
    operator.sub,
    operator.mul,
    operator.imul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.maximum,
    torch.minimum,
    torch.where,
    *methods("add", "add_", "sub", "mul", "mul_", "div", "masked_fill", "masked_fill_", "where"),
)
def _elementwise(builder: GraphBuilder, node: fx.Node) -> Value | None:
    out = tensor_shape(node)
    tensors = [a for a in fx.node.map_aggregate(node.args, lambda a: a) if isinstance(a, fx.Node)]
    tensors += [a for a in node.kwargs.values() if isinstance(a, fx.Node)]
    if out is None:
        return None if not builder.tracked_inputs(node) else builder.unknown(node, "arithmetic")
    return _combine(builder, node, tensors, out)


@on(torch.cat, torch.concat)
def _cat(builder: GraphBuilder, node: fx.Node) -> Value | None:
    tensors, out = argument(node, 0, "tensors"), tensor_shape(node)
    if not isinstance(tensors, (list, tuple)) or out is None:
        return builder.unknown(node, "cat")
    dim = argument(node, 1, "dim", 0) % len(out)
    values = [builder.value(t) for t in tensors]
    if all(v is None for v in values):
        return None
    channel_dims = {v.dims for v in values if v is not None}
    if channel_dims == {(dim,)}:
        layout = tuple(
            s
            for t, v in zip(tensors, values, strict=True)
            for s in (v.layout if v is not None else builder.materialize(t, dim))
        )
        return Value.along(layout, dim)
    if dim in {d for dims in channel_dims for d in dims}:
        return builder.unknown(node, "cat of channels laid out differently")
    return _combine(builder, node, list(tensors), out)
