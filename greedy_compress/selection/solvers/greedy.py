"""AIMET's greedy ratio selection: binary-search a score threshold.

For a threshold t, each layer takes its cheapest option whose score reaches t (leaving the
layer alone always qualifies). Lowering t can only make more options eligible, so the model
cost falls monotonically as t falls; the search finds the highest t whose cost meets the
budget. The thresholds worth trying are exactly the scores in the dictionary, so the binary
search runs over them and is exact, not a bisection to a tolerance.

Neighbouring thresholds can be far apart in cost (a flat dictionary jumps from no compression
to a tiny model), so by default the unused budget is then filled layer by layer by the
exact-budget step every solver shares (``Solver.solve``); ``GreedySolver(fill_budget=False)``
is AIMET's plain method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from greedy_compress.selection.options import LayerOption
from greedy_compress.selection.solvers.base import Solver

__all__ = ["GreedySolver", "pick_at_threshold"]


def pick_at_threshold(
    options: Mapping[str, list[LayerOption]], threshold: float
) -> dict[str, LayerOption]:
    """Each layer's cheapest option whose score is at least ``threshold`` (leaving a layer
    alone always qualifies; a layer a config list forces to be compressed falls back to
    its least compressed option).

    Example:
        >>> opts = {"a": [LayerOption(0.5, 2, 5, 0.9), LayerOption(1.0, None, 10, 1.0)]}
        >>> pick_at_threshold(opts, 0.95)["a"].rank is None
        True
    """
    return {
        name: next((o for o in opts if o.rank is None or o.score >= threshold), opts[-1])
        for name, opts in options.items()
    }


class GreedySolver(Solver):
    """Highest score threshold whose per-layer cheapest eligible options meet the budget.

    Args:
        fill_budget: afterwards, spend the budget the threshold left unused so the cost lands
            within 1% of the target where the candidates allow (default True).
    """

    name = "greedy"

    def __init__(self, *, fill_budget: bool = True) -> None:
        self.fill_budget = fill_budget

    def choose(
        self, options: Mapping[str, list[LayerOption]], *, fixed_cost: int, budget: float
    ) -> tuple[dict[str, LayerOption], dict[str, Any]]:
        def cost_at(threshold: float) -> int:
            picked = pick_at_threshold(options, threshold)
            return fixed_cost + sum(o.cost for o in picked.values())

        # Candidate thresholds from strictest to loosest; the loosest (every option eligible)
        # meets the budget, which Solver.solve checked before calling us.
        thresholds = sorted({o.score for opts in options.values() for o in opts}, reverse=True)
        low, high = 0, len(thresholds) - 1  # invariant: thresholds[high] meets the budget
        while low < high:
            middle = (low + high) // 2
            if cost_at(thresholds[middle]) <= budget:
                high = middle
            else:
                low = middle + 1
        threshold = thresholds[high]
        chosen = pick_at_threshold(options, threshold)
        details: dict[str, Any] = {"threshold": threshold, "threshold_cost": cost_at(threshold)}
        return chosen, details
