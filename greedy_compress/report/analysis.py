"""What a saved dictionary says, as small plain records: the data behind every plot.

Nothing here evaluates a model: each function reads an :class:`EvalScores` (and selections
solved from it), so a notebook can call them on a dictionary it already paid for and print
or plot the result. :mod:`greedy_compress.report.plots` draws these records.

Predicted scores use the additive model: a selection's score is the baseline plus, for each
compressed layer, the change that layer caused when it was compressed alone,
``baseline + sum(single_layer_score - baseline)``. Layers interact, so this is an estimate;
pass measured points where you have them to see how far off it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from greedy_compress._util.constraints import bad_parameter, check_open_unit
from greedy_compress.dictionary import EvalScores
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.model.cost import CostMetric, check_metric
from greedy_compress.report.report import LayerReport, layer_rows
from greedy_compress.selection import (
    Selection,
    Solver,
    get_solver,
    predicted_score,
    reachable_ratio,
)

__all__ = [
    "MeasuredPoint",
    "SelectionData",
    "SensitivityCurve",
    "SensitivityData",
    "TradeoffData",
    "TradeoffPoint",
    "selection_data",
    "sensitivity",
    "tradeoff_curve",
]

DEFAULT_TRADEOFF_POINTS = 25


# Sensitivity


@dataclass(frozen=True)
class SensitivityCurve:
    """One layer's score against the fraction of its cost kept, the others left alone.

    Attributes:
        name: the layer's fully-qualified name.
        ratios: real kept ratios of the layer's cost, ascending, ending with 1.0 (untouched).
        scores: the score at each ratio (the baseline at 1.0); None where the evaluator
            returned no finite score.
        cost_share: the layer's share of the model's cost, in the dictionary's metric.
        mean_drop: mean of ``baseline - score`` over the scored candidates; the larger, the
            more sensitive the layer.
        failed: how many candidates have no score.
    """

    name: str
    ratios: tuple[float, ...]
    scores: tuple[float | None, ...]
    cost_share: float
    mean_drop: float
    failed: int


@dataclass(frozen=True)
class SensitivityData:
    """Every scored layer's :class:`SensitivityCurve`, in network order, and the baseline."""

    scheme: str
    cost_metric: CostMetric
    baseline: float
    curves: tuple[SensitivityCurve, ...]

    def most_sensitive(self, count: int | None = None) -> list[str]:
        """Layer names, most sensitive first (any failed candidate, then largest mean drop).

        Example:
            >>> len(sensitivity(scores).most_sensitive(2))
            2
        """
        ranked = sorted(self.curves, key=lambda c: (c.failed > 0, c.mean_drop), reverse=True)
        return [c.name for c in ranked[:count]]


def sensitivity(scores: EvalScores) -> SensitivityData:
    """Per-layer sensitivity curves of a (possibly partial) dictionary.

    Candidates that rounded to the same rank appear once. Ratios are the real kept ratios
    (after rank rounding) in the dictionary's cost metric.

    Example:
        >>> data = sensitivity(scores)
        >>> curve = data.curves[0]
        >>> curve.name, curve.ratios[-1], curve.scores[-1] == scores.baseline
        ('features.0', 1.0, True)
    """
    total = max(1, scores.model_cost.get(scores.cost_metric))
    curves = []
    for name in [n for n in scores.planned if n in scores.layers]:
        layer = scores.layers[name]
        by_rank = {e.rank: e for e in layer.entries}
        entries = sorted(by_rank.values(), key=lambda e: e.kept_ratio)
        scored = [e.score for e in entries if e.score is not None]
        drops = [scores.baseline - s for s in scored]
        curves.append(
            SensitivityCurve(
                name=name,
                ratios=(*(e.kept_ratio for e in entries), 1.0),
                scores=(*(e.score for e in entries), scores.baseline),
                cost_share=layer.info.cost.get(scores.cost_metric) / total,
                mean_drop=sum(drops) / len(drops) if drops else 0.0,
                failed=len(entries) - len(scored),
            )
        )
    return SensitivityData(
        scheme=scores.scheme,
        cost_metric=scores.cost_metric,
        baseline=scores.baseline,
        curves=tuple(curves),
    )


# One selection


@dataclass(frozen=True)
class SelectionData:
    """A selection laid out per layer in network order, with its predicted score.

    ``predicted_score`` uses the additive model (see
    :func:`~greedy_compress.selection.predicted_score`);
    ``measured_score`` is the real score where the caller measured one.
    """

    label: str
    solver: str
    cost_metric: CostMetric
    target: float
    predicted_ratio: float
    predicted_score: float | None
    baseline: float
    layers: tuple[LayerReport, ...]
    measured_score: float | None = None


