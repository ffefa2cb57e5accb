"""What channel pruning and filter pruning share: the model's channel-dependency graph, one
channel group per compressible layer, exact group costs, and dense group pruning.

A pruning scheme compresses a layer by removing channels of one channel group (the layer's
output channels for filter pruning, its input channels for channel pruning). Every module the
group touches changes, so the layer's cost in the dictionary (set in :meth:`prepare`) is the
summed cost of all of them, and the rank is the number of channels kept.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.errors import GreedyCompressError, SelectionMismatchError
from greedy_compress.graph import (
    ChannelCosts,
    ChannelGroup,
    DependencyGraph,
    build_graph,
    group_cost,
    group_replacements,
)
from greedy_compress.model.cost import Cost, CostMetric, measure_cost
from greedy_compress.model.modules import weight_of
from greedy_compress.model.profile import LayerInfo, ModelProfile
from greedy_compress.model.statistics import InputMoment
from greedy_compress.model.swap import Replacement
from greedy_compress.schemes._base import Factorization, Scheme

__all__ = ["GroupPruning", "PruningFactorization"]


class PruningFactorization(Factorization):
    """A layer's channel group with its channels ranked; truncate to any number kept.

    ``order`` lists the group's channels, most important first; ``rank`` keeps its first
    ``rank`` entries. Subclasses may adjust the replaced modules (weight reconstruction).
    """

    def __init__(
        self,
        model: nn.Module,
        graph: DependencyGraph,
        group: ChannelGroup,
        order: Sequence[int],
        *,
        name: str,
    ) -> None:
        self.model, self.graph, self.group, self.name = model, graph, group, name
        self.order = [int(c) for c in order]

    def keep(self, rank: int) -> list[int]:
        """The channels kept at ``rank``, in ascending order: the first ``rank`` of the
        order, or for a group split into heads the first ``rank / heads`` of each head."""
        parts = self.group.parts
        if parts <= 1:
            return sorted(self.order[:rank])
        per, quota = self.group.size // parts, rank // parts
        taken = [0] * parts
        kept = []
        for channel in self.order:
            if taken[channel // per] < quota:
                taken[channel // per] += 1
                kept.append(channel)
        return sorted(kept)

    def replacements(self, name: str, rank: int) -> dict[str, Replacement]:
        return group_replacements(self.model, self.graph, self.group, self.keep(rank))

    def build(self, rank: int) -> nn.Module:
        # The layer alone; the model needs every module of replacements().
        layer = self.replacements(self.name, rank)[self.name]
        assert isinstance(layer, nn.Module)
        return layer

    def output_error(self, rank: int, moment: InputMoment, original: nn.Module) -> float | None:
        """The layer's own output error: its pruned weight, zero where channels went."""
        weight = weight_of(original).detach().to(torch.float64)
        pruned = weight_of(self.build(rank)).detach().to(torch.float64)
        keep = torch.tensor(self.keep(rank), dtype=torch.long)
        dense = torch.zeros_like(weight)
        if pruned.shape[1] != weight.shape[1] and pruned.shape[0] == weight.shape[0]:
            dense[:, keep] = pruned  # input channels pruned (channel pruning)
        elif pruned.shape[0] != weight.shape[0] and pruned.shape[1] == weight.shape[1]:
            dense[keep] = pruned  # output channels pruned (filter pruning)
        elif pruned.shape == weight.shape:
            dense = pruned
        else:
            return None
        return moment.error(weight - dense)

    def replay(self, rank: int) -> dict[str, Any]:
        return {"kept": self.keep(rank)}


