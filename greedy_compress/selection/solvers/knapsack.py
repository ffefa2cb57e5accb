"""Exact ratio selection as a multiple-choice knapsack.

Pick one option per layer so the model's cost stays within the budget and the predicted
score, the sum over layers of the option's score change from the baseline, is as high as
possible. Unlike the greedy threshold, which moves all layers together, this trades a small
loss in one layer against a large saving in another.

The solver runs a dynamic programme over *Pareto frontiers*: after each layer it keeps only
the partial choices that no other partial choice beats on both cost and score. Costs are the
integer MACs (or parameters), so nothing is discretized and the answer is exact. Ties on
score go to the more expensive (less compressed) choice, which uses the budget the target
allows rather than compressing further for no predicted gain.

A frontier can in principle grow with every layer. If one exceeds ``max_states``, the solver
starts again with costs rounded *up* to a grid of ``resolution`` steps over the budget: the
rounded costs never let the true cost exceed the budget, and a second pass with costs rounded
*down* (an optimistic relaxation) bounds the best possible score, so ``details`` states how far
from optimal the answer can be (``gap`` 0 proves it optimal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from greedy_compress._util.constraints import check_positive_int
from greedy_compress.selection.options import LayerOption
from greedy_compress.selection.solvers.base import Solver

__all__ = ["KnapsackSolver", "best_choice"]


class _TooManyStates(Exception):
    """Internal: a frontier outgrew ``max_states``; the caller switches to rounded costs."""


def _frontier(
    costs: Sequence[np.ndarray],
    gains: Sequence[np.ndarray],
    capacity: int,
    max_states: int | None,
) -> tuple[int, float, list[int]] | None:
    """Best (cost, gain, option index per layer) within ``capacity``; None if nothing fits.

    ``costs[i][k]`` and ``gains[i][k]`` describe option k of layer i (costs are integers).
    """
    # The least the remaining layers can cost, so hopeless partial choices are dropped early.
    tail_min = np.zeros(len(costs) + 1, dtype=np.int64)
    for i in range(len(costs) - 1, -1, -1):
        tail_min[i] = tail_min[i + 1] + int(costs[i].min())
    state_cost = np.zeros(1, dtype=np.int64)
    state_gain = np.zeros(1, dtype=np.float64)
    parents: list[tuple[np.ndarray, np.ndarray]] = []
    for i, (layer_cost, layer_gain) in enumerate(zip(costs, gains, strict=True)):
        cost = (state_cost[:, None] + layer_cost[None, :]).ravel()
        gain = (state_gain[:, None] + layer_gain[None, :]).ravel()
        parent = np.repeat(np.arange(len(state_cost)), len(layer_cost))
        option = np.tile(np.arange(len(layer_cost)), len(state_cost))
        fits = cost + tail_min[i + 1] <= capacity
        cost, gain, parent, option = cost[fits], gain[fits], parent[fits], option[fits]
        if len(cost) == 0:
            return None
        # Sort by cost, best gain first within a cost; keep a state only if its gain is at
        # least every cheaper state's (equal gains at higher cost stay: ties prefer cost).
        order = np.lexsort((-gain, cost))
        cost, gain, parent, option = cost[order], gain[order], parent[order], option[order]
        first_of_cost = np.ones(len(cost), dtype=bool)
        first_of_cost[1:] = cost[1:] != cost[:-1]
        best_before = np.maximum.accumulate(gain)
        keep = first_of_cost.copy()
        keep[1:] &= gain[1:] >= best_before[:-1]
        state_cost, state_gain = cost[keep], gain[keep]
        parents.append((parent[keep], option[keep]))
        if max_states is not None and len(state_cost) > max_states:
            raise _TooManyStates
    # Gains are non-decreasing along the frontier, so the last state is the best, and among
    # equally good ones the most expensive.
    index = len(state_cost) - 1
    picks = [0] * len(costs)
    for i in range(len(costs) - 1, -1, -1):
        parent, option = parents[i]
        picks[i] = int(option[index])
        index = int(parent[index])
    return int(state_cost[-1]), float(state_gain[-1]), picks


def best_choice(
    options: Mapping[str, list[LayerOption]],
    *,
    baseline: float,
    capacity: int,
) -> dict[str, LayerOption] | None:
    """The exact best option per layer within ``capacity`` (no rounding), or None if none fits.

    The predicted score of a choice is the sum of ``option.score - baseline`` over layers.

    Example:
        >>> opts = {"a": [LayerOption(0.2, 1, 2, 0.5), LayerOption(1.0, None, 10, 1.0)],
        ...         "b": [LayerOption(0.2, 1, 2, 0.9), LayerOption(1.0, None, 10, 1.0)]}
        >>> {n: o.rank for n, o in best_choice(opts, baseline=1.0, capacity=12).items()}
        {'a': None, 'b': 1}
    """
    names = list(options)
    costs = [np.array([o.cost for o in options[n]], dtype=np.int64) for n in names]
    gains = [np.array([o.score - baseline for o in options[n]], dtype=np.float64) for n in names]
    found = _frontier(costs, gains, capacity, None)
    if found is None:
        return None
    return {name: options[name][k] for name, k in zip(names, found[2], strict=True)}


class KnapsackSolver(Solver):
    """Maximize the summed per-layer score changes within the cost budget, exactly.

    Args:
        max_states: largest Pareto frontier kept before switching to rounded costs.
        resolution: number of cost steps the budget is split into when rounding.
        fill_budget: afterwards bring the cost to within 1% of the budget (the shared
            exact-budget step, default True). The optimum can leave budget unused when
            compressing more is predicted to score higher (noise); the step then spends it,
            which may lower the predicted score. False returns the raw optimum.

    Example:
        >>> selection = KnapsackSolver().solve(scores, target=0.5)
        >>> selection.details["exact"]
        True
    """

    name = "knapsack"

    def __init__(
        self, *, max_states: int = 200_000, resolution: int = 20_000, fill_budget: bool = True
    ) -> None:
        self.max_states = check_positive_int(max_states, "max_states", "KnapsackSolver")
        self.resolution = check_positive_int(resolution, "resolution", "KnapsackSolver")
        self.fill_budget = fill_budget

    def choose(
        self, options: Mapping[str, list[LayerOption]], *, fixed_cost: int, budget: float
    ) -> tuple[dict[str, LayerOption], dict[str, Any]]:
        names = list(options)
        # "Leave alone" scores the baseline, so its gain is 0 and gains are score changes.
        # A per-layer constant does not change the optimum; it makes the gain readable.
        baseline = {n: next((o.score for o in options[n] if o.rank is None), 0.0) for n in names}
        costs = [np.array([o.cost for o in options[n]], dtype=np.int64) for n in names]
        gains = [np.array([o.score - baseline[n] for o in options[n]]) for n in names]
        capacity = math.floor(budget - fixed_cost)
        details: dict[str, Any] = {}
        try:
            found = _frontier(costs, gains, capacity, self.max_states)
            details.update(exact=True, resolution=None)
        except _TooManyStates:
            found, details = self._rounded(costs, gains, capacity)
        # Solver.solve checked the cheapest options fit, so the exact pass always finds one;
        # the rounded pass can miss by rounding and then keeps the cheapest options.
        if found is None:
            picks = [int(np.argmin(c)) for c in costs]
            gain = float(sum(g[k] for g, k in zip(gains, picks, strict=True)))
            details["fallback"] = "cheapest options (rounded costs left no room)"
        else:
            _, gain, picks = found
        details["predicted_gain"] = gain if math.isfinite(gain) else None
        return {name: options[name][k] for name, k in zip(names, picks, strict=True)}, details

    def _rounded(
        self, costs: list[np.ndarray], gains: list[np.ndarray], capacity: int
    ) -> tuple[tuple[int, float, list[int]] | None, dict[str, Any]]:
        step = max(1, math.ceil(capacity / self.resolution))
        units = capacity // step
        # Rounding costs up: sum(ceil(c/step)) <= units implies sum(c) <= units*step <= capacity.
        found = _frontier([-(-c // step) for c in costs], gains, units, None)
        # Rounding down relaxes the problem (every truly feasible choice stays feasible), so
        # its optimum bounds the true optimum from above.
        relaxed = _frontier([c // step for c in costs], gains, units, None)
        upper = None if relaxed is None or not math.isfinite(relaxed[1]) else relaxed[1]
        gain = None if found is None or not math.isfinite(found[1]) else found[1]
        gap = None if upper is None or gain is None else upper - gain
        return found, {
            "exact": gap is not None and gap <= 0.0,
            "resolution": self.resolution,
            "upper_bound": upper,
            "gap": gap,
        }
