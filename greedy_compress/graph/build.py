"""Work out a traced model's channel groups.

Each node's output gets a :class:`~greedy_compress.graph.values.Value` (which groups its
channels belong to, in which tensor dimensions) or none (it depends on no prunable channel
count). Modules are handled by their type's handler (:mod:`greedy_compress.graph.handlers`:
convs and Linears start new groups, norms, activations, pooling and depthwise convs carry
their input's channels, ...), functions and methods by :mod:`greedy_compress.graph.ops`
(residual adds tie groups, concatenation lays them side by side, permutes and reshapes move
or split the channel dimension, slices and chunks split groups, attention's matmuls tie the
query and key groups and split them into heads). Anything else blocks the groups it touches,
with the reason, so they are left alone. torch's attention modules are traced through
traceable stand-ins (:mod:`greedy_compress.graph.unpack`).
"""

from __future__ import annotations

import dataclasses
import inspect
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
    layout_width,
)
from greedy_compress.graph.groups import Groups
from greedy_compress.graph.handlers import handler_for
from greedy_compress.graph.ops import visit_call
from greedy_compress.graph.sites import module_of, settle
from greedy_compress.graph.unpack import attention_paths, unpacked
from greedy_compress.graph.values import Value
from greedy_compress.model.modes import eval_mode
from greedy_compress.model.trace import trace_model

