"""Filter pruning: remove a layer's least important output channels (filters).

The criterion ranks the channels (``l2`` weight norm, ``gm`` geometric-median redundancy,
``nuclear`` norm of the feature maps on data, or any registered callable); the channels go
from every layer producing them (residual adds tie several), the BatchNorms and depthwise
convs they pass through, and the inputs of every layer reading them. ``IndexPruning``
removes channels the user names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter, check_positive_int
from greedy_compress.graph import ChannelGroup, DependencyGraph
from greedy_compress.model.hashing import callable_identity, tensor_hash
from greedy_compress.model.modules import weight_of
from greedy_compress.model.sampling import capture, take_samples
from greedy_compress.schemes._pruning import GroupPruning
from greedy_compress.schemes.criteria import ChannelEvidence, Criterion, get_criterion

__all__ = ["FilterPruning", "IndexPruning", "filter_pruning_scheme"]


class FilterPruning(GroupPruning):
    """Prune each layer's output channels, ranked by ``criterion``.

    Args:
        criterion: ``"l2"``, ``"gm"``, ``"nuclear"`` (see ``available_criteria()``) or a
            callable ``ChannelEvidence -> importance per channel``.
        data: input batches (e.g. a DataLoader), needed by data criteria (``"nuclear"``).
        num_samples: how many inputs of ``data`` the criterion sees.

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

    @property
    def uses_data(self) -> bool:
        """Whether the criterion ranks channels from feature maps on data."""
        return bool(getattr(self.criterion, "needs_data", False))

    def settings(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
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
        group = graph.output_group(name)
        if group is None:
            return None, "its output channels are not tracked"
        if group.blocked is not None:
            return None, f"its output channels cannot change: {group.blocked}"
        if group.size < 2:
            return None, "it has a single output channel"
        if group.producers[0] != name:
            return None, (
                f"its output channels are tied to {group.producers[0]}'s "
                "(residual add); they are pruned with that layer"
            )
        return group, ""

    def evidence(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup
    ) -> ChannelEvidence:
        """The producers' filters and, for data criteria, the group's feature maps."""
        weights = tuple(weight_of(model.get_submodule(p)).detach() for p in group.producers)
        features = None
        if self.uses_data:
            assert self._samples is not None
            reader = group.consumers[0]
            inputs, _ = capture(model, [reader], self._samples)[reader]
            offset, segment = 0, None
            for part in graph.modules[reader].inputs:
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

    def rank_channels(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup, name: str
    ) -> list[int]:
        importance = self.criterion(self.evidence(model, graph, group))
        # Stable sort, so ties keep the lower channel index (deterministic).
        order = torch.sort(importance.detach().cpu().double(), descending=True, stable=True)
        return order.indices.tolist()


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
        kept = [c for c in range(group.size) if c not in removed]
        return kept + sorted(removed)


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
