"""Exact costs of selections, and the step that meets a target when layer costs interact.

A dictionary's per-layer costs are exact one layer at a time. For most schemes a selection's
cost is their sum; for pruning it is not: a layer whose input and output channels are both
pruned keeps the product of the two fractions, so the solvers' additive prediction is
optimistic. The dictionary records how to price a selection exactly
(``EvalScores.exact_costs``), and :func:`meet_exact_cost` lowers the target asked of the
additive solver (by bisection) until the exact cost meets the real one, then spends what
the bisection left of the budget one layer upgrade at a time, priced exactly (the best
predicted score gain per unit of exact cost first). Every solver runs it
(``Solver.solve``), so ``select()``, ``compress()``, the plots and the solver comparison
give the same, exact answer.

Measured latencies have no such exact model (layers interact through caches and memory
too): a selection's latency is priced additively here, also for pruning, and the combined
model is measured end to end instead (:mod:`~greedy_compress.selection.latency_check`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from greedy_compress.dictionary import EvalScores
from greedy_compress.errors import ScoresMismatchError, TargetUnreachableError
from greedy_compress.model.cost import Cost, CostMetric
from greedy_compress.selection.budget import finite_score
from greedy_compress.selection.options import LayerOption, layer_options
from greedy_compress.selection.selection import LayerChoice, Selection

__all__ = ["choices_cost", "meet_exact_cost", "reachable_ratio", "selection_ratio"]


def choices_cost(scores: EvalScores, choices: Mapping[str, LayerChoice]) -> Cost:
    """The model's cost with the layers of ``choices`` compressed as chosen, exactly.

    Raises:
        ScoresMismatchError: a choice names a layer or a rank the dictionary does not have.

    Example:
        >>> selection = select(scores, target=0.5)
        >>> choices_cost(scores, selection.choices).macs <= 0.5 * scores.model_cost.macs
        True
    """
    unknown = [name for name in choices if name not in scores.layers]
    if unknown:
        raise ScoresMismatchError(
            f"The selection names layers the dictionary does not have: {unknown}."
        )
    additive = _additive_cost(scores, choices)
    if scores.exact_costs is None:
        return additive
    ranks = {name: choice.rank for name, choice in choices.items()}
    exact = scores.exact_costs.cost(scores.model_cost, ranks)
    return dataclasses.replace(exact, latency_ns=additive.latency_ns)  # latency: additive


def _additive_cost(scores: EvalScores, choices: Mapping[str, LayerChoice]) -> Cost:
    total = scores.model_cost
    for name, choice in choices.items():
        layer = scores.layers[name]
        entry = next(
            (e for e in layer.entries if e.rank == choice.rank and e.scheme == choice.scheme),
            None,
        )
        if entry is None:
            raise ScoresMismatchError(
                f"Layer {name!r} has no candidate of rank {choice.rank}"
                + (f" for scheme {choice.scheme!r}" if choice.scheme else "")
                + " in the dictionary."
            )
        total = total - layer.info.cost + entry.cost
    return total


def selection_ratio(scores: EvalScores, selection: Selection) -> float:
    """The fraction of the model's cost (in the selection's metric) it really keeps."""
    metric = selection.cost_metric
    return choices_cost(scores, selection.choices).get(metric) / scores.model_cost.get(metric)


def reachable_ratio(scores: EvalScores, *, cost: CostMetric | None = None) -> float:
    """The smallest kept cost ratio: every scored layer at its cheapest candidate, exactly.

    Example:
        >>> 0 < reachable_ratio(scores) < 0.2
        True
    """
    metric = scores.cost_metric if cost is None else cost
    cheapest = {  # the config list's bounds honoured: each layer's cheapest allowed option
        name: LayerChoice(o.kept_ratio, o.rank, o.score, o.scheme)
        for name, opts in layer_options(scores, metric).items()
        if (o := opts[0]).rank is not None
    }
    return choices_cost(scores, cheapest).get(metric) / max(1, scores.model_cost.get(metric))


def meet_exact_cost(
    scores: EvalScores,
    solve: Callable[[float], Selection],
    *,
    target: float,
    options: Mapping[str, list[LayerOption]] | None = None,
    steps: int = 12,
    tolerance: float = 0.01,
) -> Selection:
    """``solve(target)``, corrected so the selection's exact cost meets ``target``.

    ``solve`` is an additive solver for an asked target. Without interacting costs its
    selection is returned unchanged. Otherwise the asked target is bisected (``steps``
    times) to the largest whose selection keeps at most ``target`` of the cost exactly, and
    then, given the layers' ``options``, the budget left is spent by exactly priced
    upgrades. The result's ``predicted_ratio`` is exact, ``details["asked_target"]``
    records what was asked, and ``details["budget_note"]`` says so when it lands more than
    ``tolerance`` below the target.

    Raises:
        TargetUnreachableError: no asked target gives a selection within ``target``.
    """
    first = solve(target)
    if scores.exact_costs is None or first.cost_metric == "latency":
        return first  # latency is priced additively; the combined model is measured
    best, best_ratio, asked = first, selection_ratio(scores, first), target
    low, high = 0.0, target
    for _ in range(steps if best_ratio > target else 0):
        asked = (low + high) / 2
        try:
            candidate = solve(asked)
        except TargetUnreachableError:
            low = asked
            continue
        ratio = selection_ratio(scores, candidate)
        if ratio <= target:
            best, best_ratio, low = candidate, ratio, asked
        else:
            high = asked
    if best_ratio > target:
        raise TargetUnreachableError(
            f"Target {target:g} is out of reach for {scores.scheme}: pruned layers compound, "
            f"and the smallest selection found keeps {best_ratio:.4f} of the "
            f"{first.cost_metric} cost (the smallest reachable is "
            f"{reachable_ratio(scores, cost=first.cost_metric):.4f})."
        )
    details = {**best.details, "asked_target": asked if best is not first else target}
    if options is not None:
        best, upgrades = _exact_fill(scores, best, options, target=target, tolerance=tolerance)
        best_ratio = selection_ratio(scores, best)
        details["exact_fill_steps"] = upgrades
    gap = (target - best_ratio) / target
    details.update(budget_gap=gap, within_tolerance=gap <= tolerance)
    if gap > tolerance:
        details["budget_note"] = (
            f"the selection keeps {best_ratio:.4f} of the cost for a target of {target:g}: "
            "no upgrade of one or two layers lands closer once pruned layers compound "
            "(or it would lower the predicted score by more than 1% of the baseline); add "
            "candidates for a closer fit"
        )
    else:
        details.pop("budget_note", None)  # the additive step's note no longer applies
    return dataclasses.replace(best, target=target, predicted_ratio=best_ratio, details=details)


_MAX_PAIR_ROUNDS = 50


def _exact_fill(
    scores: EvalScores,
    selection: Selection,
    options: Mapping[str, list[LayerOption]],
    *,
    target: float,
    tolerance: float,
) -> tuple[Selection, int]:
    """Spend the budget left, priced exactly: single upgrades, then pairs of moves.

    Single upgrades take the best predicted score gain per unit of exact cost (ties: the
    layer compressed hardest), like the additive fill. While the cost is still more than
    ``tolerance`` below the budget, pairs of one-step moves (one layer up, another up or
    down) that land closer are tried, as the additive step does; they are kept only if the
    predicted score they cost stays within 1% of the baseline.
    """
    metric = selection.cost_metric
    budget = target * scores.model_cost.get(metric)
    current = {
        name: _option_of(opts, selection.choices.get(name)) for name, opts in options.items()
    }

    def cost(choice: Mapping[str, LayerOption]) -> int:
        return choices_cost(scores, _choices(choice)).get(metric)

    def step(name: str, choice: Mapping[str, LayerOption], by: int) -> LayerOption | None:
        index = options[name].index(choice[name]) + by
        return options[name][index] if 0 <= index < len(options[name]) else None

    def fill(choice: dict[str, LayerOption]) -> tuple[dict[str, LayerOption], int, int]:
        spent, steps = cost(choice), 0
        while True:
            best: tuple[tuple[float, float], str, LayerOption, int] | None = None
            for name in options:
                up = step(name, choice, 1)
                if up is None:
                    continue
                trial_cost = cost({**choice, name: up})
                if trial_cost <= spent or trial_cost > budget:
                    continue
                gain = (finite_score(up) - finite_score(choice[name])) / (trial_cost - spent)
                key = (gain, -choice[name].kept_ratio)
                if best is None or key > best[0]:
                    best = (key, name, up, trial_cost)
            if best is None:
                return choice, spent, steps
            _, name, up, spent = best
            choice[name] = up
            steps += 1

    current, spent, steps = fill(current)
    filled = dict(current)
    for _ in range(_MAX_PAIR_ROUNDS):
        if budget - spent <= tolerance * budget:
            break
        best_pair: tuple[tuple[bool, float], dict[str, LayerOption], int] | None = None
        names = list(options)
        for i, first in enumerate(names):
            up = step(first, current, 1)
            if up is None:
                continue
            for second in names[i + 1 :] + names[:i]:
                for by in (1, -1):
                    other = step(second, current, by)
                    if other is None:
                        continue
                    trial = {**current, first: up, second: other}
                    trial_cost = cost(trial)
                    if trial_cost <= spent or trial_cost > budget:
                        continue
                    within = budget - trial_cost <= tolerance * budget
                    score = sum(map(finite_score, trial.values()))
                    key = (within, score if within else float(trial_cost))
                    if best_pair is None or key > best_pair[0]:
                        best_pair = (key, trial, trial_cost)
        if best_pair is None:
            break
        current, spent = best_pair[1], best_pair[2]
        current, spent, more = fill(current)
        steps += 1 + more
    baseline = scores.baseline
    loss = sum(map(finite_score, filled.values())) - sum(map(finite_score, current.values()))
    if loss > 0.01 * abs(baseline) + 1e-12:
        current, steps = filled, steps  # a closer landing would cost too much predicted score
    return dataclasses.replace(selection, choices=_choices(current)), steps


def _choices(choice: Mapping[str, LayerOption]) -> dict[str, LayerChoice]:
    return {
        name: LayerChoice(o.kept_ratio, o.rank, o.score, o.scheme)
        for name, o in choice.items()
        if o.rank is not None
    }


def _option_of(options: list[LayerOption], choice: LayerChoice | None) -> LayerOption:
    if choice is None:
        return next(o for o in options if o.rank is None)
    return next(o for o in options if o.rank == choice.rank and o.scheme == choice.scheme)
