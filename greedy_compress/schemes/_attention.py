"""What the attention schemes share: attention units found in the channel graph.

An *attention unit* is one multi-head attention: the group of its heads (a part group of the
channel graph) and the groups it splits, the query/key group (tied by ``Q K^T``) and the
value group (carried by ``P V``). ``nn.MultiheadAttention`` (through its traceable stand-in)
and hand-written attention (q/k/v/o Linears or a fused qkv, ``scaled_dot_product_attention``
or explicit matmuls and softmax) give the same units. A unit is named by the module that
holds it (``blocks.0.attn``); its layer in the dictionary has kind ``"attention"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from greedy_compress.graph import ChannelCosts, ChannelGroup, DependencyGraph
from greedy_compress.graph.dependency import layout_width
from greedy_compress.graph.prune import touched
from greedy_compress.model.cost import Cost
from greedy_compress.model.modules import weight_of
from greedy_compress.model.profile import LayerInfo, ModelProfile
from greedy_compress.schemes._pruning import GroupPruning

__all__ = ["AttentionPruning", "AttentionUnit", "attention_units"]


@dataclass(frozen=True)
class AttentionUnit:
    """One attention: its heads group, query/key groups and value groups (graph ids)."""

    name: str
    heads: int
    query_key: tuple[int, ...]
    value: tuple[int, ...]


def _common_prefix(names: Sequence[str]) -> str:
    parts = [name.split(".") for name in names]
    common: list[str] = []
    for items in zip(*parts, strict=False):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return ".".join(common)


def attention_units(graph: DependencyGraph) -> dict[str, AttentionUnit]:
    """The attention units of ``graph``, by name."""
    found: dict[int, dict[str, list[int]]] = {}
    for record in graph.attention:
        unit = found.setdefault(record["heads"], {"qk": [], "pv": []})
        if record["group"] not in unit[record["kind"]]:
            unit[record["kind"]].append(record["group"])
    units = {}
    for heads, unit in found.items():
        if heads not in graph.groups or not unit["qk"] or not unit["pv"]:
            continue
        members = [n for g in (*unit["qk"], *unit["pv"]) for n in graph.groups[g].members]
        prefix = _common_prefix(members) or members[0]
        name = prefix if prefix in dict(graph.view.named_modules()) else members[0]
        units[name] = AttentionUnit(name, heads, tuple(unit["qk"]), tuple(unit["pv"]))
    return units


class AttentionPruning(GroupPruning):
    """Base of the attention schemes: each attention unit is one layer (kind
    ``"attention"``), the others are skipped with the reason."""

    def layer_groups(self, graph: DependencyGraph) -> dict[str, tuple[ChannelGroup | None, str]]:
        self._units = attention_units(graph)
        found = {name: self.group_for(graph, name) for name in self._units}
        for name, use in graph.modules.items():
            if use.role in ("conv", "linear") and graph.in_model(name) and name not in found:
                found[name] = (None, f"not an attention module; {self.name} prunes attention heads")
        return found

    def unit(self, graph: DependencyGraph, name: str) -> AttentionUnit | None:
        return attention_units(graph).get(name)

    def profile_layers(self, profile: ModelProfile) -> ModelProfile:
        """The attention units are the layers (in call order with the others)."""
        assert self._graph is not None
        layers = dict(profile.layers)
        with_attention = profile.with_attention().layers
        for name, unit in self._units.items():
            if name in with_attention:
                layers[name] = with_attention[name]
                continue
            query_key = self._graph.groups[unit.query_key[0]]
            value = self._graph.groups[unit.value[0]]
            layers[name] = LayerInfo(
                name=name,
                kind="attention",
                in_channels=query_key.size,
                out_channels=value.size,
                kernel_size=(),
                stride=(),
                padding=(),
                dilation=(),
                groups=self._graph.groups[unit.heads].size,
                bias=False,
                input_shape=(),
                output_shape=(),
                cost=Cost(0, 0),
            )
        order = [n for n in with_attention if n in layers] + [
            n for n in layers if n not in with_attention
        ]
        return dataclasses.replace(profile, layers={n: layers[n] for n in order})

    def head_groups(self, graph: DependencyGraph, group: ChannelGroup) -> list[ChannelGroup]:
        """The groups a unit's heads split (query/key and value)."""
        return [graph.groups[g] for g in group.parted]

    def importance_rows(self, graph: DependencyGraph, group: ChannelGroup) -> torch.Tensor:
        """Squared L2 norm of every weight of each channel of ``group``: the rows of the
        layers producing it and the columns of the layers reading it."""
        view = graph.view
        total = torch.zeros(group.size, dtype=torch.float64)
        for name in touched(graph, group):
            use = graph.modules[name]
            if use.role not in ("conv", "linear"):
                continue
            weight = weight_of(view.get_submodule(name)).detach().double()
            weight = weight.reshape(weight.shape[0], -1)
            taps = weight.shape[1] // max(1, layout_width(use.inputs))
            columns = weight.T.reshape(-1, taps * weight.shape[0])  # one row per input feature
            for layout, rows in ((use.outputs, weight), (use.inputs, columns)):
                offset = 0
                for segment in layout:
                    width = segment.size * segment.block
                    if segment.group == group.id:
                        part = rows[offset : offset + width].reshape(segment.size, -1)
                        energy = part.pow(2).sum(dim=1)
                        total += energy / energy.sum().clamp_min(1e-30)
                    offset += width
        return total

    def exact_costs(self) -> ChannelCosts:
        self._group_check()
        assert self._graph is not None
        return ChannelCosts.from_graph(self._graph, self._groups, self.exact_units())

    def exact_units(self) -> Mapping[str, Sequence[ChannelGroup]]:
        """Layers pruning several groups per head together (SNP); none by default."""
        return {}

    def settings(self) -> dict[str, object]:
        return {}
