"""Prune one channel group: the exact cost of the result, and the smaller dense modules.

Pruning a group edits every module it touches: producers lose output channels, norms and
depthwise convs lose entries, consumers lose input channels (or blocks of input features
after a flatten), parameters laid out along the channels lose those slices. Pruning a part
group (heads) removes whole heads from every group split by it. The new modules are
ordinary, smaller ``nn.Conv*d`` / ``nn.Linear`` / norms holding the kept weights, never
masks; reshapes that hard-code the sizes are given new ones
(:mod:`greedy_compress.graph.rewrite`), and torch's attention modules become
:class:`~greedy_compress.model.attention.Attention` (:func:`greedy_compress.graph.unpack.lift`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from greedy_compress.graph.dependency import (
    ChannelGroup,
    DependencyGraph,
    Layout,
    ModuleUse,
)
from greedy_compress.graph.handlers import handler_for
from greedy_compress.graph.layer_handlers import take
from greedy_compress.graph.rewrite import rewritten
from greedy_compress.graph.unpack import lift
from greedy_compress.model.cost import Cost
from greedy_compress.model.swap import Replacement, replace_modules

__all__ = [
    "ORIGINAL_OUTPUTS",
    "finish_replacements",
    "graph_parts",
    "group_cost",
    "group_keeps",
    "group_replacements",
    "keeps_replacements",
    "layout_keep",
    "module_cost",
    "removals",
    "touched",
    "view_replacements",
]


def _width(layout: Layout, removed: Mapping[int, int]) -> int:
    return sum((s.size - removed.get(s.group, 0)) * s.block for s in layout)


def module_cost(use: ModuleUse, removed: Mapping[int, int]) -> Cost:
    """Exact MACs and parameters of module ``use.name`` once ``removed[g]`` channels of each
    group ``g`` go (from the use alone, so a saved graph prices selections without the model).

    Example:
        >>> from greedy_compress.graph import ModuleUse, Segment
        >>> use = ModuleUse("conv", "conv", (Segment(0, 4),), (Segment(1, 8),), 36, 9, True)
        >>> module_cost(use, {})  # float32: bits = params x 32, bops = macs x 32 x 32
        Cost(macs=10368, params=296, bits=9472, bops=10616832)
        >>> module_cost(use, {1: 2})
        Cost(macs=7776, params=222, bits=7104, bops=7962624)
    """
    fan_in, fan_out = _width(use.inputs, removed), _width(use.outputs, removed)
    if use.role == "norm":
        return Cost(0, 2 * fan_out if use.affine else 0)
    if use.role == "scale":
        return Cost(0, fan_out)
    if use.role == "param":
        return Cost(0, use.positions * fan_out)
    if use.role == "matmul":
        return Cost(use.positions * fan_in, 0)
    bias = fan_out if use.bias else 0
    if use.role == "depthwise":
        return Cost(use.positions * fan_out * use.kernel, fan_out * use.kernel + bias)
    weights = fan_out * fan_in * use.kernel // use.groups
    return Cost(use.positions * weights, weights + bias)


def removals(
    sizes: Mapping[int, int], parts: Mapping[int, tuple[int, int]], kept: Mapping[int, int]
) -> dict[int, int]:
    """Channels removed from each group when each group ``g`` of ``kept`` keeps ``kept[g]``.

    ``parts`` maps a group split into heads to ``(its part group, number of parts)``; a part
    group's ``kept`` counts heads, and a split group keeps ``heads kept x its channels per
    head kept``.

    Example:
        >>> removals({0: 8, 1: 2}, {0: (1, 2)}, {1: 1})  # one of 2 heads of 4 channels goes
        {1: 1, 0: 4}
    """
    removed = {g: sizes[g] - k for g, k in kept.items() if g not in parts}
    for group, (head, count) in parts.items():
        per_part = kept.get(group, sizes[group]) // count
        heads = kept.get(head, count)
        if group in kept or head in kept:
            removed[group] = sizes[group] - heads * per_part
    return removed


def graph_parts(graph: DependencyGraph) -> dict[int, tuple[int, int]]:
    """Each group split into heads -> (its group of heads, number of heads)."""
    return {
        g.id: (g.part_group, g.parts) for g in graph.groups.values() if g.part_group is not None
    }


def group_cost(graph: DependencyGraph, group: ChannelGroup, kept: int) -> Cost:
    """Summed cost of every module the group touches when ``kept`` of its channels remain
    (for a part group: ``kept`` heads).

    Example:
        >>> from greedy_compress.graph import build_graph
        >>> graph = build_graph(model, example_input)
        >>> group = graph.output_group("features.0")
        >>> group.members, group_cost(graph, group, kept=group.size).macs
        (['features.0', 'features.1', 'features.3'], 1198080)
        >>> group_cost(graph, group, kept=16).macs
        599040
    """
    sizes = {g.id: g.size for g in graph.groups.values()}
    removed = removals(sizes, graph_parts(graph), {group.id: kept})
    total = Cost(0, 0)
    for name in touched(graph, group):
        total = total + module_cost(graph.modules[name], removed)
    return total


def touched(graph: DependencyGraph, group: ChannelGroup) -> list[str]:
    """Every module, parameter and priced operation a pruning of ``group`` changes."""
    groups = [group, *(graph.groups[g] for g in group.parted)]
    names = [n for g in groups for n in (*g.members, *g.operations)]
    return list(dict.fromkeys(names))


def layout_keep(layout: Layout, group: int, keep: Sequence[int]) -> torch.Tensor:
    """Feature indices a layout keeps when only channels ``keep`` of ``group`` stay."""
    return layout_keeps(layout, {group: keep})


def layout_keeps(layout: Layout, keeps: Mapping[int, Sequence[int]]) -> torch.Tensor:
    """Feature indices a layout keeps when each group ``g`` of ``keeps`` keeps channels
    ``keeps[g]`` (the others all theirs)."""
    kept: list[int] = []
    offset = 0
    for segment in layout:
        if segment.group in keeps:
            for channel in keeps[segment.group]:
                start = offset + channel * segment.block
                kept.extend(range(start, start + segment.block))
        else:
            kept.extend(range(offset, offset + segment.size * segment.block))
        offset += segment.size * segment.block
    return torch.tensor(kept, dtype=torch.long)


def _kept_features(layout: Layout, keeps: Mapping[int, Sequence[int]]) -> torch.Tensor | None:
    """:func:`layout_keeps`, or None when the layout holds none of the groups (all kept)."""
    return layout_keeps(layout, keeps) if any(s.group in keeps for s in layout) else None


def group_keeps(
    graph: DependencyGraph, group: ChannelGroup, keep: Sequence[int]
) -> dict[int, list[int]]:
    """The channels each group keeps when ``group`` keeps ``keep`` (for a part group: the
    heads kept, and every channel of those heads in each group it splits)."""
    keeps = {group.id: sorted(int(c) for c in keep)}
    for parted in group.parted:
        split = graph.groups[parted]
        per = split.size // split.parts
        keeps[parted] = [h * per + j for h in keeps[group.id] for j in range(per)]
    return keeps


ORIGINAL_OUTPUTS = "_greedy_compress_original_outputs"
"""Attribute a pruned module carries: which of the original module's outputs it still has."""


