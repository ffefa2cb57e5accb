"""The combined model's latency, measured end to end, and the repair of a selection that
misses its latency target.

Solvers price a selection's latency as the sum of per-layer latencies, each measured with
only that layer compressed. The combined model can differ: layers interact through caches,
memory traffic and the rest of the network. So the compressed model is built and timed next
to the original, round by round (:meth:`~greedy_compress.model.latency.LatencyMeter.compare`),
which gives the measured ratio and its spread. When the ratio exceeds the target by more
than its spread, the solver is asked again for less: the selection's predicted ratio is
scaled by ``target / measured`` (what the machine delivered against what the dictionary
predicted), and scaled again while the solver answers the same choices; the new selection
is built and measured, up to ``max_rounds`` times. The first selection that
meets the target is kept (the largest asked target, so the best predicted score); if none
does, the one measured fastest, and the check says so. Like the exact-cost step for
pruning, this is a correction on top of the additive solve, here with a measurement in
place of an exact price.

Example:
    >>> from greedy_compress.model.latency import LatencyMeter, MacTimer
    >>> meter = LatencyMeter(timer=MacTimer(), repeats=3)
    >>> small = apply_selection(model, select(scores, target=0.5))
    >>> check = check_latency(model, small, example=example_input, meter=meter)
    >>> 0 < check.ratio < 1, check.met is None
    (True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter, check_positive_int
from greedy_compress.dictionary import EvalScores
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.model.latency import LatencyMeter, PairedLatency
from greedy_compress.schemes import Scheme, build_compressed
from greedy_compress.selection.exact_cost import reachable_ratio
from greedy_compress.selection.selection import Selection, layer_schemes

__all__ = ["LatencyCheck", "LatencyRound", "asked_target", "check_latency", "meet_latency"]

DEFAULT_ROUNDS = 4
_MAX_SOLVES = 32  # solver calls per repair round, looking for a cheaper selection
_ASKED = "latency_asked_target"  # the selection's details key: the target the solver got


@dataclass(frozen=True)
class LatencyRound:
    """One selection built and timed: the target its solver was asked for, the dictionary's
    additive latency prediction, the measurement, and whether it met the target."""

    asked_target: float
    predicted_ratio: float
    measured: PairedLatency
    met: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {**dataclasses.asdict(self), "measured": self.measured.to_dict()}


@dataclass(frozen=True)
class LatencyCheck:
    """The compressed model's latency against the original's, measured on this machine.

    Attributes:
        measured: the paired measurement (``ratio``, ``spread``, medians in ns).
        target: the latency target; None when the selection targets another metric (the
            latency was measured on request).
        predicted_ratio: the dictionary's additive prediction (latency dictionaries only).
        settings: how it was measured (device, threads, batch size, torch, timer, rounds).
        rounds: the selections built and timed to meet a latency target, in order.
    """

    measured: PairedLatency
    target: float | None = None
    predicted_ratio: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    rounds: list[LatencyRound] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """The measured latency ratio, compressed over original (median of paired rounds)."""
        return self.measured.ratio

    @property
    def spread(self) -> float:
        """Half the interquartile range of the paired ratios."""
        return self.measured.spread

    @property
    def met(self) -> bool | None:
        """Whether the ratio is at or below the target within its spread (None: no target)."""
        return None if self.target is None else self.ratio <= self.target + self.spread

    @property
    def repaired(self) -> bool:
        """Whether the solver was asked for less than the target to meet it."""
        return len(self.rounds) > 1

    def message(self) -> str:
        """The outcome in a few words."""
        if self.target is None:
            return "measured on request"
        if self.ratio <= self.target:
            outcome = "met"
        elif self.met:
            outcome = "met within the measured spread"
        else:
            outcome = "missed"
        if self.repaired:
            last = self.rounds[-1].asked_target
            outcome += f" after {len(self.rounds) - 1} repair round(s) (asked {last:.4f})"
        return f"target {self.target:g} {outcome}"

    def to_text(self) -> str:
        """Lines for the report: the measurement, then one line per repair round."""
        settings = self.settings
        predicted = (
            "" if self.predicted_ratio is None else f"; predicted {self.predicted_ratio:.4f}"
        )
        lines = [
            f"latency        x{self.ratio:.4f} ± {self.spread:.4f} of the original "
            f"({self.measured.ns:,} vs {self.measured.reference_ns:,} ns, median of "
            f"{self.measured.repeats} paired rounds at batch {settings.get('batch_size')}, "
            f"threads {settings.get('threads')}){predicted}; {self.message()}"
        ]
        if self.repaired:
            for step in self.rounds:
                mark = "met " if step.met else "    "
                lines.append(
                    f"  {mark} asked {step.asked_target:.4f}  predicted "
                    f"{step.predicted_ratio:.4f}  measured x{step.measured.ratio:.4f} ± "
                    f"{step.measured.spread:.4f}"
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON (with the derived ``ratio``, ``spread`` and ``met``)."""
        return {
            "ratio": self.ratio,
            "spread": self.spread,
            "met": self.met,
            "message": self.message(),
            "measured": self.measured.to_dict(),
            "target": self.target,
            "predicted_ratio": self.predicted_ratio,
            "settings": dict(self.settings),
            "rounds": [step.to_dict() for step in self.rounds],
        }


