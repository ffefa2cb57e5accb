"""Check the best few selections end to end, then improve the best one by local moves.

A dictionary predicts a selection's score by adding up single-layer losses, and a two-level
dictionary (:func:`~greedy_compress.dictionary.two_level.build_two_level_scores`) predicts
most of those too; EvoPress showed that the selection with the best predicted sum can score
worse end to end than others. So the selections with the best predictions are built and
evaluated: the solver's optimum, and for each layer it compresses the optimum without that
layer's choice (the next best way to spend the budget there), best predicted first. The best
measured one is then improved by local moves, each evaluated end to end: back one layer off
a step and pay for it by compressing others (the moves of
:func:`~greedy_compress.selection.repair.repair_selection`), keeping a move when it raises
the real score. Every selection tried meets the target.

Example:
    >>> selection, check = check_end_to_end(model, evaluator, scores, target=0.5, top=2,
    ...                                     max_evaluations=3)
    >>> check.evaluations <= 3 and check.final_score == max(c.score for c in check.tried)
    True
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import check_open_unit, check_positive_int
from greedy_compress._util.progress import progress_bar
from greedy_compress.dictionary import EvalScores, Evaluator, run_evaluator
from greedy_compress.schemes import Scheme, build_compressed
from greedy_compress.selection.refine import Refinement, refine_two_level
from greedy_compress.selection.repair import RepairStep, repair_selection
from greedy_compress.selection.selection import Selection, layer_schemes, predicted_score
from greedy_compress.selection.solvers import Solver, get_solver

__all__ = ["EndToEndCheck", "SelectionTried", "check_end_to_end"]

_OWNER = "check_end_to_end"


@dataclass(frozen=True)
class SelectionTried:
    """One selection evaluated end to end: what it is, its predicted and real score."""

    label: str
    predicted_score: float | None
    score: float
    predicted_ratio: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EndToEndCheck:
    """What :func:`check_end_to_end` did.

    Attributes:
        tried: the full selections evaluated, in the order evaluated, then each local move.
        final_score: the real score of the returned selection (the best of ``tried``).
        evaluations: how many models were evaluated.
        predicted: how many of the dictionary's entries were predicted, not measured.
        moves: the local moves (as :class:`~greedy_compress.selection.repair.RepairStep`).
        refinement: for a two-level dictionary, the predicted scores measured first
            (:func:`~greedy_compress.selection.refine.refine_two_level`); None otherwise.
    """

    tried: list[SelectionTried]
    final_score: float
    evaluations: int
    predicted: int
    moves: list[RepairStep] = field(default_factory=list)
    refinement: Refinement | None = None

    @property
    def trusted(self) -> bool:
        """False when the selections checked rest on predicted scores the refinement could
        not measure within its budget: the solver may have been misled."""
        return self.refinement is None or self.refinement.converged

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "tried": [t.to_dict() for t in self.tried],
            "final_score": self.final_score,
            "evaluations": self.evaluations,
            "predicted": self.predicted,
            "moves": [m.to_dict() for m in self.moves],
            "refinement": None if self.refinement is None else self.refinement.to_dict(),
            "trusted": self.trusted,
        }

    def to_text(self) -> str:
        """A few lines for a report."""
        lines = [
            f"end-to-end check: {self.evaluations} evaluations, best score "
            f"{self.final_score:.4f} ({self.predicted} dictionary scores predicted)"
        ]
        if self.refinement is not None:
            lines.append(
                f"  refined first: {len(self.refinement.measured)} predicted scores measured"
                + ("" if self.trusted else "; NOT converged: the selection may be misled")
            )
        for tried in self.tried:
            guess = "-" if tried.predicted_score is None else f"{tried.predicted_score:.4f}"
            lines.append(f"  score {tried.score:.4f} (predicted {guess})  {tried.label}")
        return "\n".join(lines)


def _without(scores: EvalScores, name: str, rank: int, scheme: str | None) -> EvalScores:
    """``scores`` with layer ``name``'s candidates of ``rank`` taken out."""
    layer = scores.layers[name]
    kept = tuple(e for e in layer.entries if (e.rank, e.scheme) != (rank, scheme))
    return scores.with_layer(name, dataclasses.replace(layer, entries=kept))


def _key(selection: Selection) -> frozenset[tuple[str, int, str | None]]:
    return frozenset((n, c.rank, c.scheme) for n, c in selection.choices.items())


def _alternatives(
    scores: EvalScores, solver: Solver, target: float, best: Selection
) -> list[tuple[str, Selection]]:
    """The optimum, then the optimum without each of its choices, best predicted first."""
    found: dict[frozenset[tuple[str, int, str | None]], tuple[str, Selection]] = {
        _key(best): (f"{solver.name} optimum", best)
    }
    for name, choice in best.choices.items():
        reduced = _without(scores, name, choice.rank, choice.scheme)
        if not reduced.layers[name].entries:
            continue
        try:
            other = solver.solve(reduced, target=target)
        except ValueError:  # the target needs that very choice
            continue
        found.setdefault(_key(other), (f"without {name} at rank {choice.rank}", other))
    ordered = list(found.values())

    def prediction(item: tuple[str, Selection]) -> float:
        value = predicted_score(scores, item[1])
        return -math.inf if value is None else value

    return ordered[:1] + sorted(ordered[1:], key=prediction, reverse=True)


