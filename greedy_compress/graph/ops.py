"""What traced functions and methods do to channels: one small visitor per kind of op.

Channel-wise ops carry a tensor's value; element-wise ops tie their operands' groups (a
broadcast parameter along the channels is a carrier: a layer scale, a position embedding);
permutes and reshapes move or split the channel dimensions; slices and chunks along the
channels split groups into pieces; concatenation lays groups side by side (or ties them,
along another dimension); matmuls and ``scaled_dot_product_attention`` tie what they
contract (attention's q and k), carry what they do not (v), split the groups into heads and
are priced with their widths. Anything not listed blocks the channels it reads.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import fx
from torch.nn import functional

from greedy_compress.graph.dependency import Layout, ModuleUse, layout_width
from greedy_compress.graph.params import backtrack
from greedy_compress.graph.values import Value

if TYPE_CHECKING:
    from greedy_compress.graph.build import GraphBuilder

__all__ = ["argument", "carrier", "dims_of", "methods", "on", "tensor_shape", "visit_call"]

Visitor = Callable[["GraphBuilder", fx.Node], Any]
_VISITORS: dict[Any, Visitor] = {}


def on(*targets: Any) -> Callable[[Visitor], Visitor]:
    """Register a visitor for functions (or ``("method", name)`` for methods)."""

    def add(visitor: Visitor) -> Visitor:
        for target in targets:
            _VISITORS[target] = visitor
        return visitor

    return add


def methods(*names: str) -> tuple[tuple[str, str], ...]:
    """Registry keys of tensor methods."""

    return tuple(("method", name) for name in names)


_METADATA = {getattr, *methods("size", "dim", "numel", "element_size", "stride")}


def tensor_shape(node: Any) -> tuple[int, ...] | None:
    """The traced shape of a node's tensor (None otherwise)."""

    from greedy_compress.graph.build import shape_of

    return shape_of(node)


