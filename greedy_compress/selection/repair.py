"""Check the combined model against the dictionary, and repair a selection that falls apart.

The dictionary scores each layer compressed alone; a selection compresses many at once and
the dictionary predicts the result by adding up the single-layer losses
(:func:`~greedy_compress.selection.selection.predicted_score`). When layers interact, the
real combined model can score far lower. :func:`repair_selection` evaluates the combined
model and, while its score has fallen further than ``max_drop`` allows, backs off one
compressed layer at a time (to its next larger candidate) and pays for it by compressing
other layers one step more, so the target still holds, priced exactly (pruned layers
compound). The dictionary orders the moves (the layer whose compression costs most
predicted score per unit of cost saved first; on ties, the layer compressed hardest), and
real evaluations of the combined model decide which move is kept. Every evaluated move is
logged.

Example:
    >>> selection, result = repair_selection(model, evaluator, scores,
    ...                                      select(scores, target=0.3), max_drop=0.02)
    >>> result.evaluations >= 1 and result.steps[0].action == "combined check"
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter, check_positive_int
from greedy_compress._util.progress import progress_bar
from greedy_compress.dictionary import EvalScores, Evaluator, run_evaluator
from greedy_compress.schemes import Scheme, build_compressed
from greedy_compress.selection.budget import finite_score, meet_budget
from greedy_compress.selection.exact_cost import choices_cost
from greedy_compress.selection.max_drop import MaxDrop, check_max_drop
from greedy_compress.selection.options import LayerOption, layer_options
from greedy_compress.selection.selection import LayerChoice, Selection, layer_schemes

__all__ = ["RepairResult", "RepairStep", "repair_selection"]

DEFAULT_MAX_EVALUATIONS = 30

Choice = Mapping[str, LayerOption]  # one option per layer


@dataclass(frozen=True)
class RepairStep:
    """One evaluated selection: what changed (layer -> [rank before, rank after], None =
    untouched), its predicted cost ratio and real score, and whether it was kept."""

    action: str
    changes: dict[str, list[int | None]]
    predicted_ratio: float
    score: float
    kept: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RepairResult:
    """What the repair did: scores before and after, evaluations made, every step.

    ``success`` is True when the returned selection scores within ``max_drop`` of the
    baseline (and meets the target, which every evaluated selection does).
    """

    max_drop: MaxDrop
    baseline: float
    threshold: float
    initial_score: float
    final_score: float
    success: bool
    evaluations: int
    message: str
    steps: list[RepairStep] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        data = dataclasses.asdict(self)
        data["max_drop"] = self.max_drop.to_dict()
        return data

    def to_text(self) -> str:
        """A few lines for the report: outcome, then one line per evaluated step."""
        lines = [
            f"repair: max drop {self.max_drop.describe()} -> score must reach "
            f"{self.threshold:.4f}; {self.evaluations} evaluations; {self.message}"
        ]
        for step in self.steps:
            mark = "kept" if step.kept else "    "
            lines.append(
                f"  {mark} score {step.score:.4f}  ratio {step.predicted_ratio:.4f}  {step.action}"
            )
        return "\n".join(lines)


def _option_for(options: list[LayerOption], choice: LayerChoice | None) -> LayerOption:
    if choice is None:
        return next(o for o in options if o.rank is None)
    for option in options:  # in a mixed-scheme dictionary a rank alone is ambiguous
        if option.rank == choice.rank and option.scheme == choice.scheme:
            return option
    raise bad_parameter(
        "selection", "repair_selection", "ranks present in the dictionary", choice.rank
    )


def _choices(current: Choice) -> dict[str, LayerChoice]:
    return {
        name: LayerChoice(o.kept_ratio, o.rank, o.score, o.scheme)
        for name, o in current.items()
        if o.rank is not None
    }


def _key(current: Choice) -> frozenset[tuple[str, str | None, int | None]]:
    return frozenset((name, o.scheme, o.rank) for name, o in current.items())


def _pay(
    options: Mapping[str, list[LayerOption]],
    trial: dict[str, LayerOption],
    *,
    cost_of: Callable[[Choice], float],
    budget: float,
    protected: set[str],
) -> bool:
    """Compress unprotected layers one step at a time until ``trial`` fits ``budget``.

    Each step takes the downgrade losing the least predicted score per unit of cost saved
    (in the layer's own cost); ties go to the layer compressed least, so the compression
    stays spread out.
    """
    while cost_of(trial) > budget:
        best: tuple[tuple[float, float], str, LayerOption] | None = None
        for name, opts in options.items():
            if name in protected:
                continue
            index = opts.index(trial[name])
            if index == 0:
                continue
            down = opts[index - 1]
            saved = trial[name].cost - down.cost
            if saved <= 0:
                continue
            loss = (finite_score(trial[name]) - finite_score(down)) / saved
            key = (-loss, trial[name].kept_ratio)
            if best is None or key > best[0]:
                best = (key, name, down)
        if best is None:
            return False
        trial[best[1]] = best[2]
    return True


def _moves(
    options: Mapping[str, list[LayerOption]],
    current: Choice,
    *,
    cost_of: Callable[[Choice], float],
    fixed_cost: int,
    budget: float,
    protected: set[str],
) -> list[tuple[str, dict[str, LayerOption]]]:
    """Candidate repairs, most promising first: back one layer off, pay elsewhere."""
    ranked = []
    for name, opts in options.items():
        now = current[name]
        if now.rank is None or now is opts[-1]:  # a config list's max_ratio: no higher
            continue
        # One step up, or all the way back to the original layer.
        step = opts[opts.index(now) + 1]
        for up in [step] if step is opts[-1] else [step, opts[-1]]:
            # Predicted score this layer's compression costs per unit of cost it saves.
            loss = (finite_score(up) - finite_score(now)) / max(up.cost - now.cost, 1)
            ranked.append(((loss, -now.kept_ratio, -up.cost), name, up))
    ranked.sort(key=lambda item: item[0], reverse=True)
    moves = []
    for _, name, up in ranked:
        trial = dict(current)
        trial[name] = up
        if not _pay(options, trial, cost_of=cost_of, budget=budget, protected=protected | {name}):
            continue
        # Spend what is left (an additive fill), unless that breaks the exact budget.
        filled, _ = meet_budget(options, trial, fixed_cost=fixed_cost, budget=budget)
        if cost_of(filled) <= budget:
            trial = filled
        if trial != current:
            moves.append((name, trial))
    return moves


def _describe(before: Choice, after: Choice) -> tuple[str, dict[str, list[int | None]]]:
    changes = {n: [before[n].rank, after[n].rank] for n in after if before[n] != after[n]}

    def rank(value: int | None) -> str:
        return "full" if value is None else str(value)

    text = ", ".join(f"{n} {rank(a)}->{rank(b)}" for n, (a, b) in changes.items())
    return text, changes


def repair_selection(
    model: nn.Module,
    evaluator: Evaluator,
    scores: EvalScores,
    selection: Selection,
    *,
    max_drop: float | MaxDrop,
    scheme: str | Scheme | None = None,
    score: float | None = None,
    max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
    progress: bool = False,
    example_input: torch.Tensor | None = None,
) -> tuple[Selection, RepairResult]:
    """Back off layers until the combined model scores within ``max_drop`` of the baseline.

    Every selection tried meets ``selection.target``. Moves are ordered by the dictionary
    and judged by real evaluations of the combined model; a move is kept when it raises the
    real score. The search stops when the score is within ``max_drop`` (success), when no
    move raises it, or after ``max_evaluations`` evaluations; then the best selection found
    is returned and the result says the target and ``max_drop`` could not both be met.

    Args:
        model: the original model.
        evaluator: ``evaluator(model) -> float``, higher is better (the dictionary's).
        scores: the dictionary the selection was made from.
        selection: the selection to check and repair.
        max_drop: allowed drop below ``scores.baseline``: a float (absolute) or
            :class:`MaxDrop` (absolute or relative).
        scheme: overrides the scheme named in the selection (for unregistered schemes).
        score: the selection's real score if already measured (saves one evaluation).
        max_evaluations: most evaluations of combined models to spend.
        progress: show a progress bar.
        example_input: a tensor the model accepts (pruning schemes trace with it; default:
            zeros of the dictionary's input shape).

    Returns:
        The repaired (or best found) selection and a :class:`RepairResult`.

    Example:
        >>> fixed, result = repair_selection(model, evaluator, scores,
        ...     select(scores, target=0.5), max_drop=MaxDrop(0.02, relative=True))
        >>> result.final_score >= result.initial_score, fixed.predicted_ratio <= 0.5
        (True, True)
    """
    owner = "repair_selection"
    limit = check_max_drop(max_drop, owner)
    if limit is None:
        raise bad_parameter("max_drop", owner, "a float >= 0 or a MaxDrop", max_drop)
    check_positive_int(max_evaluations, "max_evaluations", owner)
    # The same (measured or monotone-fitted) options the selection was solved on.
    monotone = selection.details.get("monotone_fit") is True
    metric = selection.cost_metric
    options = layer_options(scores, metric, monotone=monotone)
    missing = [name for name in selection.choices if name not in options]
    if missing:
        raise bad_parameter("selection", owner, "layers of the dictionary", missing)
    current = {
        name: _option_for(opts, selection.choices.get(name)) for name, opts in options.items()
    }
    layer_schemes(selection.choices, selection.scheme, scheme=scheme, owner=owner)  # fail fast
    if example_input is None:
        example_input = scores.example_input(like=model)
    total = scores.model_cost.get(metric)
    budget = selection.target * total
    threshold = scores.baseline - limit.allowed(scores.baseline)

    def cost_of(choice: Choice) -> float:
        return choices_cost(scores, _choices(choice)).get(metric)

    def ratio(choice: Choice) -> float:
        return cost_of(choice) / total

    evaluations = 0
    seen: dict[frozenset[tuple[str, str | None, int | None]], float] = {}

    def evaluate(choice: Choice) -> float:
        nonlocal evaluations
        key = _key(choice)
        if key not in seen:
            chosen = _choices(choice)
            schemes = layer_schemes(
                chosen,
                selection.scheme,
                scheme=scheme,
                owner=owner,
                multiplicity=int(selection.details.get("multiplicity", 1)),
            )
            built = build_compressed(
                model,
                {name: (schemes[name], c.rank) for name, c in chosen.items()},
                example_input=example_input,
                details=selection.details,
            )
            value = run_evaluator(evaluator, built)
            seen[key] = value if math.isfinite(value) else -math.inf
            evaluations += 1
            bar.update(1)
        return seen[key]

    steps: list[RepairStep] = []
    with progress_bar(total=max_evaluations, desc="repair", enabled=progress) as bar:
        if score is None:
            score = evaluate(current)
            steps.append(RepairStep("combined check", {}, ratio(current), score, True))
        else:
            seen[_key(current)] = score
        initial, protected = score, set[str]()
        while score < threshold and evaluations < max_evaluations:
            moves = _moves(
                options,
                current,
                cost_of=cost_of,
                fixed_cost=scores.fixed_cost(metric),
                budget=budget,
                protected=protected,
            )
            kept = False
            for name, trial in moves:
                if evaluations >= max_evaluations:
                    break
                before = evaluations
                value = evaluate(trial)
                if evaluations == before:
                    continue  # already evaluated (and not kept) earlier
                text, changes = _describe(current, trial)
                kept = value > score
                steps.append(
                    RepairStep(f"back off {name}: {text}", changes, ratio(trial), value, kept)
                )
                if kept:
                    current, score = trial, value
                    protected.add(name)
                    break
            if not kept:
                break
    success = score >= threshold
    if success:
        message = (
            "the combined model was within max_drop"
            if score == initial
            else f"repaired: score {initial:.4f} -> {score:.4f}"
        )
    else:
        reason = (
            f"the evaluation budget ({max_evaluations}) ran out"
            if evaluations >= max_evaluations
            else "no back-off within the target raised the real score further"
        )
        message = (
            f"could not meet both the target and max_drop: {reason}; best found scores "
            f"{score:.4f} (needs {threshold:.4f}) at ratio {ratio(current):.4f}"
        )
    result = RepairResult(
        max_drop=limit,
        baseline=scores.baseline,
        threshold=threshold,
        initial_score=initial,
        final_score=score,
        success=success,
        evaluations=evaluations,
        message=message,
        steps=steps,
    )
    if _key(current) == _key(
        {n: _option_for(o, selection.choices.get(n)) for n, o in options.items()}
    ):
        return selection, result
    # The solver's budget notes described the selection before the repair.
    details: dict[str, Any] = {
        key: value
        for key, value in selection.details.items()
        if key not in ("budget_note", "budget_gap", "within_tolerance")
    }
    kept_ratio = ratio(current)
    gap = (selection.target - kept_ratio) / selection.target
    details.update(budget_gap=gap, within_tolerance=gap <= 0.01, repaired=True)
    if gap > 0.01:
        details["budget_note"] = (
            f"the repaired selection keeps {kept_ratio:.4f} of the cost for a target of "
            f"{selection.target:g}: backing off layers left that much unused"
        )
    repaired = dataclasses.replace(
        selection, predicted_ratio=kept_ratio, choices=_choices(current), details=details
    )
    return repaired, result
