"""Prune one channel group: the exact cost of the result, and the smaller dense modules.

Pruning a group edits every module it touches: producers lose output channels, BatchNorms
and depthwise convs lose entries, consumers lose input channels (or blocks of input features
after a flatten). The new modules are ordinary, smaller ``nn.Conv*d`` / ``nn.Linear`` /
``nn.BatchNorm*d`` holding the kept weights, never masks.
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
from greedy_compress.model.cost import Cost

__all__ = [
    "ORIGINAL_OUTPUTS",
    "group_cost",
    "group_replacements",
    "layout_keep",
    "module_cost",
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
    bias = fan_out if use.bias else 0
    if use.role == "depthwise":
        return Cost(use.positions * fan_out * use.kernel, fan_out * use.kernel + bias)
    weights = fan_out * fan_in * use.kernel
    return Cost(use.positions * weights, weights + bias)


def group_cost(graph: DependencyGraph, group: ChannelGroup, kept: int) -> Cost:
    """Summed cost of every module the group touches when ``kept`` of its channels remain.

    Example:
        >>> from greedy_compress.graph import build_graph
        >>> graph = build_graph(model, example_input)
        >>> group = graph.output_group("features.0")
        >>> group.members, group_cost(graph, group, kept=group.size).macs
        (['features.0', 'features.1', 'features.3'], 1198080)
        >>> group_cost(graph, group, kept=16).macs
        599040
    """
    removed = {group.id: group.size - kept}
    total = Cost(0, 0)
    for name in group.members:
        total = total + module_cost(graph.modules[name], removed)
    return total


def layout_keep(layout: Layout, group: int, keep: Sequence[int]) -> torch.Tensor:
    """Feature indices a layout keeps when only channels ``keep`` of ``group`` stay."""
    kept: list[int] = []
    offset = 0
    for segment in layout:
        if segment.group == group:
            for channel in keep:
                start = offset + channel * segment.block
                kept.extend(range(start, start + segment.block))
        else:
            kept.extend(range(offset, offset + segment.size * segment.block))
        offset += segment.size * segment.block
    return torch.tensor(kept, dtype=torch.long)


def _kept_features(layout: Layout, group: int, keep: Sequence[int]) -> torch.Tensor | None:
    """:func:`layout_keep`, or None when the layout does not hold ``group`` (all kept)."""
    return layout_keep(layout, group, keep) if any(s.group == group for s in layout) else None


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


def group_replacements(
    model: nn.Module, graph: DependencyGraph, group: ChannelGroup, keep: Sequence[int]
) -> dict[str, nn.Module]:
    """New, smaller modules for every module of ``group``, keeping channels ``keep``.

    ``keep`` are channel positions in the group (``0 <= c < group.size``); the originals are
    not modified.

    Example:
        >>> from greedy_compress.graph import build_graph
        >>> graph = build_graph(model, example_input)
        >>> new = group_replacements(model, graph, graph.output_group("features.0"), [0, 2])
        >>> new["features.0"].out_channels, new["features.1"].num_features
        (2, 2)
        >>> new["features.3"].in_channels
        2
    """
    keep = sorted(int(c) for c in keep)
    replacements = {}
    for name in group.members:
        module, use = model.get_submodule(name), graph.modules[name]
        keep_in = _kept_features(use.inputs, group.id, keep)
        keep_out = _kept_features(use.outputs, group.id, keep)
        handler = handler_for(module)
        assert handler is not None  # every module of a group was visited by its handler
        new = handler.prune(module, use, keep_in, keep_out)
        replacements[name] = _track_outputs(new, module, keep_out)
    return replacements
