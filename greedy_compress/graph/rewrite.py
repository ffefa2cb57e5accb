"""New size arguments for the calls a pruning makes stale (see :mod:`greedy_compress.graph.sites`).

A module whose ``forward`` reshapes channels to sizes it does not read from the tensor
(``x.view(B, N, self.num_heads, self.head_dim)``, ``out.reshape(B, N, C)`` with ``C`` of its
input), or calls ``scaled_dot_product_attention`` without a scale, cannot run on fewer
channels as it is. It is replaced by its own code with the new sizes: traced alone with
``torch.fx`` (with the non-tensor arguments it was called with), the stale calls given
constants, as a ``GraphModule`` of the same class name holding the same children. A stand-in
:class:`~greedy_compress.model.attention.Attention` only needs its ``num_heads`` updated.
A call in the model's own ``forward`` cannot be replaced: the groups it would make stale are
left alone (blocked when the graph is built).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import fx, nn

from greedy_compress.errors import GraphTraceError
from greedy_compress.graph.dependency import DependencyGraph
from greedy_compress.graph.sites import Factor, SizeSite
from greedy_compress.model.attention import Attention

__all__ = ["factor_size", "rewritten", "stale_sites"]


def factor_size(graph: DependencyGraph, factor: Factor, removed: Mapping[int, int]) -> int:
    """A factor's size once ``removed[g]`` channels of each group ``g`` go."""
    if factor.kind == "pieces":
        return factor.count
    if factor.kind == "width":
        return sum((s.size - removed.get(s.group, 0)) * s.block for s in factor.layout)
    sizes = []
    for group_id in factor.groups:
        group = graph.groups[group_id]
        kept = group.size - removed.get(group_id, 0)
        heads = group.parts
        if group.part_group is not None:
            heads -= removed.get(group.part_group, 0)
        sizes.append(
            heads
            if factor.kind == "parts"
            else kept // heads
            if factor.kind == "per_part"
            else kept
        )
    if len(set(sizes)) != 1:
        raise GraphTraceError(f"a pruning leaves unequal stacked sizes {sizes}")
    return sizes[0]


def _original(graph: DependencyGraph, factor: Factor) -> int:
    return factor_size(graph, factor, {})


def stale_sites(graph: DependencyGraph, removed: Mapping[int, int]) -> list[SizeSite]:
    """The calls that no longer fit once ``removed`` channels go."""
    return [
        site
        for site in graph.sites
        if any(factor_size(graph, f, removed) != _original(graph, f) for f in site.watched())
    ]


def _own_nodes(graph: fx.Graph) -> list[fx.Node]:
    return [
        n
        for n in graph.nodes
        if n.op in ("call_function", "call_method") and not n.meta.get("nn_module_stack")
    ]


def _key(node: fx.Node) -> tuple[str, str]:
    return node.op, getattr(node.target, "__name__", str(node.target))


def _new_sizes(
    graph: DependencyGraph, site: SizeSite, removed: Mapping[int, int], old: list[Any]
) -> list[Any]:
    new = list(old)
    for dim, factor in site.factors.items():
        if not site.follows(dim):
            new[dim] = factor_size(graph, factor, removed)
    for dim in site.reads:
        if dim not in site.factors:
            new[dim] = site.sizes[dim]  # a size read from channels where none are: keep it
    return new


def _patch(
    graph: DependencyGraph, node: fx.Node, site: SizeSite, removed: Mapping[int, int]
) -> None:
    if site.kind == "sdpa_scale":
        factor = site.factors[-1]
        node.kwargs = {**node.kwargs, "scale": 1.0 / math.sqrt(_original(graph, factor))}
        return
    if site.kind in ("pieces", "slice"):
        _patch_cut(graph, node, site, removed)
        return
    given: Any = node.args
    if node.target == "unflatten":
        dim, sizes = int(given[1]), list(given[2])
        start = dim % len(site.sizes)
        full = [None] * start + sizes + [None] * (len(site.sizes) - start - len(sizes))
        patched = _new_sizes(graph, site, removed, full)
        node.args = (node.args[0], dim, tuple(patched[start : start + len(sizes)]))
        return
    args = list(given[1:])
    packed = len(args) == 1 and isinstance(args[0], (list, tuple))
    sizes = list(args[0]) if packed else args
    sizes = _new_sizes(graph, site, removed, sizes)
    node.args = (node.args[0], tuple(sizes)) if packed else (node.args[0], *sizes)


