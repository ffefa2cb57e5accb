"""Spend the budget a selection leaves unused, one layer upgrade at a time.

Threshold searches move all layers together, so neighbouring thresholds can be far apart in
cost (on a flat dictionary, from no compression straight to a tiny model). Starting from a
selection within budget, this repeatedly moves one layer to a less compressed option that
still fits, taking the upgrade with the best predicted score gain per unit of cost, until
nothing fits. Seen from the other side, the compressions that remain are those with the
least predicted score loss per unit of cost saved, which is the order the issue asks for.

Ties are common (accuracies on a small eval set take few values; a flat dictionary gives
zero gain everywhere). They go to the layer compressed hardest (lowest kept ratio), then to
the smaller upgrade: spreading compression evenly is the safer guess when the dictionary
cannot tell layers apart, because layers that each survive hard compression alone rarely
survive it all at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from greedy_compress.selection.solvers._base import LayerOption

__all__ = ["fill_budget", "finite_score"]

# Stands in for a failed (-inf) score so that differences stay finite and ordered.
_FAILED = -1e18


def finite_score(option: LayerOption) -> float:
    """The option's score, with a failed (-inf) score mapped to a very low finite number."""
    return option.score if math.isfinite(option.score) else _FAILED


def fill_budget(
    options: Mapping[str, list[LayerOption]],
    chosen: Mapping[str, LayerOption],
    *,
    fixed_cost: int,
    budget: float,
) -> tuple[dict[str, LayerOption], int]:
    """Upgrade layers of ``chosen`` while the total cost stays within ``budget``.

    Returns the new choice per layer and the number of upgrades made.

    Example:
        >>> opts = {"a": [LayerOption(0.2, 1, 2, 0.9), LayerOption(0.6, 3, 6, 0.9),
        ...               LayerOption(1.0, None, 10, 0.9)]}
        >>> fill_budget(opts, {"a": opts["a"][0]}, fixed_cost=0, budget=7)[0]["a"].rank
        3
    """
    current = dict(chosen)
    spare = budget - fixed_cost - sum(o.cost for o in current.values())
    steps = 0
    while True:
        best: tuple[tuple[float, float, int], str, LayerOption] | None = None
        for name, opts in options.items():
            now = current[name]
            for option in opts:
                extra = option.cost - now.cost
                if extra <= 0 or extra > spare:
                    continue
                gain = (finite_score(option) - finite_score(now)) / extra
                key = (gain, -now.ratio, -extra)
                if best is None or key > best[0]:
                    best = (key, name, option)
        if best is None:
            return current, steps
        _, name, option = best
        spare -= option.cost - current[name].cost
        current[name] = option
        steps += 1
