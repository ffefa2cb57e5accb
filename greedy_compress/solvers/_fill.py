"""Spend the budget a selection leaves unused, one layer upgrade at a time.

Threshold searches move all layers together, so neighbouring thresholds can be far apart in
cost (on a flat dictionary, from no compression straight to a tiny model). Starting from a
selection within budget, this repeatedly moves one layer to a less compressed option that
still fits, taking the upgrade with the best predicted score gain per unit of cost (the
largest upgrade on ties, to close the gap quickly), until nothing fits.
"""

from __future__ import annotations

from collections.abc import Mapping

from greedy_compress.solvers._base import LayerOption

__all__ = ["fill_budget"]


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
        best: tuple[float, int, str, LayerOption] | None = None
        for name, opts in options.items():
            now = current[name]
            for option in opts:
                extra = option.cost - now.cost
                if extra <= 0 or extra > spare:
                    continue
                key = ((option.score - now.score) / extra, extra)
                if best is None or key > best[:2]:
                    best = (*key, name, option)
        if best is None:
            return current, steps
        _, extra, name, option = best
        current[name] = option
        spare -= extra
        steps += 1
