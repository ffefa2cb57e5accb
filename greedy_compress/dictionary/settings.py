"""The knobs shared by every entry point that builds a dictionary, declared once.

``compress``, ``build_eval_scores``, ``compress_pipeline``, the demo and the CLI take the same
settings, as keyword arguments or as one frozen :class:`BuildSettings`. Each field declares
its constraint next to its default, so validation, error messages and the tests that feed
every entry point bad values all come from one table.

Example:
    >>> settings = BuildSettings(cost="memory", candidates=4, input_shape=(1, 1, 8, 8))
    >>> settings.ratios
    (0.25, 0.5, 0.75)
    >>> settings.replace(owner="compress", multiplicity=8).multiplicity
    8
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import torch
from torch import nn

from greedy_compress._util.constraints import (
    BOOLEAN,
    POSITIVE_INT,
    Constraint,
    Interval,
    NoneOr,
    Options,
    bad_parameter,
    check,
)
from greedy_compress.dictionary.candidates import DEFAULT_NUM_CANDIDATES, make_candidates
from greedy_compress.model.cost import COST_METRICS, CostMetric
from greedy_compress.model.latency import DEFAULT_REPEATS, LatencyMeter, LatencyTimer, WallClock
from greedy_compress.model.profile import make_example_input

__all__ = ["BuildOptions", "BuildSettings"]


@dataclass(frozen=True)
class _CandidateGrid(Constraint):
    """A count >= 2 of evenly spaced ratios, or a list of ratios in (0, 1]."""

    description = "an int >= 2 or a non-empty list of ratios in (0, 1] (not only 1)"

    def accept(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 2:
                raise ValueError(value)
            return value
        try:
            return make_candidates(value, "BuildSettings")
        except ValueError as error:
            raise ValueError(value) from error

    def invalid(self) -> list[Any]:
        return [1, True, "10", [], [0.0], [1.5], [math.nan], [1.0]]


@dataclass(frozen=True)
class _Names(Constraint):
    """A sequence of module names (not one string)."""

    description = "a list of module names"

    def accept(self, value: Any) -> Any:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, set, frozenset)):
            raise TypeError(value)
        if not all(isinstance(name, str) for name in value):
            raise TypeError(value)
        return tuple(value)

    def invalid(self) -> list[Any]:
        return ["fc", 3, [1]]


@dataclass(frozen=True)
class _Shape(Constraint):
    """A non-empty sequence of positive ints."""

    description = "a non-empty sequence of positive ints (batch dim included)"

    def accept(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise TypeError(value)
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in value):
            raise ValueError(value)
        return tuple(value)

    def invalid(self) -> list[Any]:
        return [(), (1, 0, 8), (1, 1.5), "1,1,8,8"]


@dataclass(frozen=True)
class _ConfigList(Constraint):
    """None or a non-empty list of dicts (each entry is checked against the model, before
    any work, by :func:`~greedy_compress.dictionary.bounds.config_bounds`)."""

    description = "None or a non-empty list of dicts (NNI config_list entries)"

    def accept(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise TypeError(value)
        if not value or not all(isinstance(entry, Mapping) for entry in value):
            raise ValueError(value)
        return tuple(dict(entry) for entry in value)

    def invalid(self) -> list[Any]:
        return [{"op_types": ["default"]}, [], ["Conv2d"], "default"]


@dataclass(frozen=True)
class _Tensor(Constraint):
    description = "None or a torch.Tensor"

    def accept(self, value: Any) -> Any:
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(value)
        return value

    def invalid(self) -> list[Any]:
        return [[1.0, 2.0], "x"]


@dataclass(frozen=True)
class _Multiplicity(Constraint):
    """An int in [1, 65536] (far above any layer's rank: larger values are typos), or
    ``"auto"``."""

    description = "an int in [1, 65536] or 'auto'"
    _count = Interval(int, 1, 1 << 16)

    def accept(self, value: Any) -> Any:
        return value if value == "auto" and isinstance(value, str) else self._count.accept(value)

    def invalid(self) -> list[Any]:
        return [*self._count.invalid(), "fast"]


@dataclass(frozen=True)
class _Timer(Constraint):
    description = "None or a LatencyTimer (greedy_compress.model.latency)"

    def accept(self, value: Any) -> Any:
        if value is not None and not isinstance(value, LatencyTimer):
            raise TypeError(value)
        return value

    def invalid(self) -> list[Any]:
        return ["wall_clock", 3]


_RULE = "constraint"  # the dataclass field metadata key holding each setting's constraint


@dataclass(frozen=True)
class BuildSettings:
    """How a dictionary is built: what it costs, which candidates, which layers, how fast.

    Attributes:
        cost: ``"mac"``, ``"memory"`` (parameter count) or ``"latency"`` (measured on this
            machine, see ``docs/latency.md``); a ratio is the fraction kept.
        candidates: number of evenly spaced ratios (default 10) or an explicit list.
        multiplicity: ranks (and channel counts) are rounded down to a multiple of this;
            ``"auto"``: to the nearby count the backend runs fastest, measured.
        ignore: names of modules (and their children) never to compress.
        config_list: NNI-style entries choosing the layers to compress (``op_types`` with
            ``"default"``, ``op_names``, ``exclude``) and bounding (``min_ratio``,
            ``max_ratio``) or fixing (``ratio``) their kept ratios; later entries replace
            earlier ones on the layers both cover (see ``docs/config-list.md``). None:
            every layer the scheme can compress, unbounded.
        example_input: a tensor the model accepts; or give ``input_shape``.
        input_shape: shape of a zero input made like the model (dtype, device), batch
            dimension included.
        progress: show progress bars.
        fast: allow suffix-only evaluation (a ``BatchEvaluator`` and a traceable model);
            False always evaluates whole models.
        workers: candidates scored at once by the suffix-only path, in threads. None: one
            per torch thread on CPU (at most 4), 1 on a GPU.
        distributed: None: shard over a torch.distributed group of several ranks when one
            is initialized; True: require one; False: do all the work in this process.
        latency_batch_size: the batch size latency is measured at (None: the example
            input's); the example's rows are repeated to fill it.
        latency_threads: torch threads while latency is measured (None: as set now).
        latency_repeats: timed rounds per latency measurement (medians over them).
        latency_timer: the clock (None: :class:`~greedy_compress.model.latency.WallClock`;
            tests pass a deterministic one).
    """

    cost: CostMetric = field(default="mac", metadata={_RULE: Options(COST_METRICS)})
    candidates: int | tuple[float, ...] | None = field(
        default=None, metadata={_RULE: _CandidateGrid()}
    )
    multiplicity: int | Literal["auto"] = field(default=1, metadata={_RULE: _Multiplicity()})
    ignore: tuple[str, ...] = field(default=(), metadata={_RULE: _Names()})
    config_list: tuple[dict[str, Any], ...] | None = field(
        default=None, metadata={_RULE: _ConfigList()}
    )
    example_input: torch.Tensor | None = field(default=None, metadata={_RULE: _Tensor()})
    input_shape: tuple[int, ...] | None = field(default=None, metadata={_RULE: _Shape()})
    progress: bool = field(default=True, metadata={_RULE: BOOLEAN})
    fast: bool = field(default=True, metadata={_RULE: BOOLEAN})
    workers: int | None = field(default=None, metadata={_RULE: NoneOr(POSITIVE_INT)})
    distributed: bool | None = field(default=None, metadata={_RULE: NoneOr(BOOLEAN)})
    latency_batch_size: int | None = field(default=None, metadata={_RULE: NoneOr(POSITIVE_INT)})
    latency_threads: int | None = field(default=None, metadata={_RULE: NoneOr(POSITIVE_INT)})
    latency_repeats: int = field(
        default=DEFAULT_REPEATS, metadata={_RULE: Interval(int, 1, 100_000)}
    )
    latency_timer: LatencyTimer | None = field(default=None, metadata={_RULE: _Timer()})

    def __post_init__(self) -> None:
        for name, value in _checked(self._values(), "BuildSettings").items():
            object.__setattr__(self, name, value)

    def _values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def constraints(cls) -> dict[str, Constraint]:
        """Each setting's declared constraint, by name (the generated tests read these)."""
        return {f.name: f.metadata[_RULE] for f in dataclasses.fields(cls)}

    def replace(self, *, owner: str, **options: Any) -> BuildSettings:
        """A copy with ``options`` changed, each validated in ``owner``'s name.

        Raises:
            InvalidParameterError: an unknown option, or a value its constraint refuses.
        """
        known = self.constraints()
        for name in options:
            if name not in known:
                raise bad_parameter(
                    "settings", owner, "one of " + ", ".join(map(repr, known)), name
                )
        return dataclasses.replace(self, **_checked(options, owner))

    @classmethod
    def resolve(
        cls, settings: BuildSettings | None, options: dict[str, Any], owner: str
    ) -> BuildSettings:
        """``settings`` (default settings when None) with keyword ``options`` on top."""
        if settings is not None and not isinstance(settings, BuildSettings):
            raise bad_parameter("settings", owner, "None or a BuildSettings", settings)
        return (settings or cls()).replace(owner=owner, **options)

    @property
    def ratios(self) -> tuple[float, ...]:
        """The candidate ratios below 1, sorted (the grid every layer is scored on)."""
        grid = DEFAULT_NUM_CANDIDATES if self.candidates is None else self.candidates
        return make_candidates(grid, "BuildSettings")

    @property
    def measures_latency(self) -> bool:
        """Whether a build measures latencies (``cost="latency"`` or ``multiplicity="auto"``)."""
        return self.cost == "latency" or self.multiplicity == "auto"

    @property
    def rank_multiplicity(self) -> int:
        """The multiple ranks are rounded down to before any measurement (1 for "auto")."""
        return 1 if self.multiplicity == "auto" else self.multiplicity

    @property
    def latency_meter(self) -> LatencyMeter:
        """How latencies are measured with these settings."""
        return LatencyMeter(
            timer=self.latency_timer or WallClock(),
            repeats=self.latency_repeats,
            threads=self.latency_threads,
            batch_size=self.latency_batch_size,
        )

    def example_for(self, model: nn.Module, owner: str) -> torch.Tensor:
        """The example input: ``example_input``, or zeros of ``input_shape`` made like
        ``model``'s parameters (dtype and device).

        Raises:
            InvalidParameterError: neither or both of the two are given.
        """
        return make_example_input(self.example_input, self.input_shape, owner, like=model)


def _checked(values: dict[str, Any], owner: str) -> dict[str, Any]:
    constraints = BuildSettings.constraints()
    return {name: check(value, constraints[name], name, owner) for name, value in values.items()}


class BuildOptions(TypedDict, total=False):
    """The fields of :class:`BuildSettings` as keyword arguments (typed for ``**options``)."""

    cost: CostMetric
    candidates: int | Sequence[float] | None
    multiplicity: int | Literal["auto"]
    ignore: Sequence[str]
    config_list: Sequence[Mapping[str, Any]] | None
    example_input: torch.Tensor | None
    input_shape: Sequence[int] | None
    progress: bool
    fast: bool
    workers: int | None
    distributed: bool | None
    latency_batch_size: int | None
    latency_threads: int | None
    latency_repeats: int
    latency_timer: LatencyTimer | None
