"""What a filter-pruning criterion sees, and the registry criteria add themselves to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from greedy_compress._util.constraints import bad_parameter

__all__ = [
    "ChannelEvidence",
    "Criterion",
    "available_criteria",
    "get_criterion",
    "register_criterion",
]


@dataclass(frozen=True)
class ChannelEvidence:
    """Everything known about one channel group's channels.

    Attributes:
        weights: each producing layer's filters, one row per channel (``[channels, -1]``).
            :class:`~greedy_compress.schemes.FilterPruning` asks once per layer a residual
            add ties (or, with ``policy="backward"``, per layer reading the channels: its
            input columns) and combines the answers by its ``policy``.
        features: the channels' feature maps on sample data (``[samples, channels, ...]``),
            given only to criteria registered with ``needs_data=True``.
    """

    weights: tuple[torch.Tensor, ...]
    features: torch.Tensor | None = None

    @property
    def filters(self) -> torch.Tensor:
        """All producers' filters of each channel side by side: ``[channels, total]``."""
        return torch.cat([w.reshape(w.shape[0], -1) for w in self.weights], dim=1)


Criterion = Callable[[ChannelEvidence], torch.Tensor]
"""``criterion(evidence) -> importance``: one score per channel; the lowest are pruned."""

_CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str, *, needs_data: bool = False) -> Callable[[Criterion], Criterion]:
    """Register a filter-pruning criterion under ``name`` (use as a decorator).

    Example:
        >>> @register_criterion("l1")
        ... def l1(evidence):
        ...     return evidence.filters.abs().sum(dim=1)
    """

    def add(function: Criterion) -> Criterion:
        function.needs_data = needs_data  # type: ignore[attr-defined]
        function.criterion_name = name  # type: ignore[attr-defined]
        _CRITERIA[name] = function
        return function

    return add


def available_criteria() -> list[str]:
    """Names of the registered criteria, sorted."""
    return sorted(_CRITERIA)


def get_criterion(criterion: str | Criterion, owner: str) -> Criterion:
    """A registered criterion by name, or a callable given directly."""
    if callable(criterion):
        return criterion
    if not isinstance(criterion, str) or criterion not in _CRITERIA:
        allowed = "one of " + ", ".join(repr(n) for n in available_criteria()) + " or a callable"
        raise bad_parameter("criterion", owner, allowed, criterion)
    return _CRITERIA[criterion]
