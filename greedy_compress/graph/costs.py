"""The exact cost of pruning several layers at once, as plain data.

Each pruning candidate's cost is exact on its own, but pruned layers compound: a layer that
loses input channels (its producer was pruned) and output channels (it was pruned itself)
keeps the *product* of the two fractions, so adding per-layer savings counts it twice.
:class:`ChannelCosts` holds what pricing any combination needs (which channel group each
layer prunes, and how every module of those groups uses channels), so a saved dictionary
prices selections exactly without the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from greedy_compress.graph.dependency import ChannelGroup, DependencyGraph, ModuleUse
from greedy_compress.graph.prune import module_cost
from greedy_compress.model.cost import Cost

__all__ = ["ChannelCosts"]

KIND = "channel_groups"


@dataclass(frozen=True)
class ChannelCosts:
    """Prices a selection of pruned layers exactly.

    Attributes:
        layer_groups: layer name -> id of the channel group it prunes.
        group_sizes: group id -> its number of channels.
        modules: every module those groups touch, with how it uses channels.
    """

    layer_groups: dict[str, int]
    group_sizes: dict[int, int]
    modules: dict[str, ModuleUse]

    @classmethod
    def from_graph(cls, graph: DependencyGraph, groups: Mapping[str, ChannelGroup]) -> ChannelCosts:
        """The costs of pruning each ``layer -> group`` of ``graph``."""
        members = {m for group in groups.values() for m in group.members}
        return cls(
            layer_groups={name: group.id for name, group in groups.items()},
            group_sizes={group.id: group.size for group in groups.values()},
            modules={name: graph.modules[name] for name in sorted(members)},
        )

    def cost(self, model_cost: Cost, kept: Mapping[str, int]) -> Cost:
        """The model's cost once each layer ``name`` keeps ``kept[name]`` channels.

        Every module touched is counted once, with all its pruned groups at once.

        Raises:
            KeyError: a layer this pricing does not cover.
        """
        removed: dict[int, int] = {}
        for name, rank in kept.items():
            group = self.layer_groups[name]
            removed[group] = self.group_sizes[group] - int(rank)
        total = model_cost
        for use in self.modules.values():
            if any(s.group in removed for s in (*use.inputs, *use.outputs)):
                total = total - module_cost(use, {}) + module_cost(use, removed)
        return total

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "kind": KIND,
            "layer_groups": dict(self.layer_groups),
            "group_sizes": {str(g): s for g, s in self.group_sizes.items()},
            "modules": {name: use.to_dict() for name, use in self.modules.items()},
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
        )