def argument(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """A call's argument by position or keyword."""

    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def dims_of(dims: Any, ndim: int) -> list[int] | None:
    """Dimension arguments made non-negative (None when not ints)."""

    if isinstance(dims, int):
        dims = [dims]
    if not isinstance(dims, (list, tuple)) or not all(isinstance(d, int) for d in dims):
        return None
    return [d % ndim for d in dims]


def visit_call(builder: GraphBuilder, node: fx.Node) -> Any:
    """The value of a ``call_function`` / ``call_method`` node."""
    key = node.target if node.op == "call_function" else ("method", node.target)
    label = getattr(node.target, "__name__", str(node.target))
    kind = "method" if node.op == "call_method" else "function"
    visitor = _VISITORS.get(key)
    if visitor is None:
        if key in _METADATA or (tensor_shape(node) is None and not builder.tracked_inputs(node)):
            return None  # sizes, attributes, arithmetic on them: no tensor flows on
        return builder.unknown(node, f"{kind} {label}")
    result = visitor(builder, node)
    if result is None and node not in builder.origins:
        source = node.args[0] if node.args else None
        inherited = builder.origins.get(source) if isinstance(source, fx.Node) else None
        builder.origins[node] = inherited or f"made by {kind} {label} ({node.name})"
    return result


# carried as they are ----------------------------------------------------------------------


@on(
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.exp,
    torch.abs,
    functional.relu,
    functional.relu6,
    functional.leaky_relu,
    functional.gelu,
    functional.silu,
    functional.mish,
    functional.hardswish,
    functional.hardsigmoid,
    functional.sigmoid,
    functional.dropout,
    functional.dropout1d,
    functional.dropout2d,
    operator.neg,
    *methods(
        "relu",
        "relu_",
        "sigmoid",
        "sigmoid_",
        "tanh",
        "exp",
        "abs",
        "neg",
        "contiguous",
        "clone",
        "detach",
        "float",
        "half",
        "double",
        "to",
        "type_as",
        "requires_grad_",
    ),
)
def _channelwise(builder: GraphBuilder, node: fx.Node) -> Value | None:
    return builder.value(node.args[0])


def _spatial(count: Callable[[int], int]) -> Visitor:
    """Ops on the last ``count(ndim)`` dims (pooling, interpolation): channels elsewhere."""

    def visit(builder: GraphBuilder, node: fx.Node) -> Value | None:
        value, shape = builder.value(node.args[0]), tensor_shape(node.args[0])
        if value is None or shape is None:
            return None
        if any(d >= len(shape) - count(len(shape)) for d in value.dims):
            return builder.unknown(node, f"{node.target} over the channels")
        return value

    return visit


def _fixed(count: int) -> Callable[[int], int]:
    return lambda ndim: count


on(functional.max_pool1d, functional.avg_pool1d, functional.adaptive_avg_pool1d)(
    _spatial(_fixed(1))
)
on(
    functional.max_pool2d,
    functional.avg_pool2d,
    functional.adaptive_avg_pool2d,
    functional.adaptive_max_pool2d,
)(_spatial(_fixed(2)))
on(functional.interpolate)(_spatial(lambda ndim: ndim - 2))


@on(torch.roll)
def _roll(builder: GraphBuilder, node: fx.Node) -> Value | None:
    value, shape = builder.value(node.args[0]), tensor_shape(node.args[0])
    if value is None or shape is None:
        return None
    dims = dims_of(argument(node, 2, "dims"), len(shape))
    if dims is None or set(dims) & set(value.dims):
        return builder.unknown(node, "roll over the channels")
    return value


@on(functional.pad)
def _pad(builder: GraphBuilder, node: fx.Node) -> Value | None:
    value, shape = builder.value(node.args[0]), tensor_shape(node.args[0])
    pad = argument(node, 1, "pad")
    if value is None or shape is None:
        return None
    if not isinstance(pad, (list, tuple)) or not all(isinstance(p, int) for p in pad):
        return builder.unknown(node, "pad")
    padded = {len(shape) - 1 - i // 2 for i, p in enumerate(pad) if p}
    return builder.unknown(node, "pad of the channels") if padded & set(value.dims) else value


@on(
    functional.softmax,
    functional.log_softmax,
    torch.softmax,
    torch.log_softmax,
    functional.normalize,
    *methods("softmax", "log_softmax"),
)
def _along(builder: GraphBuilder, node: fx.Node) -> Value | None:
    value, shape = builder.value(node.args[0]), tensor_shape(node.args[0])
    if value is None or shape is None:
        return None
    dims = dims_of(argument(node, 1, "dim", 1), len(shape))
    if dims is None or set(dims) & set(value.dims):
        return builder.unknown(
            node, f"{getattr(node.target, '__name__', node.target)} over the channels"
        )
    return value


@on(torch.mean, torch.sum, torch.amax, torch.amin, *methods("mean", "sum", "amax", "amin"))
def _reduce(builder: GraphBuilder, node: fx.Node) -> Value | None:
    value, shape = builder.value(node.args[0]), tensor_shape(node.args[0])
    if value is None or shape is None:
        return None
    dims = dims_of(argument(node, 1, "dim"), len(shape))
    if dims is None or set(dims) & set(value.dims):
        return builder.unknown(node, "a reduction over the channels")
    if argument(node, 2, "keepdim", False):
        return value
    return value.moved({d: d - sum(r < d for r in dims) for d in value.dims})


def carrier(builder: GraphBuilder, arg: Any, dim: int, layout: Layout, node: fx.Node) -> bool:
    """Record a parameter laid out along the channels (reached through views), if it is
    one; True when it is."""
    found = backtrack(builder.gm, arg, dim)
    if found is None:
        return False
    name, axis, numel = found
    width = layout_width(layout)
    previous = builder.uses.get(name)
    if previous is not None:
        builder.tie(node, [previous.inputs, layout])
        return True
    use = ModuleUse(name, "param", layout, layout, numel // width, axis=axis)
    builder.record(use)
    return True


from greedy_compress.graph import combine as _combine  # noqa: E402  (register their visitors)
from greedy_compress.graph import matmul as _matmul  # noqa: E402
from greedy_compress.graph import reshapes as _reshapes  # noqa: E402

del _combine, _matmul, _reshapes