__all__ = ["GraphBuilder", "build_graph", "shape_of"]


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The traced tensor shape of ``node`` (None for non-tensors and tuples)."""
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


class GraphBuilder:
    """Walks the traced graph once, node by node; handlers and ops call back into it."""

    def __init__(self, gm: fx.GraphModule, model: nn.Module | None = None) -> None:
        self.gm = gm
        self.model = gm if model is None else model  # the traced model (its real modules)
        self.uf = Groups()
        self.values: dict[fx.Node, Any] = {}  # a Value, a tuple of them (chunk, split), None
        self.origins: dict[fx.Node, str] = {}
        self.uses: dict[str, ModuleUse] = {}
        self.calls: dict[str, int] = {}
        self.blocked_modules: dict[str, str] = {}
        self.sites: list[Any] = []
        self.attention: list[dict[str, Any]] = []
        self.position: dict[fx.Node, tuple[tuple[str, str], int]] = {}
        self._counts: dict[tuple[str, tuple[str, str]], int] = {}
        self.site_calls: dict[str, dict[str, Any]] = {}
        self.module_calls: dict[str, int] = {}

    # values ----------------------------------------------------------------------------

    def value(self, arg: Any) -> Value | None:
        """The tracked value of a node argument (None: untracked, or not one tensor)."""
        found = self.values.get(arg) if isinstance(arg, fx.Node) else None
        return found if isinstance(found, Value) else None

    def origin(self, arg: Any) -> str:
        """What an untracked tensor is, for block reasons."""
        if isinstance(arg, fx.Node):
            return self.origins.get(arg, f"{arg.op} {arg.name}")
        return "a constant"

    def materialize(self, arg: Any, dim: int) -> Layout:
        """Channels of an untracked tensor along ``dim``, as a new blocked group."""
        shape = shape_of(arg)
        size = shape[dim] if shape is not None and len(shape) > dim else 1
        return (Segment(self.uf.new(size, self.origin(arg)), size),)

    def layout_on(self, arg: Any, dim: int) -> Layout | None:
        """The layout of ``arg`` when its channels are exactly dim ``dim`` (normalized), a
        new blocked group when it is untracked, None when its channels are elsewhere."""
        shape = shape_of(arg)
        if shape is None:
            return None
        value = self.value(arg)
        if value is None:
            return self.materialize(arg, dim)
        return value.layout if value.dims == (dim % len(shape),) else None

    def fresh(self, node: fx.Node, blocked: str | None = None) -> Layout | None:
        """A new group for ``node``'s dim 1 (handlers' channels-first API)."""
        shape = shape_of(node)
        if shape is None:
            return None
        channels = shape[1] if len(shape) >= 2 else 1
        return (Segment(self.uf.new(channels, blocked), channels),)

    def fresh_at(self, node: fx.Node, dim: int) -> Value | None:
        """A new group along ``node``'s dim ``dim``."""
        shape = shape_of(node)
        if shape is None:
            return None
        dim %= len(shape)
        return Value.along((Segment(self.uf.new(shape[dim]), shape[dim]),), dim)

    def block_layout(self, layout: Layout | None, reason: str) -> None:
        for segment in layout or ():
            self.uf.block(segment.group, reason)

    def tracked_inputs(self, node: fx.Node) -> list[Value]:
        found: list[Value] = []

        def note(arg: fx.Node) -> fx.Node:
            stored = self.values.get(arg)
            items = stored if isinstance(stored, tuple) else (stored,)
            found.extend(item for item in items if isinstance(item, Value))
            return arg

        fx.node.map_arg((node.args, node.kwargs), note)
        return found

    def unknown(self, node: fx.Node, what: str) -> Any:
        """Block every channel ``node`` reads; its output is untracked (made by ``what``).
        Returns None (the untracked value), so visitors can ``return builder.unknown(...)``."""
        reason = f"used by {what} ({node.name}), which the dependency graph does not model"
        for value in self.tracked_inputs(node):
            self.block_layout(value.layout, reason)
        self.origins[node] = f"made by {what} ({node.name})"
        return None

    def tie(self, node: fx.Node, layouts: list[Layout]) -> Layout:
        first = layouts[0]
        for other in layouts[1:]:
            same = [(s.size, s.block) for s in first] == [(s.size, s.block) for s in other]
            if not same:
                first, other = self.uf.expand(first), self.uf.expand(other)
                same = layout_width(first) == layout_width(other) and all(
                    a.block == b.block for a, b in zip(first, other, strict=False)
                )
                if same:  # align the pieces of both sides, then tie them
                    self.align(first, other)
                    first, other = self.uf.expand(first), self.uf.expand(other)
                    same = [(s.size, s.block) for s in first] == [(s.size, s.block) for s in other]
            if same:
                for a, b in zip(first, other, strict=True):
                    self.uf.union(a.group, b.group)
            else:
                reason = f"combined with differently laid out channels at {node.name}"
                for layout in layouts:
                    self.block_layout(layout, reason)
        return first

    def align(self, left: Layout, right: Layout) -> None:
        """Refine two layouts of one width so that their segments start at the same places."""
        cuts: set[int] = set()
        for layout in (left, right):
            start = 0
            for segment in layout:
                start += segment.size * segment.block
                cuts.add(start)
        for layout in (left, right):
            start = 0
            for segment in layout:
                width = segment.size * segment.block
                inner = [(c - start) // segment.block for c in cuts if start < c < start + width]
                self.uf.refine(segment.group, inner)
                start += width

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
        """A module reading ``inputs`` and writing a new channel group along dim 1."""
        outputs = self.fresh(node)
        if outputs is None:
            return None
        self.record(ModuleUse(name, role, inputs, outputs, positions, kernel, bias))
        return outputs

    # nodes -----------------------------------------------------------------------------

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self.origins[node] = "the model's input"
        elif node.op == "get_attr":
            self.origins[node] = f"a tensor attribute of the model ({node.target})"
        elif node.op == "output":
            for value in self.tracked_inputs(node):
                self.block_layout(value.layout, "the model's output")
        elif node.op == "call_module":
            self.values[node] = self.visit_module(node)
        elif node.op in ("call_function", "call_method"):
            key = (node.op, getattr(node.target, "__name__", str(node.target)))
            counter = (module_of(node), key)
            self.position[node] = (key, self._counts.get(counter, 0))
            self._counts[counter] = self.position[node][1] + 1
            self.values[node] = visit_call(self, node)
        else:
            self.unknown(node, f"node {node.op}")

    def visit_module(self, node: fx.Node) -> Any:
        name = str(node.target)
        module = self.gm.get_submodule(name)
        handler = handler_for(module)
        first = node.args[0] if node.args else None
        value = self.value(first)
        if handler is None:
            return self.unknown(node, f"module {name} ({type(module).__name__})")
        if not handler.reusable:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] > 1:
                self.blocked_modules[name] = "called more than once per forward pass"
                if value is not None:
                    self.block_layout(
                        value.layout, f"read by {name}, which is called more than once"
                    )
                if name in self.uses:
                    self.block_layout(self.uses[name].outputs, f"{name} is called more than once")
                return self.unknown(node, f"{name}, which is called more than once")
        inputs = value.layout if value is not None and value.dims == (1,) else None
        result = handler.visit(self, node, name, module, inputs, shape_of(first), shape_of(node))
        if result is None or isinstance(result, Value):
            if result is None and node not in self.origins:
                self.origins[node] = f"made by {name}"
            return result
        if value is not None and result is value.layout:
            return value
        return Value.along(result, 1)

    # result ----------------------------------------------------------------------------

    def capture_calls(self, example_input: torch.Tensor) -> None:
        """Run the model once, noting how often each module with sites is called and its
        non-tensor arguments (what tracing it alone must fix, see ``graph.rewrite``)."""
        paths = {site.module for site in self.sites if site.module}
        handles = []
        for path in paths:
            module = self.model.get_submodule(path)

            def hook(module: nn.Module, args: Any, kwargs: Any, path: str = path) -> None:
                self.module_calls[path] = self.module_calls.get(path, 0) + 1
                bound = inspect.signature(module.forward).bind(*args, **kwargs)
                self.site_calls[path] = {
                    key: value
                    for key, value in bound.arguments.items()
                    if not isinstance(value, torch.Tensor)
                    and not isinstance(value, (tuple, list, dict))
                }

            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        try:
            with eval_mode(self.model), torch.no_grad():
                self.model(example_input)
        finally:
            for handle in handles:
                handle.remove()

    def finish(self) -> DependencyGraph:
        uf = self.uf
        self.sites = settle(uf, self.sites, self.module_calls)
        uses = {
            name: dataclasses.replace(u, inputs=uf.expand(u.inputs), outputs=uf.expand(u.outputs))
            for name, u in self.uses.items()
        }
        groups: dict[int, ChannelGroup] = {}

        def group(root: int) -> ChannelGroup:
            if root not in groups:
                groups[root] = ChannelGroup(root, uf.size[root], blocked=uf.blocked[root])
                parts, part_group = uf.parts_of(root)
                if part_group is not None:
                    groups[root].parts, groups[root].part_group = parts, part_group
                    head = group(part_group)
                    if root not in head.parted:
                        head.parted.append(root)
            return groups[root]

        for use in uses.values():
            for segment in use.inputs + use.outputs:
                found = group(segment.group)
                if found.size != segment.size and found.blocked is None:
                    found.blocked = "tied to channels of a different count"
            if use.role == "matmul":
                for segment in use.inputs:
                    ops = group(segment.group).operations
                    if use.name not in ops:
                        ops.append(use.name)
                continue
            for segment in use.outputs:
                found = group(segment.group)
                carried = use.role in ("depthwise", "norm", "scale", "param")
                target = found.carriers if carried else found.producers
                if use.name not in target:
                    target.append(use.name)
            if use.role in ("conv", "linear"):
                for segment in use.inputs:
                    found = group(segment.group)
                    if use.name not in found.consumers:
                        found.consumers.append(use.name)
        for site in self.sites:  # a group only a reshape sees still has a size and heads
            for factor in (*site.factors.values(), *(f for fs in site.reads.values() for f in fs)):
                for segment in uf.expand(factor.layout):
                    group(segment.group)
                for item in factor.groups:
                    group(uf.find(item))
        for name in self.blocked_modules:
            uses.pop(name, None)
        for found in groups.values():
            if found.blocked is None and any(m in self.blocked_modules for m in found.members):
                found.blocked = "touches a module called more than once"
        sites = [site.resolved(uf) for site in self.sites]
        attention = [
            {key: uf.find(item) if isinstance(item, int) else item for key, item in unit.items()}
            for unit in self.attention
        ]
        graph = DependencyGraph(
            groups=groups,
            modules=uses,
            blocked_modules=self.blocked_modules,
            sites=sites,
            attention=attention,
        )
        graph.site_calls = self.site_calls
        for site in sites:
            for factor in site.factors.values():
                ties = tuple(dict.fromkeys(uf.find(g) for g in factor.groups))
                if (
                    factor.kind in ("per_part", "each")
                    and len(ties) > 1
                    and ties not in graph.stacked
                ):
                    graph.stacked.append(ties)
        return graph


def build_graph(model: nn.Module, example_input: torch.Tensor) -> DependencyGraph:
    """Trace ``model`` and return its channel groups, shapes taken from ``example_input``.

    torch's attention and transformer modules are traced through traceable stand-ins; the
    graph's ``view`` is that model (names are the model's own).

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
    view = unpacked(model)
    try:
        gm = trace_model(view)
    except GraphTraceError as error:
        raise GraphTraceError(
            f"{error}. Pruning schemes need a traceable model (no data-dependent control "
            "flow); the SVD schemes do not."
        ) from error
    with eval_mode(view), torch.no_grad():
        try:
            ShapeProp(gm).propagate(example_input)
        except Exception as error:
            raise GraphTraceError(
                f"Running the traced model on the example input failed: {error}"
            ) from error
    builder = GraphBuilder(gm, view)
    for node in gm.graph.nodes:
        builder.visit(node)
    if builder.sites:
        builder.capture_calls(example_input)
    graph = builder.finish()
    graph.view, graph.traced = view, gm
    graph.stand_ins = attention_paths(model, view)
    return graph
