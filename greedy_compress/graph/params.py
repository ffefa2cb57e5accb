"""Parameters laid out along the channels: follow a tensor back to the parameter it views.

A layer scale (``gamma * x``), a class token concatenated to the tokens, a position
embedding added to them, a relative position bias table indexed and permuted into
``(heads, tokens, tokens)``: each is a parameter reached through views (``expand``,
``view``, ``permute``, ``unsqueeze``, indexing along other dims) and combined with the
channels along one of its dimensions. Pruning those channels slices the parameter too.
"""

from __future__ import annotations

import math
from typing import Any

from torch import fx

from greedy_compress.graph.values import reshape_groups

__all__ = ["backtrack"]

_SAME = {"contiguous", "clone", "to", "float", "type_as", "detach"}


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _step(node: fx.Node, dim: int) -> tuple[fx.Node, int] | None:
    """The node before ``node`` and the dim there that becomes ``dim`` of ``node``."""
    args: Any = node.args
    source = args[0] if args else None
    if not isinstance(source, fx.Node):
        return None
    before, after = _shape(source), _shape(node)
    if before is None or after is None:
        return None
    target = node.target
    if node.op == "call_method" and target in _SAME:
        return source, dim
    if node.op == "call_method" and target in ("expand", "expand_as"):
        shift = len(after) - len(before)
        return (source, dim - shift) if dim >= shift and before[dim - shift] == after[dim] else None
    if node.op == "call_method" and target == "unsqueeze":
        inserted = int(args[1]) % len(after)
        return None if dim == inserted else (source, dim - (dim > inserted))
    if node.op == "call_method" and target == "permute":
        order = args[1] if len(args) == 2 else args[1:]
        return source, int(list(order)[dim]) % len(after)
    if node.op == "call_method" and target == "transpose":
        a, b = (int(d) % len(after) for d in args[1:3])
        return source, b if dim == a else a if dim == b else dim
    if node.op == "call_method" and target in ("view", "reshape"):
        for left, right in reshape_groups(before, after) or ():
            if dim in right:
                sized = [j for j in right if after[j] != 1]
                inner = [i for i in left if before[i] != 1]
                if sized == [dim] and len(inner) == 1 and before[inner[0]] == after[dim]:
                    return source, inner[0]
                return None
        return None
    if node.op == "call_function" and getattr(target, "__name__", "") == "getitem":
        index = args[1]
        items = list(index) if isinstance(index, tuple) else [index]
        if any(i is None or i is Ellipsis or isinstance(i, int) for i in items):
            return None
        if len(items) == 1 and isinstance(items[0], fx.Node) and dim >= len(_shape(items[0]) or ()):
            return source, dim - len(_shape(items[0]) or ()) + 1  # table[index]: other dims
        if dim < len(items) and items[dim] != slice(None):
            return None
        return source, dim
    return None


def backtrack(gm: fx.GraphModule, node: Any, dim: int) -> tuple[str, int, int] | None:
    """``(parameter name, its dim, its number of elements)`` when ``node`` is a parameter
    seen through views, each used once, and its dim ``dim`` comes from that parameter dim."""
    while isinstance(node, fx.Node):
        if len(node.users) != 1:
            return None
        if node.op == "get_attr":
            try:
                parameter = gm.get_parameter(str(node.target))
            except AttributeError:
                return None
            return str(node.target), dim, math.prod(parameter.shape)
        step = _step(node, dim)
        if step is None:
            return None
        node, dim = step
    return None