def _patch_cut(
    graph: DependencyGraph, node: fx.Node, site: SizeSite, removed: Mapping[int, int]
) -> None:
    """A chunk / split becomes ``torch.split`` with the new widths; a slice of the
    channels gets the new bounds."""
    widths = [factor_size(graph, site.factors[i], removed) for i in range(len(site.factors))]
    source = node.args[0]
    if site.kind == "pieces":
        with node.graph.inserting_before(node):
            new = node.graph.call_function(torch.split, (source, widths), {"dim": site.dim})
        node.replace_all_uses_with(new)
        node.graph.erase_node(node)
        return
    bound = slice(widths[0], widths[0] + widths[1])
    index: Any = node.args[1]
    if site.slot < 0:
        node.args = (source, bound)
    else:
        node.args = (source, (*index[: site.slot], bound, *index[site.slot + 1 :]))


def _traced_alone(module: nn.Module, concrete: Mapping[str, Any]) -> fx.GraphModule:
    tracer = fx.Tracer()
    try:
        traced = tracer.trace(module, concrete_args=dict(concrete))
    except Exception as error:
        raise GraphTraceError(f"cannot trace {type(module).__name__} alone: {error}") from error
    names = list(inspect.signature(module.forward).parameters)
    placeholders = [n for n in traced.nodes if n.op == "placeholder"]
    for node, name in zip(placeholders, names, strict=False):
        if node.target != name and not name.startswith("*"):  # fx renames fixed arguments
            node.target = name
            node._rename(name)
    # Plain attributes (``num_heads``...) are not copied: they would state the old sizes.
    return fx.GraphModule(module, traced, class_name=type(module).__name__).train(module.training)


def _resized_attention(
    module: Attention, graph: DependencyGraph, sites: list[SizeSite], removed: Mapping[int, int]
) -> nn.Module:
    heads = {
        factor_size(graph, f, removed)
        for s in sites
        for f in s.factors.values()
        if f.kind == "parts"
    }
    if len(heads) != 1 or any(
        f.kind not in ("parts", "width", "per_part") for s in sites for f in s.watched()
    ):
        raise GraphTraceError(f"cannot resize attention for sites {[s.node for s in sites]}")
    new = copy.copy(module)
    new._modules = dict(module._modules)
    new.num_heads = heads.pop()
    return new


def rewritten(graph: DependencyGraph, removed: Mapping[int, int]) -> dict[str, nn.Module]:
    """New modules for the modules whose calls ``removed`` makes stale (by name, in the
    graph's view; empty when none are)."""
    by_module: dict[str, list[SizeSite]] = {}
    for site in stale_sites(graph, removed):
        by_module.setdefault(site.module, []).append(site)
    out: dict[str, nn.Module] = {}
    for path, sites in by_module.items():
        if not path:
            raise GraphTraceError(f"{sites[0].describe()}: it cannot be given new sizes")
        module = graph.view.get_submodule(path)
        if isinstance(module, Attention):
            out[path] = _resized_attention(module, graph, sites, removed)
            continue
        new = _traced_alone(module, graph.site_calls.get(path, {}))
        nodes: dict[tuple[str, str], list[fx.Node]] = {}
        for node in _own_nodes(new.graph):
            nodes.setdefault(_key(node), []).append(node)
        for site in sites:
            key, position = site.position
            candidates = nodes.get(key, [])
            if position >= len(candidates):
                raise GraphTraceError(f"{site.describe()}: not found when traced alone")
            _patch(graph, candidates[position], site, removed)
        new.recompile()
        out[path] = new
    return out
