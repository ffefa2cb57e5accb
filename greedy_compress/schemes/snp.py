"""SNP: NetsPresso's Structured Neuron-level Pruning of attention (Shim et al., ECCV 2024).

Per attention unit, the query and key neurons are pruned together (query neuron j of a head
multiplies key neuron j of that head, so they go in pairs), ranked by how much they
contribute to the attention scores: removing pair j of head h removes the rank-one term
``q_j k_j^T`` from that head's scores, whose energy on sample data is
``||q_j||^2 ||k_j||^2``. The value neurons are pruned on their own, ranked by their
contribution to the output projection (``||v_j||^2 ||W_o[:, j]||^2`` on the projection's
inputs). Head boundaries are respected: every head keeps the same number of query/key and
of value neurons (the layer's rank, per head), so the result is an ordinary attention with
narrower heads, and its scale stays the original ``1 / sqrt(head_dim)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import check_positive_int
from greedy_compress.errors import SelectionMismatchError
from greedy_compress.graph import ChannelCosts, ChannelGroup, DependencyGraph
from greedy_compress.graph.prune import (
    finish_replacements,
    graph_parts,
    keeps_replacements,
    module_cost,
    removals,
    touched,
)
from greedy_compress.model.cost import Cost
from greedy_compress.model.hashing import tensor_hash
from greedy_compress.model.modules import weight_of
from greedy_compress.model.profile import LayerInfo
from greedy_compress.model.sampling import capture, take_samples
from greedy_compress.model.swap import Replacement
from greedy_compress.schemes._attention import AttentionPruning, AttentionUnit
from greedy_compress.schemes._base import Factorization

__all__ = ["SNP"]


def _per_head_keep(order: Sequence[int], heads: int, size: int, quota: int) -> list[int]:
    per = size // heads
    taken = [0] * heads
    kept = []
    for channel in order:
        if taken[channel // per] < quota:
            taken[channel // per] += 1
            kept.append(channel)
    return sorted(kept)


class _SNPFactorization(Factorization):
    def __init__(
        self, model: nn.Module, graph: DependencyGraph, orders: Mapping[int, list[int]], name: str
    ) -> None:
        self.model, self.graph, self.orders, self.name = model, graph, dict(orders), name

    def keeps(self, rank: int) -> dict[int, list[int]]:
        keeps = {}
        for group_id, order in self.orders.items():
            group = self.graph.groups[group_id]
            quota = min(rank, group.size // group.parts)
            keeps[group_id] = _per_head_keep(order, group.parts, group.size, quota)
        return keeps

    def replacements(self, name: str, rank: int) -> dict[str, Replacement]:
        keeps = self.keeps(rank)
        modules = keeps_replacements(self.graph, keeps)
        return finish_replacements(self.model, self.graph, keeps, modules)

    def build(self, rank: int) -> nn.Module:
        new = self.replacements(self.name, rank).get(self.name)
        assert isinstance(new, nn.Module)
        return new


class SNP(AttentionPruning):
    """Prune the query/key and the value neurons of each attention, per head (SNP).

    Args:
        data: input batches (e.g. a DataLoader) to measure the neurons' contributions on.
        num_samples: how many inputs of ``data`` are used.

    Example:
        >>> from greedy_compress.demo.models import TinyViT
        >>> vit = TinyViT(in_channels=1).eval()
        >>> scheme = SNP(data=[torch.randn(8, 1, 16, 16)])
        >>> selection = manual_selection(vit, {"blocks.0.self_attention": 0.5}, scheme=scheme,
        ...                              input_shape=(1, 1, 16, 16), ratio_of="rank")
        >>> attention = apply_selection(vit, selection, scheme=scheme).blocks[0].self_attention
        >>> attention.q_proj.out_features, attention.v_proj.out_features, attention.num_heads
        (8, 8, 2)
    """

    name = "snp"
    rank_unit = "channels per head"

    def __init__(self, *, data: Iterable[Any] | None = None, num_samples: int = 64) -> None:
        super().__init__()
        self.data = data
        self.num_samples = check_positive_int(num_samples, "num_samples", "SNP")

    @property
    def uses_data(self) -> bool:
        """SNP measures each neuron's contribution on sample data."""
        return True

    def check_ready(self) -> None:
        if self._samples is None:
            self._samples = take_samples(self.data, self.num_samples, "SNP")

    def settings(self) -> dict[str, object]:
        samples = tensor_hash(self._samples) if self._samples is not None else None
        return {"num_samples": self.num_samples, "samples": samples}

    def _unit_groups(self, graph: DependencyGraph, unit: AttentionUnit) -> list[ChannelGroup]:
        return [graph.groups[g] for g in (*unit.query_key, *unit.value)]

    def group_for(self, graph: DependencyGraph, name: str) -> tuple[ChannelGroup | None, str]:
        unit = self.unit(graph, name)
        if unit is None:
            return None, "not an attention module of the traced model"
        for group in self._unit_groups(graph, unit):
            kind = "query/key" if group.id in unit.query_key else "value"
            if group.blocked is not None:
                return None, f"its {kind} neurons cannot change: {group.blocked}"
            if group.size // group.parts < 2:
                return None, f"its heads have a single {kind} neuron"
        return graph.groups[unit.heads], ""

    def rank_step(self, layer: LayerInfo) -> int:
        return 1

    def max_rank(self, layer: LayerInfo) -> int:
        self._group(layer.name)
        assert self._graph is not None
        unit = self._units[layer.name]
        return max(g.size // g.parts for g in self._unit_groups(self._graph, unit))

    def _kept(self, graph: DependencyGraph, unit: AttentionUnit, rank: int) -> dict[int, int]:
        return {
            g.id: min(rank, g.size // g.parts) * g.parts for g in self._unit_groups(graph, unit)
        }

    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        heads = self._group(layer.name)
        assert self._graph is not None
        graph = self._graph
        sizes = {g.id: g.size for g in graph.groups.values()}
        removed = removals(
            sizes, graph_parts(graph), self._kept(graph, self._units[layer.name], rank)
        )
        total = Cost(0, 0)
        for name in touched(graph, heads):
            total = total + module_cost(graph.modules[name], removed)
        return total

    def exact_costs(self) -> ChannelCosts:
        self._group_check()
        assert self._graph is not None
        units = {name: self._unit_groups(self._graph, self._units[name]) for name in self._groups}
        return ChannelCosts.from_graph(self._graph, {}, units)

    def rank_channels(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup, name: str
    ) -> list[int]:  # pragma: no cover - factorize_in ranks each group of the unit
        return list(range(group.size))

    def factorize_in(self, model: nn.Module, name: str) -> Factorization:
        graph, _ = self.group_in(model, name)
        unit = self.unit(graph, name)
        if self._structure_only or self._samples is None:  # no replay: SNP's orders need data
            raise SelectionMismatchError(
                f"SNP cannot rebuild layer {name!r} without the data that chose its neurons: "
                "pass the scheme with its data."
            )
        assert unit is not None
        orders = {}
        for group_id in unit.query_key:
            orders[group_id] = _order(self._score_energy(graph, graph.groups[group_id]))
        for group_id in unit.value:
            orders[group_id] = _order(self._output_energy(graph, graph.groups[group_id]))
        return _SNPFactorization(model, graph, orders, name)

    def _score_energy(self, graph: DependencyGraph, group: ChannelGroup) -> torch.Tensor:
        """``sum over samples of ||q_j||^2 ||k_j||^2``: each query/key pair's share of the
        attention scores (weights' norms when q and k cannot be told apart)."""
        pieces = [
            (producer, offset)
            for producer in group.producers
            for offset, segment in _offsets(graph.modules[producer].outputs)
            if segment.group == group.id
        ]
        if len(pieces) != 2:
            return self.importance_rows(graph, group)
        seen = capture(graph.view, list(dict.fromkeys(p for p, _ in pieces)), self._samples)  # type: ignore[arg-type]
        norms = []
        for producer, offset in pieces:
            out = seen[producer][1]
            out = out.reshape(out.shape[0], -1, out.shape[-1])[..., offset : offset + group.size]
            norms.append(out.double().pow(2).sum(dim=1))  # [sample, channel]
        return (norms[0] * norms[1]).sum(dim=0)

    def _output_energy(self, graph: DependencyGraph, group: ChannelGroup) -> torch.Tensor:
        """Each value neuron's energy in the output projection: ``||x_j||^2 ||W[:, j]||^2``
        on the projection's inputs, summed over the layers reading it."""
        readers = [c for c in group.consumers if isinstance(graph.view.get_submodule(c), nn.Linear)]
        if not readers:
            return self.importance_rows(graph, group)
        seen = capture(graph.view, readers, self._samples)  # type: ignore[arg-type]
        total = torch.zeros(group.size, dtype=torch.float64)
        for reader in readers:
            inputs = seen[reader][0]
            inputs = inputs.reshape(-1, inputs.shape[-1]).double()
            weight = weight_of(graph.view.get_submodule(reader)).detach().double()
            for offset, segment in _offsets(graph.modules[reader].inputs):
                if segment.group == group.id:
                    columns = slice(offset, offset + segment.size)
                    energy = inputs[:, columns].pow(2).sum(0) * weight[:, columns].pow(2).sum(0)
                    total += energy / energy.sum().clamp_min(1e-30)
        return total


def _offsets(layout: Sequence[Any]) -> list[tuple[int, Any]]:
    out, offset = [], 0
    for segment in layout:
        out.append((offset, segment))
        offset += segment.size * segment.block
    return out


def _order(importance: torch.Tensor) -> list[int]:
    return torch.sort(importance.double(), descending=True, stable=True).indices.tolist()
