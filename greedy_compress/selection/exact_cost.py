"""Meet a target with a scheme whose layers interact (pruning), using its exact cost.

A pruning dictionary's costs are exact one layer at a time, but a layer whose input and
output channels are both pruned keeps the product of the two fractions, so the solver's
additive prediction is optimistic. When the scheme can price a whole selection exactly, the
target asked of the solver is lowered (by bisection) until the exact cost meets the real one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from greedy_compress.dictionary.scores import EvalScores
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.schemes._base import Scheme
from greedy_compress.selection.solvers import Selection, Solver

__all__ = ["solve_exact"]


def solve_exact(
    scores: EvalScores,
    scheme: Scheme,
    solver: Solver,
    *,
    target: float,
    steps: int = 12,
    **solve_options: Any,
) -> Selection:
    """``solver.solve(scores, target=target)``, corrected with the scheme's exact cost.

    ``solve_options`` (e.g. ``monotone=True``) are passed to every ``solver.solve`` call.

    Schemes without ``selection_cost`` (the SVD schemes, whose layers are independent) get
    the solver's selection unchanged. Otherwise the returned selection's ``predicted_ratio``
    is exact and at most ``target``; ``details["asked_target"]`` records what the solver was
    asked for.

    Example:
        >>> selection = solve_exact(scores, scheme, GreedySolver(), target=0.5)  # doctest: +SKIP
    """
    first = solver.solve(scores, target=target, **solve_options)
    exact_cost = getattr(scheme, "selection_cost", None)
    if exact_cost is None:
        return first
    total = scores.model_cost.get(first.metric)

    def exact(selection: Selection) -> float:
        ranks = {name: choice.rank for name, choice in selection.choices.items()}
        return exact_cost(ranks).get(selection.metric) / total

    best, best_ratio, asked = first, exact(first), target
    low, high = 0.0, target
    for _ in range(steps if best_ratio > target else 0):
        asked = (low + high) / 2
        try:
            candidate = solver.solve(scores, target=asked, **solve_options)
        except TargetUnreachableError:
            low = asked
            continue
        ratio = exact(candidate)
        if ratio <= target:
            best, best_ratio, low = candidate, ratio, asked
        else:
            high = asked
    if best_ratio > target:
        raise TargetUnreachableError(
            f"Target {target:g} is out of reach for {scheme.name}: pruned layers compound, and "
            f"the smallest selection found keeps {best_ratio:.4f} of the {first.metric} cost."
        )
    details = {**best.details, "asked_target": asked if best is not first else target}
    return dataclasses.replace(best, target=target, predicted_ratio=best_ratio, details=details)
