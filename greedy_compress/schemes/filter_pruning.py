"""Filter pruning: remove a layer's least important output channels (filters).

The criterion ranks the channels (``l2`` weight norm, ``gm`` geometric-median redundancy,
``nuclear`` norm of the feature maps on data, or any registered callable); the channels go
from every layer producing them (residual adds tie several), the BatchNorms and depthwise
convs they pass through, and the inputs of every layer reading them. ``IndexPruning``
removes channels the user names.

NetsPresso's pruning options say how a criterion's importances become one score per channel
(:mod:`greedy_compress.schemes.criteria.options`): ``policy`` combines the layers a residual
add ties, ``group_policy`` scores a group split into equal parts (a grouped conv), and
``layer_norm`` makes the scores of different layers comparable for one global threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter, check, check_positive_int
from greedy_compress.graph import ChannelGroup, DependencyGraph
from greedy_compress.model.hashing import callable_identity, tensor_hash
from greedy_compress.model.modules import weight_of
from greedy_compress.model.sampling import capture, take_samples
from greedy_compress.schemes._pruning import GroupPruning
from greedy_compress.schemes.criteria import ChannelEvidence, Criterion, get_criterion
from greedy_compress.schemes.criteria.options import (
    GROUP_POLICIES,
    LAYER_NORMS,
    POLICIES,
    combine,
    normalize,
    part_scores,
)

__all__ = ["FilterPruning", "IndexPruning", "filter_pruning_scheme"]


class FilterPruning(GroupPruning):
    """Prune each layer's output channels, ranked by ``criterion``.

    Args:
        criterion: ``"l2"``, ``"gm"``, ``"nuclear"`` (see ``available_criteria()``) or a
            callable ``ChannelEvidence -> importance per channel``.
        data: input batches (e.g. a DataLoader), needed by data criteria (``"nuclear"``).
        num_samples: how many inputs of ``data`` the criterion sees.
        policy: how the importances of the layers whose channels a residual add ties are
            combined: ``"average"`` (default) or ``"sum"`` of each layer's, or
            ``"backward"``: the criterion on the following layers' weights that read the
            channels (their input columns), averaged over those layers.
        layer_norm: how a layer's scores are rescaled so that one threshold compares layers
            (``"none"``, ``"standard_score"``, ``"tss_norm"`` (default),
            ``"linear_scaling"``, ``"softmax_norm"``): it never changes which channels one
            layer keeps, only :func:`~greedy_compress.selection.recommend_global_threshold`'s
            ranking across layers.
        group_policy: a group split into equal parts (a grouped conv's groups) keeps the
            same number of channels in each: ``"count"`` (default) ranks each part's
            channels on their own; ``"average"`` / ``"sum"`` score position ``j`` of every
            part together, so the same positions go from each part.

    The defaults are NetsPresso's. All three are recorded in :meth:`settings`, so
    dictionaries built with other options have other fingerprints.

    Example:
        >>> small, report = compress(model, evaluator, target=0.5, input_shape=(1, 1, 8, 8),
        ...                          scheme=FilterPruning(criterion="gm"), progress=False)
        >>> report.achieved_ratio <= 0.5
        True
    """

    name = "filter_pruning_l2"
    rank_unit = "output channels"
    default_criterion: str = "l2"

    def __init__(
        self,
        *,
        criterion: str | Criterion | None = None,
        data: Iterable[Any] | None = None,
        num_samples: int = 64,
        policy: str = "average",
        layer_norm: str = "tss_norm",
        group_policy: str = "count",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        chosen = self.default_criterion if criterion is None else criterion
        self.criterion = get_criterion(chosen, owner)
        self._registered_criterion = isinstance(chosen, str)
        label = chosen if isinstance(chosen, str) else getattr(chosen, "__name__", "custom")
        self.name = f"filter_pruning_{label}"  # type: ignore[misc]
        self.data = data
        self.num_samples = check_positive_int(num_samples, "num_samples", owner)
        self.policy: str = check(policy, POLICIES, "policy", owner)
        self.layer_norm: str = check(layer_norm, LAYER_NORMS, "layer_norm", owner)
        self.group_policy: str = check(group_policy, GROUP_POLICIES, "group_policy", owner)

    @property
    def uses_data(self) -> bool:
        """Whether the criterion ranks channels from feature maps on data."""
        return bool(getattr(self.criterion, "needs_data", False))

    def settings(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "policy": self.policy,
            "layer_norm": self.layer_norm,
            "group_policy": self.group_policy,
        }
        if not self._registered_criterion:
            # An unregistered callable: its code, not its (possibly shared) name.
            found["criterion"] = callable_identity(self.criterion)
        if self.uses_data:
            samples = tensor_hash(self._samples) if self._samples is not None else None
            found.update(num_samples=self.num_samples, samples=samples)
        return found

    def check_ready(self) -> None:
        if self.uses_data and self._samples is None:
            self._samples = take_samples(
                self.data, self.num_samples, f"{type(self).__name__} ({self.name})"
            )

    def group_for(self, graph: DependencyGraph, name: str) -> tuple[ChannelGroup | None, str]:
        group, reason = output_group_for(graph, name)
        if group is None:
            return None, reason
        owner = next(p for p in group.producers if graph.in_model(p))
        if owner != name:
            return None, (
                f"its output channels are tied to {owner}'s (a residual add, or attention's "
                "query and key); they are pruned with that layer"
            )
        return group, ""

    def evidence(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup
    ) -> ChannelEvidence:
        """The producers' filters and, for data criteria, the group's feature maps."""
        view = graph.view if graph.view is not None else model
        weights = tuple(producer_rows(view, graph, group))
        features = None
        if self.uses_data:
            assert self._samples is not None
            # The first reader's input; channels only attention reads (q, k): the producer's
            # output.
            read = bool(group.consumers)
            reader = group.consumers[0] if read else group.producers[0]
            inputs, outputs = capture(view, [reader], self._samples)[reader]
            inputs = inputs if read else outputs
            if isinstance(view.get_submodule(reader), nn.Linear):
                inputs = inputs.movedim(-1, 1)  # features of tokens: channels to dim 1
            offset, segment = 0, None
            use = graph.modules[reader]
            for part in use.inputs if read else use.outputs:
                if part.group == group.id:
                    segment = part
                    break
                offset += part.size * part.block
            assert segment is not None
            width = segment.size * segment.block
            if inputs.dim() == 2:  # flattened: each channel is a block of features
                features = inputs[:, offset : offset + width].reshape(
                    inputs.shape[0], segment.size, segment.block
                )
            else:
                features = inputs[:, offset : offset + width]
        return ChannelEvidence(weights=weights, features=features)

    def channel_importance(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup
    ) -> torch.Tensor:
        """One importance per channel of ``group``: the criterion on each tied layer's
        weights, combined by :attr:`policy` (float64)."""
        view = graph.view if graph.view is not None else model
        found = self.evidence(model, graph, group)
        rows = found.weights
        if self.policy == "backward":
            # Channels no layer's weights read (attention's q and k): their producers'.
            rows = tuple(consumer_rows(view, graph, group)) or rows
        how = "sum" if self.policy == "sum" else "average"
        return combine(
            [self.criterion(ChannelEvidence((w,), found.features)).cpu() for w in rows], how
        )

    def part_scores(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup
    ) -> torch.Tensor:
        """The group's scores as ``[rows, channels per part]``, by :attr:`group_policy`: a
        row per part (``"count"``: each part ranked alone) or one row of positions shared
        by every part; a group not split into parts is one row."""
        return part_scores(
            self.channel_importance(model, graph, group), group.parts, self.group_policy
        )

    def threshold_scores(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup
    ) -> torch.Tensor:
        """:meth:`part_scores` rescaled by :attr:`layer_norm`, comparable across layers."""
        return normalize(self.part_scores(model, graph, group), self.layer_norm)

    def rank_channels(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup, name: str
    ) -> list[int]:
        scores = self.part_scores(model, graph, group)
        # Stable sort, so ties keep the lower channel index (deterministic).
        order = torch.sort(scores.reshape(-1), descending=True, stable=True).indices.tolist()
        if scores.shape[0] == group.parts:
            return order
        # One row of positions: position j of every part, so each part loses the same ones.
        per = group.size // group.parts
        return [part * per + j for j in order for part in range(group.parts)]


class IndexPruning(FilterPruning):
    """Prune the output channels the user names, per layer (manual mode).

    Args:
        indices: ``{layer name: channel indices to remove}``; a selection made by
            :func:`greedy_compress.selection.manual.manual_selection` carries them too.

    Example:
        >>> selection = manual_selection(model, {"features.0": [0, 5]},
        ...                              scheme="filter_pruning_index", input_shape=(1, 1, 8, 8))
        >>> apply_selection(model, selection).features[0].out_channels
        30
    """

    name = "filter_pruning_index"
    manual_values = "indices"

    def __init__(self, *, indices: Mapping[str, Iterable[int]] | None = None) -> None:
        super().__init__(criterion=_no_criterion)
        self.name = "filter_pruning_index"  # type: ignore[misc]
        self.indices: dict[str, list[int]] = {}
        if indices is not None:
            self.use_details({"indices": indices})

    def use_details(self, details: Mapping[str, Any]) -> None:
        indices = details.get("indices", {})
        if not isinstance(indices, Mapping):
            raise bad_parameter(
                "indices", "IndexPruning", "a dict {layer: [channel, ...]}", indices
            )
        for layer, channels in indices.items():
            self.indices[str(layer)] = sorted({int(c) for c in channels})

    def settings(self) -> dict[str, Any]:
        return {"indices": self.indices}

    def group_for(self, graph: DependencyGraph, name: str) -> tuple[ChannelGroup | None, str]:
        group, reason = super().group_for(graph, name)
        if group is not None and name not in self.indices:
            return None, "no channel indices given for this layer"
        return group, reason

    def rank_channels(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup, name: str
    ) -> list[int]:
        removed = set(self.indices.get(name, ()))
        if any(not 0 <= c < group.size for c in removed) or len(removed) >= group.size:
            raise bad_parameter(
                "indices",
                "IndexPruning",
                f"channel indices in [0, {group.size}) for {name!r}, leaving one channel or more",
                sorted(removed),
            )
        per = group.size // group.parts
        if len({sum(c // per == part for c in removed) for part in range(group.parts)}) > 1:
            raise bad_parameter(
                "indices",
                "IndexPruning",
                f"as many channels in each of the {group.parts} heads of {name!r} "
                f"({per} channels each)",
                sorted(removed),
            )
        kept = [c for c in range(group.size) if c not in removed]
        return kept + sorted(removed)


def output_group_for(graph: DependencyGraph, name: str) -> tuple[ChannelGroup | None, str]:
    """The group of layer ``name``'s output channels if they can be pruned, else why not."""
    use = graph.modules.get(name)
    if use is None or use.role not in ("conv", "linear"):
        return None, "its output channels are not tracked"
    if len({s.group for s in use.outputs}) > 1:
        return None, (
            f"its output channels are split into {len(use.outputs)} parts (a chunk, a slice, "
            "a fused projection); the layers reading each part prune it"
        )
    group = graph.groups[use.outputs[0].group]
    if group.blocked is not None:
        return None, f"its output channels cannot change: {group.blocked}"
    if graph.stacked_with(group.id):
        return None, (
            "its channels are laid side by side with others of equal width in one reshape "
            "(a fused qkv projection); head_pruning and snp prune them together"
        )
    if group.size // group.parts < 2:
        per = "head" if group.parts > 1 else "layer"
        return None, f"it has a single output channel per {per}"
    return group, ""


def producer_rows(
    view: nn.Module, graph: DependencyGraph, group: ChannelGroup
) -> list[torch.Tensor]:
    """Each producer's filters of the group's channels, one row per channel (a producer
    writing the group in several places, like q and k of a fused projection, gives each)."""
    rows = []
    for producer in group.producers:
        weight = weight_of(view.get_submodule(producer)).detach()
        offset = 0
        for segment in graph.modules[producer].outputs:
            width = segment.size * segment.block
            if segment.group == group.id:
                rows.append(weight[offset : offset + width])
            offset += width
    return rows


def consumer_rows(
    view: nn.Module, graph: DependencyGraph, group: ChannelGroup
) -> list[torch.Tensor]:
    """Each consumer's weights reading the group's channels, one row per channel (the
    ``policy="backward"`` evidence): a conv's input columns (for a grouped conv, those of
    the channel's own conv group), a Linear's columns of the channel's block of features."""
    rows = []
    for consumer in group.consumers:
        use = graph.modules[consumer]
        weight = weight_of(view.get_submodule(consumer)).detach()
        columns = weight.reshape(weight.shape[0], weight.shape[1], -1)  # [out, in, taps]
        offset = 0
        for segment in use.inputs:
            width = segment.size * segment.block
            if segment.group == group.id:
                if use.groups > 1:  # one segment (the graph refuses concatenated inputs)
                    fan_in, fan_out = columns.shape[1], columns.shape[0] // use.groups
                    rows.append(
                        torch.stack(
                            [
                                columns[
                                    c // fan_in * fan_out : (c // fan_in + 1) * fan_out, c % fan_in
                                ]
                                for c in range(segment.size)
                            ]
                        ).reshape(segment.size, -1)
                    )
                else:
                    block = columns[:, offset : offset + width].reshape(
                        columns.shape[0], segment.size, segment.block * columns.shape[2]
                    )
                    rows.append(block.transpose(0, 1).reshape(segment.size, -1))
            offset += width
    return rows


def _no_criterion(evidence: ChannelEvidence) -> torch.Tensor:  # pragma: no cover - unused
    return evidence.filters.norm(dim=1)


def filter_pruning_scheme(criterion: str) -> type[FilterPruning]:
    """A registrable :class:`FilterPruning` subclass named ``filter_pruning_<criterion>``.

    Example:
        >>> filter_pruning_scheme("gm").name
        'filter_pruning_gm'
    """
    return type(
        f"FilterPruning_{criterion}",
        (FilterPruning,),
        {
            "name": f"filter_pruning_{criterion}",
            "default_criterion": criterion,
            "__doc__": f"Filter pruning by the {criterion!r} criterion (see FilterPruning).",
        },
    )
