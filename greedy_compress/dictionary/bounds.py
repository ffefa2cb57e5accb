"""``config_list`` in the greedy workflow: which layers are compressed, and the ratios
each may take.

The entries are NNI's (``op_types`` with ``"default"``, ``op_names``, ``exclude``; a later
entry replaces an earlier one's settings on the layers both cover), resolved by
:func:`~greedy_compress.model.config_list.resolve_config_list`. Each entry may bound its
layers' kept ratio (the fraction of the layer's cost kept, in the build's cost metric, as
the dictionary's candidates) or fix it:

- ``min_ratio`` / ``max_ratio`` in (0, 1]: the solver only picks a candidate whose kept
  ratio lies in ``[min_ratio, max_ratio]`` (``max_ratio`` < 1: the layer must be
  compressed); "leave the layer alone" is ratio 1;
- ``ratio`` in (0, 1]: the layer is compressed at exactly this asked ratio (the rank
  :meth:`~greedy_compress.schemes.Scheme.rank_for_ratio` gives, as in manual mode); 1
  leaves it alone.

What each part changes: the layers chosen are the layers scored (the dictionary's);
bounds only restrict the solver's options (:class:`LayerBounds`, recorded with the
dictionary, honoured by every solver); a fixed ratio off the candidate grid adds that one
candidate to its layer (recorded in the fingerprint as ``extra_candidates``).

Example:
    >>> bounds = config_bounds(model, [{"op_types": ["default"], "max_ratio": 0.9},
    ...                                {"op_names": ["classifier"], "exclude": True}],
    ...                        owner="example")
    >>> {name: settings.get("max_ratio") for name, settings in bounds.items()}
    {'features.0': 0.9, 'features.3': 0.9, 'features.7': 0.9, 'features.10': 0.9}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from greedy_compress._util.constraints import RATIO
from greedy_compress.model.config_list import ConfigList, ConfigSpec, resolve_config_list
from greedy_compress.model.profile import COMPRESSIBLE_TYPES

__all__ = [
    "BOUND_KEYS",
    "LEAVE_ALONE",
    "LayerBounds",
    "bounds_from_json",
    "bounds_to_json",
    "compresses",
    "config_bounds",
    "config_spec",
    "named_layers",
]

#: The settings a greedy-workflow entry may give (each a ratio in (0, 1]).
BOUND_KEYS = ("ratio", "min_ratio", "max_ratio")
_TYPES = (*(t.__name__ for t in COMPRESSIBLE_TYPES), "MultiheadAttention")
_EPSILON = 1e-9  # kept ratios are quotients of ints: compare with a little slack


def _consistent(settings: dict[str, Any]) -> str | None:
    fixed = settings.get("ratio")
    low, high = settings.get("min_ratio"), settings.get("max_ratio")
    if fixed is not None and (low is not None or high is not None):
        return "either a fixed 'ratio' or 'min_ratio' / 'max_ratio' bounds, not both"
    if low is not None and high is not None and low > high:
        return "an entry with 'min_ratio' <= 'max_ratio'"
    return None


def config_spec(owner: str) -> ConfigSpec:
    """What a greedy-workflow config list accepts, for ``owner``'s error messages."""
    return ConfigSpec(
        owner=owner,
        default_types=_TYPES,
        supported_types=_TYPES,
        keys=dict.fromkeys(BOUND_KEYS, RATIO),
        check_entry=_consistent,
    )


def config_bounds(
    model: nn.Module, config_list: ConfigList, *, owner: str
) -> dict[str, dict[str, Any]]:
    """The layers ``config_list`` chooses, in model order, each with its settings.

    Raises:
        InvalidParameterError: a malformed entry, an unknown key, op type or op name, a
            ratio outside (0, 1], ``min_ratio`` > ``max_ratio``, or a fixed ratio given with
            bounds; the message names the entry and the value.
    """
    return resolve_config_list(model, config_list, config_spec(owner))


def compresses(chosen: Mapping[str, Mapping[str, Any]] | None, name: str) -> bool:
    """Whether layer ``name`` may be compressed under :func:`config_bounds`'s result
    (None: no config list, every layer may); a fixed ratio of 1 leaves it alone."""
    return chosen is None or (name in chosen and chosen[name].get("ratio") != 1.0)


def named_layers(config_list: ConfigList) -> set[str]:
    """The layers some entry that is not an ``exclude`` names in ``op_names`` (a layer named
    so and bounded below 1 must be one the scheme can compress). Call after
    :func:`config_bounds` validated the list."""
    named: set[str] = set()
    for entry in config_list:
        if not entry.get("exclude", False) and "op_names" in entry:
            names = entry["op_names"]
            named.update([names] if isinstance(names, str) else names)
    return named


@dataclass(frozen=True)
class LayerBounds:
    """The options a config list leaves the solver for one layer.

    Attributes:
        min_ratio: the smallest kept ratio allowed.
        max_ratio: the largest kept ratio allowed (1: leaving the layer alone is allowed).
        rank: a fixed ratio's rank: the only option (None: any rank within the bounds).
    """

    min_ratio: float = 0.0
    max_ratio: float = 1.0
    rank: int | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> LayerBounds | None:
        """The bounds of one layer's resolved settings (None: no restriction; a fixed
        ratio is resolved to its rank by the plan)."""
        low, high = settings.get("min_ratio"), settings.get("max_ratio")
        if low is None and high is None:
            return None
        return cls(min_ratio=0.0 if low is None else low, max_ratio=1.0 if high is None else high)

    def allows(self, kept_ratio: float, rank: int | None) -> bool:
        """Whether the option of ``rank`` (None: leave the layer alone) keeping
        ``kept_ratio`` of the layer's cost is allowed."""
        if self.rank is not None:
            return rank == self.rank
        if rank is None:
            return self.max_ratio >= 1.0
        return self.min_ratio - _EPSILON <= kept_ratio <= self.max_ratio + _EPSILON

    def describe(self) -> str:
        """A short phrase for listings and errors."""
        if self.rank is not None:
            return f"fixed at rank {self.rank}"
        return f"kept ratio in [{self.min_ratio:g}, {self.max_ratio:g}]"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {"min_ratio": self.min_ratio, "max_ratio": self.max_ratio, "rank": self.rank}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerBounds:
        """Inverse of :meth:`to_dict`."""
        low, high, rank = float(data["min_ratio"]), float(data["max_ratio"]), data["rank"]
        if not (0.0 <= low <= high <= 1.0) or math.isnan(low):
            raise ValueError(f"bounds [{low}, {high}] are not within [0, 1]")
        return cls(min_ratio=low, max_ratio=high, rank=None if rank is None else int(rank))


def bounds_to_json(bounds: Mapping[str, LayerBounds]) -> dict[str, Any]:
    """``{layer: bounds}`` as plain data for JSON."""
    return {name: b.to_dict() for name, b in bounds.items()}


def bounds_from_json(data: Mapping[str, Any]) -> dict[str, LayerBounds]:
    """Inverse of :func:`bounds_to_json`."""
    return {str(name): LayerBounds.from_dict(b) for name, b in data.items()}


#: The bounds of a layer the dictionary holds but the config list leaves alone.
LEAVE_ALONE = LayerBounds(min_ratio=1.0, max_ratio=1.0)