def check_end_to_end(
    model: nn.Module,
    evaluator: Evaluator,
    scores: EvalScores,
    *,
    target: float,
    solver: str | Solver = "knapsack",
    top: int = 3,
    max_evaluations: int = 10,
    max_measurements: int = 48,
    scheme: str | Scheme | None = None,
    example_input: torch.Tensor | None = None,
    progress: bool = False,
) -> tuple[Selection, EndToEndCheck]:
    """Evaluate the ``top`` selections with the best predicted scores end to end, then improve
    the best one by local moves until ``max_evaluations`` (see the module docstring).

    Args:
        model: the original model.
        evaluator: ``evaluator(model) -> float``, higher is better (the dictionary's).
        scores: the dictionary (exact or two-level).
        target: fraction of the model's cost to keep, in (0, 1).
        solver: the solver whose optimum and near-optima are checked.
        top: how many full selections to evaluate before the local moves.
        max_evaluations: most models to evaluate end to end.
        max_measurements: with a two-level dictionary, most predicted single-layer scores
            to measure first where they decide the optimum
            (:func:`~greedy_compress.selection.refine.refine_two_level`; not counted in
            ``max_evaluations``).
        scheme: the scheme instance to build with (a configured or data-aware one).
        example_input: a tensor the model accepts (default: zeros of the dictionary's shape).
        progress: show a progress bar.

    Returns:
        The selection with the best real score (``details["end_to_end"]`` holds it) and an
        :class:`EndToEndCheck` (a RuntimeWarning when it is not ``trusted``).
    """
    target = check_open_unit(target, "target", _OWNER)
    top = check_positive_int(top, "top", _OWNER)
    max_evaluations = check_positive_int(max_evaluations, "max_evaluations", _OWNER)
    solver = get_solver(solver, _OWNER)
    if example_input is None:
        example_input = scores.example_input(like=model)
    max_measurements = check_positive_int(max_measurements, "max_measurements", _OWNER)
    optimum = solver.solve(scores, target=target)
    layer_schemes(optimum.choices, optimum.scheme, scheme=scheme, owner=_OWNER)  # fail fast
    refinement = None
    if scores.predicted:
        scores, refinement = refine_two_level(
            model,
            evaluator,
            scores,
            target=target,
            scheme=scheme,
            solver=solver,
            max_measurements=max_measurements,
            example_input=example_input,
            progress=progress,
        )
        optimum = solver.solve(scores, target=target)
    tried: list[SelectionTried] = []
    best: tuple[float, Selection] | None = None
    with progress_bar(total=top, desc="end-to-end", enabled=progress) as bar:
        for label, selection in _alternatives(scores, solver, target, optimum)[
            : min(top, max_evaluations)
        ]:
            schemes = layer_schemes(
                selection.choices, selection.scheme, scheme=scheme, owner=_OWNER
            )
            built = build_compressed(
                model,
                {name: (schemes[name], c.rank) for name, c in selection.choices.items()},
                example_input=example_input,
                details=selection.details,
            )
            value = run_evaluator(evaluator, built)
            value = value if math.isfinite(value) else -math.inf
            tried.append(
                SelectionTried(
                    label, predicted_score(scores, selection), value, selection.predicted_ratio
                )
            )
            if best is None or value > best[0]:
                best = (value, selection)
            bar.update(1)
    assert best is not None  # top >= 1
    score, chosen = best
    evaluations, moves = len(tried), []
    if evaluations < max_evaluations:
        improved, repair = repair_selection(
            model,
            evaluator,
            scores,
            chosen,
            max_drop=0.0,  # never met short of the baseline: it keeps every improving move
            scheme=scheme,
            score=score,
            max_evaluations=max_evaluations - evaluations,
            example_input=example_input,
            progress=progress,
        )
        evaluations += repair.evaluations
        moves = repair.steps
        for step in repair.steps:
            tried.append(SelectionTried(step.action, None, step.score, step.predicted_ratio))
        if repair.final_score > score:
            score, chosen = repair.final_score, improved
    details = {
        **chosen.details,
        "end_to_end": {"score": score, "evaluations": evaluations, "predicted": scores.predicted},
    }
    check = EndToEndCheck(tried, score, evaluations, scores.predicted, moves, refinement)
    if not check.trusted:
        warnings.warn(
            f"check_end_to_end: the optimum for target {target} still rests on predicted "
            f"scores after measuring {max_measurements}; its selection may be misled (raise "
            "max_measurements, or build the exact dictionary).",
            RuntimeWarning,
            stacklevel=2,
        )
    return dataclasses.replace(chosen, details=details), check