def asked_target(selection: Selection) -> float:
    """The target the selection's solver was asked for: below ``selection.target`` after a
    latency repair, which budgets that depend on the selection (``max_drop``) must keep."""
    return float(selection.details.get(_ASKED, selection.target))


def check_latency(
    model: nn.Module,
    compressed: nn.Module,
    *,
    example: torch.Tensor,
    meter: LatencyMeter,
    target: float | None = None,
    predicted_ratio: float | None = None,
    rounds: list[LatencyRound] | None = None,
) -> LatencyCheck:
    """Time ``compressed`` next to ``model`` (paired rounds on ``meter.inputs(example)``)."""
    return LatencyCheck(
        measured=meter.compare(compressed, model, example),
        target=target,
        predicted_ratio=predicted_ratio,
        settings=meter.describe(example),
        rounds=list(rounds or []),
    )


def _cheaper(
    scores: EvalScores,
    current: Selection,
    asked: float,
    step: float,
    solve: Callable[[float], Selection],
) -> tuple[Selection | None, float]:
    """The next selection to time: the solver asked for ``step`` (target / measured, below 1)
    times what the current selection was predicted to keep, and again for less (solving is
    cheap) while it answers the same choices, down to the reachable ratio."""
    floor = reachable_ratio(scores, cost="latency") * (1 + 1e-9)
    lower = min(asked, current.predicted_ratio) * step
    for _ in range(_MAX_SOLVES):
        lower = max(lower, floor)
        if lower >= asked:
            break
        try:
            found = solve(lower)
        except TargetUnreachableError:
            break
        if found.choices != current.choices:
            return found, lower
        if lower <= floor:
            break
        lower *= step
    return None, asked


def meet_latency(
    model: nn.Module,
    scores: EvalScores,
    selection: Selection,
    *,
    solve: Callable[[float], Selection],
    meter: LatencyMeter,
    example: torch.Tensor,
    scheme: str | Scheme | None = None,
    max_rounds: int = DEFAULT_ROUNDS,
) -> tuple[Selection, LatencyCheck]:
    """Measure the combined model of a latency selection; re-solve for less while it misses.

    Args:
        model: the original model.
        scores: the latency dictionary the selection was solved on.
        selection: the solver's selection for the latency target.
        solve: ``solve(asked_target) -> Selection``, the same solver and options.
        meter: how to time (the dictionary's batch size and threads, for a fair check).
        example: an input the model accepts.
        scheme: overrides the scheme named in the selection (unregistered or configured).
        max_rounds: most selections to build and time.

    Returns:
        The selection kept (its ``target`` is the asked one's, ``details`` record what the
        solver was asked for) and the :class:`LatencyCheck` with every round.

    Example:
        >>> from greedy_compress.model.latency import LatencyMeter, MacTimer
        >>> lat = build_eval_scores(model, evaluator, cost="latency", candidates=3,
        ...     input_shape=(1, 1, 8, 8), progress=False, latency_timer=MacTimer())
        >>> meter = LatencyMeter(timer=MacTimer(), repeats=3)
        >>> kept, check = meet_latency(model, lat, select(lat, target=0.6),
        ...     solve=lambda asked: select(lat, target=asked), meter=meter,
        ...     example=example_input)
        >>> check.met, len(check.rounds)
        (True, 1)
    """
    owner = "meet_latency"
    if selection.cost_metric != "latency":
        raise bad_parameter("selection", owner, "a selection for cost='latency'", selection)
    check_positive_int(max_rounds, "max_rounds", owner)
    target = selection.target
    multiplicity = int(selection.details.get("multiplicity", 1))  # Tucker's core ranks

    def schemes_of(current: Selection) -> dict[str, Scheme]:
        return layer_schemes(
            current.choices,
            current.scheme,
            scheme=scheme,
            owner=owner,
            multiplicity=multiplicity,
        )

    schemes_of(selection)  # fail fast

    def measure(current: Selection) -> PairedLatency:
        chosen = schemes_of(current)
        built = build_compressed(
            model,
            {name: (chosen[name], c.rank) for name, c in current.choices.items()},
            example_input=example,
            details=current.details,
        )
        return meter.compare(built, model, example)

    rounds: list[LatencyRound] = []
    tried: list[Selection] = []
    current, asked = selection, target
    for _ in range(max_rounds):
        measured = measure(current)
        met = measured.ratio <= target + measured.spread
        rounds.append(LatencyRound(asked, current.predicted_ratio, measured, met))
        tried.append(current)
        if met:
            break
        cheaper, lower = _cheaper(scores, current, asked, target / measured.ratio, solve)
        if cheaper is None:
            break  # nothing cheaper to ask for: measuring the same model again tells nothing
        current, asked = cheaper, lower
    index = next(
        (i for i, r in enumerate(rounds) if r.met),
        min(range(len(rounds)), key=lambda i: rounds[i].measured.ratio),
    )
    kept, kept_round = tried[index], rounds[index]
    details = dict(kept.details)
    if len(rounds) > 1:
        details.update({_ASKED: kept_round.asked_target, "latency_repaired": index > 0})
    result = dataclasses.replace(kept, target=target, details=details)
    check = LatencyCheck(
        measured=kept_round.measured,
        target=target,
        predicted_ratio=kept.predicted_ratio,
        settings=meter.describe(example),
        rounds=rounds,
    )
    return result, check
