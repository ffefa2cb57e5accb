"""The exact cost of pruning several layers at once, as plain data.

Each pruning candidate's cost is exact on its own, but pruned layers compound: a layer that
loses input channels (its producer was pruned) and output channels (it was pruned itself)
keeps the *product* of the two fractions, so adding per-layer savings counts it twice.
:class:`ChannelCosts` holds what pricing any combination needs (which channel group each
layer prunes, and how every module of those groups uses channels), so a saved dictionary
prices selections exactly without the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from greedy_compress.graph.dependency import ChannelGroup, DependencyGraph, ModuleUse
from greedy_compress.graph.prune import module_cost, removals, touched
from greedy_compress.model.cost import Cost

__all__ = ["ChannelCosts"]

KIND = "channel_groups"


@dataclass(frozen=True)
class ChannelCosts:
    """Prices a selection of pruned layers exactly.

    Attributes:
        layer_groups: layer name -> id of the channel group it prunes (its rank: channels
            kept; for a group of heads: heads kept).
        group_sizes: group id -> its number of channels.
        modules: every module those groups touch, with how it uses channels.
        parts: group split into heads -> (its group of heads, number of heads).
        layer_units: layer -> the groups it prunes together, each keeping ``rank`` channels
            per head (SNP: the query/key and value neurons of one attention).
    """

    layer_groups: dict[str, int]
    group_sizes: dict[int, int]
    modules: dict[str, ModuleUse]
    parts: dict[int, tuple[int, int]] = field(default_factory=dict)
    layer_units: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def from_graph(
        cls,
        graph: DependencyGraph,
        groups: Mapping[str, ChannelGroup],
        units: Mapping[str, Sequence[ChannelGroup]] | None = None,
    ) -> ChannelCosts:
        """The costs of pruning each ``layer -> group`` of ``graph`` (and each ``layer ->
        groups`` of ``units``, pruned per head together)."""
        every = [*groups.values(), *(g for unit in (units or {}).values() for g in unit)]
        members = {m for group in every for m in touched(graph, group)}
        involved = {g.id for g in every} | {p for g in every for p in g.parted}
        involved |= {g.part_group for g in every if g.part_group is not None}
        parts: dict[int, tuple[int, int]] = {}
        for g in involved:
            head = graph.groups[g].part_group
            if head is not None:
                parts[g] = (head, graph.groups[g].parts)
        sizes = {g: graph.groups[g].size for g in involved | {h for h, _ in parts.values()}}
        return cls(
            layer_groups={name: group.id for name, group in groups.items()},
            group_sizes=sizes,
            modules={name: graph.modules[name] for name in sorted(members)},
            parts=parts,
            layer_units={name: tuple(g.id for g in unit) for name, unit in (units or {}).items()},
        )

    def kept_channels(self, kept: Mapping[str, int]) -> dict[int, int]:
        """Channels (or heads) each group keeps when each layer keeps ``kept[layer]``."""
        groups: dict[int, int] = {}
        for name, rank in kept.items():
            if name in self.layer_units:
                for group in self.layer_units[name]:
                    count = self.parts[group][1] if group in self.parts else 1
                    per = min(int(rank), self.group_sizes[group] // count)
                    groups[group] = per * count
            else:
                groups[self.layer_groups[name]] = int(rank)
        return groups

    def cost(self, model_cost: Cost, kept: Mapping[str, int]) -> Cost:
        """The model's cost once each layer ``name`` keeps ``kept[name]`` channels.

        Every module touched is counted once, with all its pruned groups at once.

        Raises:
            KeyError: a layer this pricing does not cover.
        """
        removed = removals(self.group_sizes, self.parts, self.kept_channels(kept))
        total = model_cost
        for use in self.modules.values():
            if any(s.group in removed for s in (*use.inputs, *use.outputs)):
                total = total - module_cost(use, {}) + module_cost(use, removed)
        return total

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        extra: dict[str, Any] = {}
        if self.parts:
            extra["parts"] = {str(g): list(p) for g, p in self.parts.items()}
        if self.layer_units:
            extra["layer_units"] = {n: list(gs) for n, gs in self.layer_units.items()}
        return {
            "kind": KIND,
            "layer_groups": dict(self.layer_groups),
            "group_sizes": {str(g): s for g, s in self.group_sizes.items()},
            "modules": {name: use.to_dict() for name, use in self.modules.items()},
            **extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelCosts:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: not this kind of pricing.
        """
        if data.get("kind") != KIND:
            raise ValueError(f"unknown exact-cost kind {data.get('kind')!r}")
        return cls(
            layer_groups={str(n): int(g) for n, g in data["layer_groups"].items()},
            group_sizes={int(g): int(s) for g, s in data["group_sizes"].items()},
            modules={str(n): ModuleUse.from_dict(str(n), u) for n, u in data["modules"].items()},
            parts={int(g): (int(p[0]), int(p[1])) for g, p in data.get("parts", {}).items()},
            layer_units={
                str(n): tuple(int(g) for g in gs) for n, gs in data.get("layer_units", {}).items()
            },
        )