class GroupPruning(Scheme):
    """Base of the pruning schemes: call :meth:`prepare` with the model first.

    Subclasses choose the group each layer prunes (:meth:`group_for`) and rank its channels
    (:meth:`rank_channels`). Pruned layers compound, so selections are priced exactly
    (:meth:`exact_costs`).
    """

    costs_interact = True

    def __init__(self) -> None:
        self.data: Iterable[Any] | None = None
        self._samples: torch.Tensor | None = None
        # From a selection's details: each layer's kept channels, recorded when it was
        # built; with structure_only they rebuild the shapes with no data (the weights are
        # loaded afterwards).
        self._replay: dict[str, list[int]] = {}
        self._structure_only = False
        self._model: nn.Module | None = None
        self._example: torch.Tensor | None = None
        self._graph: DependencyGraph | None = None
        self._groups: dict[str, ChannelGroup] = {}
        self._reasons: dict[str, str] = {}
        self._model_cost: Cost | None = None

    # hooks for subclasses --------------------------------------------------------------

    @abstractmethod
    def group_for(self, graph: DependencyGraph, name: str) -> tuple[ChannelGroup | None, str]:
        """The group layer ``name`` prunes, or (None, why it cannot be pruned)."""

    @abstractmethod
    def rank_channels(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup, name: str
    ) -> list[int]:
        """The group's channels, most important first."""

    def with_data(self, data: Iterable[Any] | None) -> Scheme:
        if not self.uses_data or data is None or self.data is not None:
            return self
        given = copy.copy(self)
        given.data, given._samples = data, None
        return given

    def use_details(self, details: Mapping[str, Any]) -> None:
        """Read scheme settings a selection carries (e.g. channel indices)."""

    # Scheme ----------------------------------------------------------------------------

    def prepare(
        self,
        model: nn.Module,
        *,
        example_input: torch.Tensor | None = None,
        profile: ModelProfile | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ModelProfile | None:
        owner = f"{type(self).__name__}.prepare"
        if not isinstance(example_input, torch.Tensor):
            raise bad_parameter(
                "example_input",
                owner,
                f"a tensor the model accepts ({self.name} traces the model with it; "
                "apply_selection and load_compressed take example_input=)",
                example_input,
            )
        details = details or {}
        self._structure_only = details.get("structure_only") is True
        self._replay = _replay_of(details.get("replay"), owner)
        if not self._structure_only:
            self.check_ready()
        if details:
            self.use_details(details)
        graph = build_graph(model, example_input)
        self._model, self._example, self._graph = model, example_input, graph
        self._groups, self._reasons = {}, {}
        self._model_cost = profile.model_cost if profile is not None else None
        unusable = profile.unusable if profile is not None else {}
        for name, (group, reason) in self.layer_groups(graph).items():
            if group is not None:
                bad = next((m for m in group.members if m in unusable), None)
                if bad is not None:
                    group, reason = None, f"its channels also touch {bad} ({unusable[bad]})"
            if group is None:
                self._reasons[name] = reason
            else:
                self._groups[name] = group
        for name, reason in graph.blocked_modules.items():
            self._reasons.setdefault(name, reason)
        for name, use in graph.modules.items():
            if use.role == "depthwise":
                self._reasons.setdefault(
                    name,
                    "a depthwise conv: it loses the channels it carries with their producers",
                )
        if profile is None:
            return None
        profile = self.profile_layers(profile)
        layers = {
            name: dataclasses.replace(info, cost=group_cost(graph, group, group.size))
            if (group := self._groups.get(name)) is not None
            else info
            for name, info in profile.layers.items()
        }
        return dataclasses.replace(profile, layers=layers)

    def layer_groups(self, graph: DependencyGraph) -> dict[str, tuple[ChannelGroup | None, str]]:
        """Each layer the scheme might prune, with its group or why it cannot: by default the
        model's Convs and Linears."""
        return {
            name: self.group_for(graph, name)
            for name, use in graph.modules.items()
            if use.role in ("conv", "linear") and graph.in_model(name)
        }

    def profile_layers(self, profile: ModelProfile) -> ModelProfile:
        """The profile whose layers the scheme compresses (the Convs and Linears; attention
        schemes add the attention modules)."""
        return profile

    def rank_step(self, layer: LayerInfo) -> int:
        """Ranks are multiples of this: a group split into heads keeps the same number of
        channels in each head."""
        group = self._groups.get(layer.name)
        return group.parts if group is not None else 1

    def rank_for_ratio(
        self, layer: LayerInfo, ratio: float, metric: CostMetric, multiplicity: int = 1
    ) -> int:
        step = math.lcm(multiplicity, self.rank_step(layer))
        top = self.max_rank(layer)
        if step == 1:
            return super().rank_for_ratio(layer, ratio, metric, multiplicity)
        budget = ratio * layer.cost.get(metric)
        low, high = 1, max(1, top // step)
        while low < high:  # cost grows with the rank: the largest multiple within budget
            middle = (low + high + 1) // 2
            if self.cost(layer, middle * step).get(metric) <= budget:
                low = middle
            else:
                high = middle - 1
        return top if ratio >= 1 else min(low * step, top)

    def unsupported_reason(self, layer: LayerInfo, metric: CostMetric) -> str | None:
        reason = self.skip_reason(layer)
        if reason is not None:
            return reason
        step = self.rank_step(layer)
        if self.cost(layer, step).get(metric) >= layer.cost.get(metric):
            return f"{self.name} cannot lower its {metric} cost even at rank {step}"
        return None

    def _group(self, name: str) -> ChannelGroup:
        if self._graph is None:
            raise GreedyCompressError(
                f"Scheme {self.name!r} needs the model: call prepare(model, example_input=...) "
                "first (build_eval_scores and apply_selection do)."
            )
        group = self._groups.get(name)
        if group is None:
            reason = self._reasons.get(name, "not a Conv/Linear of the traced model")
            raise GreedyCompressError(f"{self.name} cannot prune layer {name!r}: {reason}.")
        return group

    def skip_reason(self, layer: LayerInfo) -> str | None:
        if self._graph is None:
            return f"{self.name} needs the model's graph (prepare was not called)"
        if layer.name in self._groups:
            return None
        return self._reasons.get(layer.name, "not found in the traced model")

    def max_rank(self, layer: LayerInfo) -> int:
        return self._group(layer.name).size

    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        group = self._group(layer.name)  # a clear error if prepare() has not run
        assert self._model is not None and self._graph is not None  # set by prepare()
        return group_cost(self._graph, group, rank)

    def factorize(self, module: nn.Module) -> Factorization:
        raise GreedyCompressError(
            f"{self.name} prunes channels shared with other layers, so it needs the model: "
            "use factorize_in(model, name) after prepare()."
        )

    def graph_for(self, model: nn.Module) -> DependencyGraph:
        """The graph of ``model``: the prepared one, or traced anew for a changed copy."""
        self._group_check()
        if model is self._model:
            assert self._graph is not None
            return self._graph
        assert self._example is not None
        return build_graph(model, self._example)

    def _group_check(self) -> None:
        if self._graph is None:
            self._group("")

    def group_in(self, model: nn.Module, name: str) -> tuple[DependencyGraph, ChannelGroup]:
        """Layer ``name``'s group in ``model`` (which may already be partly pruned)."""
        self._group(name)  # the layer must be prunable in the prepared model
        graph = self.graph_for(model)
        group, reason = self.group_for(graph, name)
        if group is None:
            raise GreedyCompressError(f"{self.name} cannot prune layer {name!r}: {reason}.")
        return graph, group

    def factorize_in(self, model: nn.Module, name: str) -> Factorization:
        graph, group = self.group_in(model, name)
        if name in self._replay:
            return PruningFactorization(
                model, graph, group, self._recorded_order(name, group), name=name
            )
        if self._structure_only:
            raise SelectionMismatchError(
                f"The selection records no kept channels for layer {name!r}, so it cannot be "
                "rebuilt without the data that chose them: pass the scheme with its data."
            )
        order = self.rank_channels(model, graph, group, name)
        return PruningFactorization(model, graph, group, order, name=name)

    def _recorded_order(self, name: str, group: ChannelGroup) -> list[int]:
        """The recorded kept channels first, then the rest (so ``keep(len(kept))`` is them)."""
        kept = self._replay[name]
        if any(not 0 <= c < group.size for c in kept):
            raise SelectionMismatchError(
                f"The selection keeps channels {kept} of layer {name!r}, which has "
                f"{group.size} channels: indices must be in [0, {group.size})."
            )
        return kept + [c for c in range(group.size) if c not in set(kept)]

    def recorded_channels(self, name: str) -> list[int] | None:
        """The kept channels a selection recorded for layer ``name`` (after prepare)."""
        return self._replay.get(name)

    @property
    def prepared_model(self) -> nn.Module:
        """The model passed to :meth:`prepare` (the reference for reconstruction)."""
        self._group_check()
        assert self._model is not None
        return self._model

    def prunable_layers(self) -> dict[str, ChannelGroup]:
        """Layers this scheme can prune in the prepared model, with their groups."""
        return dict(self._groups)

    def exact_costs(self) -> ChannelCosts:
        """The channel graph's exact pricing of any selection of the prunable layers."""
        self._group_check()  # a clear error if prepare() has not run
        assert self._graph is not None
        return ChannelCosts.from_graph(self._graph, self._groups)

    def selection_cost(self, ranks: Mapping[str, int]) -> Cost:
        """Exact cost of the prepared model with several layers pruned at once.

        ``ranks`` maps layer names to channels kept. The dictionary's per-layer costs are
        exact one layer at a time; this also counts layers that lose channels on both sides.

        Example:
            >>> scheme = get_scheme("filter_pruning_l2")
            >>> _ = scheme.prepare(model, example_input=example_input)
            >>> scheme.selection_cost({"features.0": 16}).macs < count_macs(model, example_input)
            True
        """
        self._group_check()  # a clear error if prepare() has not run
        for name in ranks:
            self._group(name)  # a clear error for a layer it cannot prune
        if self._model_cost is None:
            assert self._model is not None and self._example is not None  # set by prepare()
            self._model_cost = measure_cost(self._model, self._example)
        return self.exact_costs().cost(self._model_cost, ranks)

    def skipped_layers(self) -> dict[str, str]:
        """Layers it cannot prune, with the reason."""
        return dict(self._reasons)


def _replay_of(value: Any, owner: str) -> dict[str, list[int]]:
    """A selection's recorded kept channels, checked: ``{layer: {"kept": [distinct ints]}}``."""
    if value is None:
        return {}
    allowed = 'a dict {layer: {"kept": [distinct channel indices]}}'
    if not isinstance(value, Mapping):
        raise bad_parameter("details['replay']", owner, allowed, value)
    found = {}
    for layer, entry in value.items():
        kept = entry.get("kept") if isinstance(entry, Mapping) else None
        if (
            not isinstance(kept, list)
            or not kept
            or any(isinstance(c, bool) or not isinstance(c, int) for c in kept)
            or len(set(kept)) != len(kept)
        ):
            raise SelectionMismatchError(
                f"The selection's kept channels of layer {layer!r} must be a non-empty list of "
                f"distinct ints. Got {entry!r} instead."
            )
        found[str(layer)] = [int(c) for c in kept]
    return found