def selection_data(
    scores: EvalScores,
    selection: Selection,
    *,
    label: str | None = None,
    measured_score: float | None = None,
) -> SelectionData:
    """Per-layer chosen ratio and cost share of ``selection``, in network order.

    Args:
        scores: the dictionary the selection was solved from.
        selection: the selection.
        label: a name for legends (default ``"<solver> @ <target>"``).
        measured_score: the compressed model's real score, if you evaluated it.

    Raises:
        ScoresMismatchError: the selection does not come from this dictionary.

    Example:
        >>> data = selection_data(scores, select(scores, target=0.5))
        >>> [row.name for row in data.layers][:2]
        ['features.0', 'features.3']
    """
    return SelectionData(
        label=label or f"{selection.solver} @ {selection.target:g}",
        solver=selection.solver,
        cost_metric=selection.cost_metric,
        target=selection.target,
        predicted_ratio=selection.predicted_ratio,
        predicted_score=predicted_score(scores, selection),
        baseline=scores.baseline,
        layers=layer_rows(scores, selection),
        measured_score=measured_score,
    )


# The trade-off curve


@dataclass(frozen=True)
class TradeoffPoint:
    """The solver's answer for one target: kept cost ratio and additive predicted score."""

    target: float
    predicted_ratio: float
    predicted_score: float


@dataclass(frozen=True)
class MeasuredPoint:
    """A compressed model you really evaluated: its kept cost ratio and score."""

    ratio: float
    score: float
    label: str = ""


@dataclass(frozen=True)
class TradeoffData:
    """Predicted score against kept cost ratio over many targets, plus measured points.

    Attributes:
        solver: name of the solver used.
        cost_metric: the cost metric of the ratios.
        baseline: the uncompressed model's score.
        min_ratio: the smallest kept ratio the dictionary can reach.
        points: one per reachable target, in the order given.
        measured: points the caller measured.
        unreachable: targets below ``min_ratio``, left out of ``points``.
        lowest_score: the lowest score anyone measured (a single-layer score in the
            dictionary, or a measured point). The additive model can predict far below it,
            even below any possible score, so plots clip the axis there.
    """

    solver: str
    cost_metric: CostMetric
    baseline: float
    min_ratio: float
    points: tuple[TradeoffPoint, ...]
    measured: tuple[MeasuredPoint, ...] = ()
    unreachable: tuple[float, ...] = field(default_factory=tuple)
    lowest_score: float = -math.inf


def _measured(points: Iterable[MeasuredPoint | tuple[float, float]]) -> tuple[MeasuredPoint, ...]:
    result = []
    for point in points:
        if isinstance(point, MeasuredPoint):
            result.append(point)
        else:
            ratio, score = point
            result.append(MeasuredPoint(float(ratio), float(score)))
    return tuple(result)


def tradeoff_curve(
    scores: EvalScores,
    *,
    targets: Sequence[float] | None = None,
    solver: str | Solver = "greedy",
    cost: CostMetric | None = None,
    measured: Iterable[MeasuredPoint | tuple[float, float]] = (),
) -> TradeoffData:
    """Re-solve the dictionary for many targets; nothing is evaluated.

    Args:
        scores: a complete dictionary.
        targets: kept-cost targets in (0, 1); default 25 evenly spaced from the smallest
            reachable ratio to 0.95. Targets below the reachable ratio are listed in
            ``unreachable`` instead of failing the whole curve.
        solver: a solver name or instance.
        cost: cost metric (default: the dictionary's).
        measured: ``MeasuredPoint`` or ``(ratio, score)`` pairs from real evaluations.

    Returns:
        :class:`TradeoffData`; predicted scores use the additive model (see
        :func:`~greedy_compress.selection.predicted_score`).

    Example:
        >>> curve = tradeoff_curve(scores, targets=[0.3, 0.5, 0.7])
        >>> [round(p.predicted_ratio, 2) for p in curve.points]
        [0.3, 0.5, 0.7]
    """
    owner = "tradeoff_curve"
    solver = get_solver(solver, owner)
    metric = scores.cost_metric if cost is None else check_metric(cost, owner)
    low = reachable_ratio(scores, cost=metric)
    if targets is None:
        start = min(max(low, 0.01), 0.95)
        step = (0.95 - start) / (DEFAULT_TRADEOFF_POINTS - 1)
        targets = [start + i * step for i in range(DEFAULT_TRADEOFF_POINTS)]
    else:
        if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence) or not targets:
            raise bad_parameter("targets", owner, "a non-empty sequence of floats", targets)
        targets = [check_open_unit(t, "targets", owner) for t in targets]
    points, unreachable = [], []
    for target in targets:
        try:
            selection = solver.solve(scores, target=target, cost=metric)
        except TargetUnreachableError:
            unreachable.append(target)
            continue
        score = predicted_score(scores, selection)
        assert score is not None  # a solver's choices always carry their scores
        points.append(TradeoffPoint(target, selection.predicted_ratio, score))
    measured = _measured(measured)
    seen = [
        scores.baseline,
        *(m.score for m in measured),
        *(e.score for layer in scores.layers.values() for e in layer.entries),
    ]
    return TradeoffData(
        solver=solver.name,
        cost_metric=metric,
        baseline=scores.baseline,
        min_ratio=low,
        points=tuple(points),
        measured=measured,
        unreachable=tuple(unreachable),
        lowest_score=min(s for s in seen if s is not None and math.isfinite(s)),
    )