def _track_outputs(new: nn.Module, old: nn.Module, keep_out: torch.Tensor | None) -> nn.Module:
    previous = getattr(old, ORIGINAL_OUTPUTS, None)
    if keep_out is None:
        kept = previous
    else:
        kept = keep_out.tolist() if previous is None else [previous[i] for i in keep_out.tolist()]
    if kept is not None:
        object.__setattr__(new, ORIGINAL_OUTPUTS, kept)
    return new


def view_replacements(
    graph: DependencyGraph, group: ChannelGroup, keep: Sequence[int]
) -> dict[str, Replacement]:
    """New modules (and parameters) for the graph's view, keeping channels ``keep`` of
    ``group``; reshapes are not rewritten and nothing is lifted (see
    :func:`group_replacements`)."""
    return keeps_replacements(graph, group_keeps(graph, group, keep))


def keeps_replacements(
    graph: DependencyGraph, keeps: Mapping[int, Sequence[int]]
) -> dict[str, Replacement]:
    """:func:`view_replacements` for several groups at once, each keeping ``keeps[g]``."""
    view = graph.view
    names = [n for g in keeps if g in graph.groups for n in touched(graph, graph.groups[g])]
    replacements: dict[str, Replacement] = {}
    for name in dict.fromkeys(names):
        use = graph.modules[name]
        if use.role == "matmul":
            continue
        keep_in = _kept_features(use.inputs, keeps)
        keep_out = _kept_features(use.outputs, keeps)
        if use.role == "param":
            old = view.get_parameter(name)
            replacements[name] = nn.Parameter(
                take(old, keep_out, use.axis), requires_grad=old.requires_grad
            )
            continue
        module = view.get_submodule(name)
        handler = handler_for(module)
        assert handler is not None  # every module of a group was visited by its handler
        new = handler.prune(module, use, keep_in, keep_out)
        replacements[name] = _track_outputs(new, module, keep_out)
    return replacements


def finish_replacements(
    model: nn.Module,
    graph: DependencyGraph,
    keeps: Mapping[int, Sequence[int]],
    replacements: Mapping[str, Replacement],
) -> dict[str, Replacement]:
    """View replacements made ready for ``model``: the reshapes the kept channels ``keeps``
    make stale rewritten, torch's attention modules replaced whole."""
    sizes = {g.id: g.size for g in graph.groups.values()}
    kept = {  # a group split by heads that go is priced through its heads
        g: len(k) for g, k in keeps.items() if graph.groups[g].part_group not in keeps
    }
    removed = removals(sizes, graph_parts(graph), kept)
    modules = {**rewritten(graph, removed), **replacements}
    return _collapsed(lift(model, graph.view, modules))


def _collapsed(replacements: Mapping[str, Replacement]) -> dict[str, Replacement]:
    """Replacements inside another replaced module put into it, so that each changed part
    of the model is one module (what the dictionary's suffix-only evaluation can call)."""
    out: dict[str, Replacement] = {}
    for name, new in sorted(replacements.items(), key=lambda item: item[0].count(".")):
        owner = next(
            (p for p in out if name.startswith(p + ".") and isinstance(out[p], nn.Module)), None
        )
        if owner is None:
            out[name] = new
        else:
            replace_modules(out[owner], {name[len(owner) + 1 :]: new})  # type: ignore[arg-type]
    return out


def group_replacements(
    model: nn.Module, graph: DependencyGraph, group: ChannelGroup, keep: Sequence[int]
) -> dict[str, Replacement]:
    """New, smaller modules for every module of ``group``, keeping channels ``keep``.

    ``keep`` are channel positions in the group (``0 <= c < group.size``; for a part group,
    the heads kept); the originals are not modified.

    Example:
        >>> from greedy_compress.graph import build_graph
        >>> graph = build_graph(model, example_input)
        >>> new = group_replacements(model, graph, graph.output_group("features.0"), [0, 2])
        >>> new["features.0"].out_channels, new["features.1"].num_features
        (2, 2)
        >>> new["features.3"].in_channels
        2
    """
    keeps = group_keeps(graph, group, keep)
    return finish_replacements(model, graph, keeps, keeps_replacements(graph, keeps))
