"""Work out a traced model's channel groups.

Each node's output gets a *layout* (which groups its channels belong to). Modules are
handled by their type's handler (:mod:`greedy_compress.graph.handlers`: convs and Linears
start new groups, BatchNorms, activations, pooling, dropout and depthwise convs carry their
input's layout, ...); residual adds tie the groups of their operands, concatenation lays
groups side by side, and flattening into a Linear turns each channel into a block of
features. Anything else blocks the groups it touches, with the reason, so they are left
alone.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from greedy_compress.errors import GraphTraceError
from greedy_compress.graph.dependency import (
    ChannelGroup,
    DependencyGraph,
    Layout,
    ModuleUse,
    Segment,
)
from greedy_compress.graph.handlers import flatten_layout, handler_for
from greedy_compress.model.modes import eval_mode
from greedy_compress.model.trace import trace_model

__all__ = ["GraphBuilder", "build_graph"]

# Functions and methods that act on each channel separately: output layout = input layout.
_CHANNELWISE_FUNCTIONS = {
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.nn.functional.relu,
    torch.nn.functional.relu6,
    torch.nn.functional.leaky_relu,
    torch.nn.functional.gelu,
    torch.nn.functional.silu,
    torch.nn.functional.hardswish,
    torch.nn.functional.sigmoid,
    torch.nn.functional.dropout,
    torch.nn.functional.max_pool1d,
    torch.nn.functional.max_pool2d,
    torch.nn.functional.avg_pool1d,
    torch.nn.functional.avg_pool2d,
    torch.nn.functional.adaptive_avg_pool1d,
    torch.nn.functional.adaptive_avg_pool2d,
    torch.nn.functional.adaptive_max_pool2d,
    torch.nn.functional.interpolate,
    operator.neg,
}
_CHANNELWISE_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "tanh",
    "contiguous",
    "clone",
    "detach",
    "float",
    "neg",
}
_ELEMENTWISE = {
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
}
_ELEMENTWISE_METHODS = {"add", "add_", "sub", "mul", "mul_", "div"}
_CAT = {torch.cat, torch.concat}
_FLATTEN = {torch.flatten}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_REDUCE = {torch.mean, torch.sum, torch.amax}
_REDUCE_METHODS = {"mean", "sum", "amax"}
_METADATA_METHODS = {"size", "dim"}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.blocked: list[str | None] = []

    def new(self, size: int, blocked: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.blocked.append(blocked)
        return len(self.parent) - 1

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def block(self, item: int, reason: str) -> None:
        root = self.find(item)
        if self.blocked[root] is None:
            self.blocked[root] = reason

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        self.parent[b] = a
        if self.blocked[a] is None:
            self.blocked[a] = self.blocked[b]


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


class GraphBuilder:
    """Walks the traced graph once, node by node; handlers call back into it."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.uf = _UnionFind()
        self.layouts: dict[fx.Node, Layout] = {}
        self.uses: dict[str, ModuleUse] = {}
        self.calls: dict[str, int] = {}
        self.blocked_modules: dict[str, str] = {}

    # layouts -------------------------------------------------------------------------

    def fresh(self, node: fx.Node, blocked: str | None = None) -> Layout | None:
        shape = _shape(node)
        if shape is None:
            return None
        channels = shape[1] if len(shape) >= 2 else 1
        return (Segment(self.uf.new(channels, blocked), channels),)

    def block_layout(self, layout: Layout | None, reason: str) -> None:
        for segment in layout or ():
            self.uf.block(segment.group, reason)

    def tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []

        def note(arg: fx.Node) -> fx.Node:
            found.append(arg)
            return arg

        fx.node.map_arg((node.args, node.kwargs), note)
        return [n for n in found if n in self.layouts]

    def unknown(self, node: fx.Node, what: str) -> Layout | None:
        reason = f"used by {what} ({node.name}), which the dependency graph does not model"
        for source in self.tensor_inputs(node):
            self.block_layout(self.layouts[source], reason)
        return self.fresh(node, blocked=f"made by {what} ({node.name})")

    def tie(self, node: fx.Node, layouts: list[Layout]) -> Layout:
        first = layouts[0]
        for other in layouts[1:]:
            same = [(s.size, s.block) for s in first] == [(s.size, s.block) for s in other]
            if same:
                for a, b in zip(first, other, strict=True):
                    self.uf.union(a.group, b.group)
            else:
                reason = f"combined with differently laid out channels at {node.name}"
                for layout in layouts:
                    self.block_layout(layout, reason)
        return first

    # nodes ---------------------------------------------------------------------------

    def visit(self, node: fx.Node) -> Layout | None:
        if node.op == "placeholder":
            return self.fresh(node, blocked="the model's input")
        if node.op == "get_attr":
            return self.fresh(node, blocked=f"a tensor attribute of the model ({node.target})")
        if node.op == "output":
            for source in self.tensor_inputs(node):
                self.block_layout(self.layouts[source], "the model's output")
            return None
        if node.op == "call_module":
            return self.visit_module(node)
        if node.op == "call_function":
            return self.visit_function(node, node.target, kind="function")
        if node.op == "call_method":
            return self.visit_function(node, node.target, kind="method")
        return self.unknown(node, f"node {node.op}")

    def input_layout(self, node: fx.Node) -> Layout | None:
        arg = node.args[0] if node.args else None
        return self.layouts.get(arg) if isinstance(arg, fx.Node) else None

    def visit_module(self, node: fx.Node) -> Layout | None:
        name = str(node.target)
        module = self.gm.get_submodule(name)
        inputs = self.input_layout(node)
        handler = handler_for(module)
        if handler is None:
            return self.unknown(node, f"module {name} ({type(module).__name__})")
        if not handler.reusable:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] > 1:
                self.blocked_modules[name] = "called more than once per forward pass"
                self.block_layout(inputs, f"read by {name}, which is called more than once")
                if name in self.uses:
                    self.block_layout(self.uses[name].outputs, f"{name} is called more than once")
                return self.fresh(node, blocked=f"made by {name}, which is called more than once")
        in_shape = _shape(node.args[0]) if node.args else None
        return handler.visit(self, node, name, module, inputs, in_shape, _shape(node))

    def record(self, use: ModuleUse) -> None:
        """Note how module ``use.name`` touches channels (handlers call this)."""
        self.uses[use.name] = use

    def produce(
        self,
        node: fx.Node,
        name: str,
        role: str,
        inputs: Layout,
        positions: int,
        kernel: int,
        bias: bool,
    ) -> Layout | None:
        """A module reading ``inputs`` and writing a new channel group; its output layout."""
        outputs = self.fresh(node)
        if outputs is None:
            return None
        self.record(ModuleUse(name, role, inputs, outputs, positions, kernel, bias))
        return outputs

    def visit_function(self, node: fx.Node, target: Any, kind: str) -> Layout | None:
        label = getattr(target, "__name__", str(target))
        inputs = self.input_layout(node)
        in_shape = _shape(node.args[0]) if node.args else None
        out_shape = _shape(node)
        if out_shape is None and (target in _METADATA_METHODS or target is getattr):
            return None  # sizes and attributes: no tensor flows on
        is_method = kind == "method"
        if (target in _CHANNELWISE_METHODS) if is_method else (target in _CHANNELWISE_FUNCTIONS):
            return inputs if inputs is not None else self.unknown(node, label)
        if (target in _ELEMENTWISE_METHODS) if is_method else (target in _ELEMENTWISE):
            return self.elementwise(node, label)
        if not is_method and target in _CAT:
            return self.concatenate(node)
        if (target in _FLATTEN_METHODS) if is_method else (target in _FLATTEN):
            if inputs is None or in_shape is None or out_shape is None:
                return self.unknown(node, label)
            return flatten_layout(self, node, inputs, in_shape, out_shape)
        if (target in _REDUCE_METHODS) if is_method else (target in _REDUCE):
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            dims = (dims,) if isinstance(dims, int) else dims
            if (
                inputs is not None
                and in_shape is not None
                and out_shape is not None
                and isinstance(dims, (tuple, list))
                and all(isinstance(d, int) for d in dims)
                and all(d % len(in_shape) >= 2 for d in dims)  # spatial dims only
                and out_shape[:2] == in_shape[:2]
            ):
                return inputs
            return self.unknown(node, label)
        return self.unknown(node, f"{kind} {label}")

    def elementwise(self, node: fx.Node, label: str) -> Layout | None:
        out_shape = _shape(node)
        if out_shape is None or len(out_shape) < 2:
            return self.unknown(node, label)
        full, broadcast = [], []
        for source in self.tensor_inputs(node):
            shape = _shape(source)
            if shape is not None and len(shape) == len(out_shape) and shape[1] == out_shape[1]:
                full.append(self.layouts[source])
            else:
                broadcast.append(source)
        for source in broadcast:
            shape = _shape(source)
            if shape is not None and len(shape) >= 2 and shape[1] != 1:
                return self.unknown(node, label)  # e.g. a per-channel tensor not traced here
        if not full:
            return self.unknown(node, label)
        return self.tie(node, full)

    def concatenate(self, node: fx.Node) -> Layout | None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        out_shape = _shape(node)
        if not isinstance(tensors, (list, tuple)) or out_shape is None or not isinstance(dim, int):
            return self.unknown(node, "cat")
        layouts = [self.layouts.get(t) for t in tensors if isinstance(t, fx.Node)]
        if len(layouts) != len(tensors) or any(layout is None for layout in layouts):
            return self.unknown(node, "cat")
        if dim % len(out_shape) == 1:
            return tuple(s for layout in layouts for s in layout)  # type: ignore[union-attr]
        return self.tie(node, layouts)  # type: ignore[arg-type]

    # result --------------------------------------------------------------------------

    def finish(self) -> DependencyGraph:
        uf = self.uf

        def resolve(layout: Layout) -> Layout:
            return tuple(Segment(uf.find(s.group), s.size, s.block) for s in layout)

        uses = {
            name: dataclasses.replace(u, inputs=resolve(u.inputs), outputs=resolve(u.outputs))
            for name, u in self.uses.items()
        }
        groups: dict[int, ChannelGroup] = {}
        for use in uses.values():
            for segment in use.inputs + use.outputs:
                root = segment.group
                if root not in groups:
                    groups[root] = ChannelGroup(root, uf.size[root], blocked=uf.blocked[root])
                group = groups[root]
                if group.size != segment.size and group.blocked is None:
                    group.blocked = "tied to channels of a different count"
            for segment in use.outputs:
                group = groups[segment.group]
                target = group.carriers if use.role in ("depthwise", "norm") else group.producers
                if use.name not in target:
                    target.append(use.name)
            if use.role in ("conv", "linear"):
                for segment in use.inputs:
                    group = groups[segment.group]
                    if use.name not in group.consumers:
                        group.consumers.append(use.name)
        for name in self.blocked_modules:
            uses.pop(name, None)
        for group in groups.values():
            if group.blocked is None and any(m in self.blocked_modules for m in group.members):
                group.blocked = "touches a module called more than once"
        return DependencyGraph(groups=groups, modules=uses, blocked_modules=self.blocked_modules)


def build_graph(model: nn.Module, example_input: torch.Tensor) -> DependencyGraph:
    """Trace ``model`` and return its channel groups, shapes taken from ``example_input``.

    Raises:
        GraphTraceError: torch.fx cannot trace the model; the message names the module.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        ...                     nn.Conv2d(8, 4, 3))
        >>> graph = build_graph(net, torch.zeros(1, 3, 8, 8))
        >>> group = graph.output_group("0")
        >>> group.producers, group.carriers, group.consumers, group.blocked
        (['0'], ['1'], ['3'], None)
    """
    try:
        gm = trace_model(model)
    except GraphTraceError as error:
        raise GraphTraceError(
            f"{error}. Pruning schemes need a traceable model (no data-dependent control "
            "flow); the SVD schemes do not."
        ) from error
    with eval_mode(model), torch.no_grad():
        try:
            ShapeProp(gm).propagate(example_input)
        except Exception as error:
            raise GraphTraceError(
                f"Running the traced model on the example input failed: {error}"
            ) from error
    builder = GraphBuilder(gm)
    for node in gm.graph.nodes:
        layout = builder.visit(node)
        if layout is not None:
            builder.layouts[node] = layout
    return builder.finish()
