"""The exact-budget post-step every solver's selection goes through (see ``Solver.solve``).

A solver picks options per layer within the budget; this makes the total land within
``tolerance`` of the budget (1% by default) whenever the candidates allow it:

1. :func:`fill_budget` spends the unused budget one upgrade at a time, best predicted score
   gain per unit of cost first.
2. If that still leaves a gap (every single upgrade is too big for what is left), pairs of
   moves are tried: one layer up, another down (or both up), landing closer to the budget;
   among pairs that land within tolerance, the one losing the least predicted score wins.
3. If pairs cannot close it, a dynamic program over the layers' cost sums (bucketed finely
   enough that rounding cannot cost the tolerance) finds the combination within tolerance
   that changes the fewest layers of the choice, best predicted score on ties.

Steps 2 and 3 may lower the predicted score (a layer compressed further to make room); they
are kept only when that costs at most ``max_score_loss`` (default 1% of the baseline score,
about the noise of a small eval set). A smaller model with the same predicted score is better
than one nearer the target with a collapsed prediction, so otherwise the fill's result stays
and the note says what landing closer would have cost.

It never exceeds the budget. When nothing lands within tolerance, the result says so, with
the gap and the smallest cost step any layer's candidates offer.

The fill (step 1) works from a selection within budget: it repeatedly moves one layer to a
less compressed option that still fits (in a mixed dictionary, a move to another scheme's
option only when that does not lower the predicted score: costlier is not better across
schemes), taking the upgrade with the best predicted score
gain per unit of cost, until nothing fits. Seen from the other side, the compressions that
remain are those with the least predicted score loss per unit of cost saved. Ties are
common (accuracies on a small eval set take few values; a flat dictionary gives zero gain
everywhere). They go to the layer compressed hardest (lowest kept ratio), then to the
smaller upgrade: spreading compression evenly is the safer guess when the dictionary cannot
tell layers apart, because layers that each survive hard compression alone rarely survive
it all at once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from greedy_compress.selection.options import LayerOption

__all__ = ["DEFAULT_TOLERANCE", "fill_budget", "finite_score", "meet_budget"]

DEFAULT_TOLERANCE = 0.01
_MAX_PAIR_ROUNDS = 50

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
                change = finite_score(option) - finite_score(now)
                if change < 0 and option.scheme != now.scheme:
                    continue  # another scheme's costlier option is no upgrade if it scores worse
                gain = change / extra
                key = (gain, -now.kept_ratio, -extra)
                if best is None or key > best[0]:
                    best = (key, name, option)
        if best is None:
            return current, steps
        _, name, option = best
        spare -= option.cost - current[name].cost
        current[name] = option
        steps += 1


def _pair_move(
    options: Mapping[str, list[LayerOption]],
    current: Mapping[str, LayerOption],
    *,
    spare: float,
    slack: float,
) -> tuple[str, LayerOption, str, LayerOption] | None:
    """The best two-layer change that uses more of ``spare`` without exceeding it.

    Preference: landing within ``slack`` of the budget (then least predicted score lost),
    otherwise the change that uses the most budget.
    """
    moves = [
        (
            name,
            option,
            option.cost - current[name].cost,
            finite_score(option) - finite_score(current[name]),
        )
        for name, opts in options.items()
        for option in opts
        if option != current[name]
    ]
    best: tuple[tuple[bool, float], tuple[str, LayerOption, str, LayerOption]] | None = None
    for i, (name_a, option_a, extra_a, gain_a) in enumerate(moves):
        for name_b, option_b, extra_b, gain_b in moves[i + 1 :]:
            extra = extra_a + extra_b
            if name_a == name_b or extra <= 0 or extra > spare:
                continue
            within = spare - extra <= slack
            key = (within, gain_a + gain_b if within else float(extra))
            if best is None or key > best[0]:
                best = (key, (name_a, option_a, name_b, option_b))
    return None if best is None else best[1]


def _fewest_changes(
    options: Mapping[str, list[LayerOption]],
    current: Mapping[str, LayerOption],
    *,
    fixed_cost: int,
    budget: float,
    slack: float,
) -> dict[str, LayerOption] | None:
    """A choice costing within ``slack`` below ``budget`` that changes the fewest layers.

    States are cost sums bucketed at ``slack / (4 * layers)``, so the bucketing drops at most
    a quarter of the slack over all layers; each bucket keeps its best state.
    """
    limit = budget - fixed_cost
    # Capped at 5,000 buckets so very deep models stay fast (then rounding may cost more).
    resolution = max(slack / (4 * max(len(options), 1)), limit / 5000, 1e-9)
    # bucket -> (changes, -score, exact cost, picks)
    states: dict[int, tuple[int, float, int, tuple[LayerOption, ...]]] = {0: (0, 0.0, 0, ())}
    for name, opts in options.items():
        following: dict[int, tuple[int, float, int, tuple[LayerOption, ...]]] = {}
        for changes, minus_score, cost, picks in states.values():
            for option in opts:
                total = cost + option.cost
                if total > limit:
                    break  # options are cheapest first
                state = (
                    changes + (option != current[name]),
                    minus_score - finite_score(option),
                    total,
                    (*picks, option),
                )
                bucket = int(total // resolution)
                if bucket not in following or state[:2] < following[bucket][:2]:
                    following[bucket] = state
        states = following
    reached = [s for s in states.values() if limit - s[2] <= slack]
    if not reached:
        return None
    best = min(reached, key=lambda s: s[:2])
    return dict(zip(options, best[3], strict=True))


def meet_budget(
    options: Mapping[str, list[LayerOption]],
    chosen: Mapping[str, LayerOption],
    *,
    fixed_cost: int,
    budget: float,
    tolerance: float = DEFAULT_TOLERANCE,
    max_score_loss: float | None = None,
) -> tuple[dict[str, LayerOption], dict[str, Any]]:
    """Bring a within-budget choice to within ``tolerance`` (a fraction) below ``budget``.

    Args:
        options: per-layer options from :func:`layer_options` (cheapest first).
        chosen: one option per layer, total (with ``fixed_cost``) within ``budget``.
        fixed_cost: cost of everything the options do not cover.
        budget: the most the model may cost.
        tolerance: the total should reach at least ``(1 - tolerance) * budget``.
        max_score_loss: most predicted score (summed over layers) that steps 2-3 may give up
            to land within tolerance; None: 1% of the baseline (the "leave alone" score).

    Returns:
        The new choice per layer, and details: ``fill_steps``, ``pair_steps``,
        ``closest_search`` (whether the dynamic program ran), ``budget_gap`` (unused
        fraction of the budget), ``within_tolerance``, and when not within tolerance a
        ``budget_note`` saying why.

    Example:
        >>> opts = {n: [LayerOption(0.3, 1, 3, 1.0), LayerOption(1.0, None, 10, 1.0)]
        ...         for n in "ab"}
        >>> chosen, info = meet_budget(opts, {n: o[0] for n, o in opts.items()},
        ...                            fixed_cost=0, budget=13)
        >>> info["within_tolerance"], sum(o.cost for o in chosen.values())
        (True, 13)
    """
    current, fill_steps = fill_budget(options, chosen, fixed_cost=fixed_cost, budget=budget)
    filled = dict(current)
    slack = tolerance * budget
    pair_steps, searched = 0, False

    def spare() -> float:
        return budget - fixed_cost - sum(o.cost for o in current.values())

    while spare() > slack and pair_steps < _MAX_PAIR_ROUNDS:
        move = _pair_move(options, current, spare=spare(), slack=slack)
        if move is None:
            break
        current[move[0]], current[move[2]] = move[1], move[3]
        pair_steps += 1
        # A pair may leave room for single upgrades (a downgrade frees budget).
        current, more = fill_budget(options, current, fixed_cost=fixed_cost, budget=budget)
        fill_steps += more
    if spare() > slack:
        closest = _fewest_changes(
            options, current, fixed_cost=fixed_cost, budget=budget, slack=slack
        )
        searched = True
        if closest is not None:
            current = closest
    if max_score_loss is None:
        baseline = next((o.score for opts in options.values() for o in opts if o.rank is None), 0)
        max_score_loss = 0.01 * abs(baseline)
    loss = sum(map(finite_score, filled.values())) - sum(map(finite_score, current.values()))
    kept_filled = loss > max_score_loss + 1e-12
    if kept_filled:
        current = filled
    gap = spare() / budget
    info: dict[str, Any] = {
        "fill_steps": fill_steps,
        "pair_steps": pair_steps,
        "closest_search": searched,
        "budget_gap": gap,
        "within_tolerance": gap <= tolerance,
    }
    if kept_filled:
        info["budget_note"] = (
            f"the selection uses {1 - gap:.2%} of the budget: landing within {tolerance:.0%} "
            f"of it would lower the predicted score by {loss:.4g} (allowed {max_score_loss:.4g}), "
            "so the smaller selection with the better prediction is kept"
        )
    elif gap > tolerance:
        steps = [
            b.cost - a.cost
            for opts in options.values()
            for a, b in itertools.pairwise(opts)
            if b.cost > a.cost
        ]
        smallest = min(steps, default=0) / budget
        info["budget_note"] = (
            f"the selection uses {1 - gap:.2%} of the budget: no combination of the candidates "
            f"lands within {tolerance:.0%} of it (the smallest step between two "
            f"candidates of one layer is {smallest:.2%} of the budget); add candidates for a "
            "closer fit"
        )
    return current, info
