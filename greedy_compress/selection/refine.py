"""Measure a two-level dictionary where it decides the selection, until the selection rests
on measured scores only.

A two-level dictionary (:func:`~greedy_compress.dictionary.two_level.build_two_level_scores`)
predicts most single-layer scores from a layer-output proxy. The prediction is good near the
probes and can be far off beyond them: an aggressive target picks candidates much more
compressed than any probe, where a layer's accuracy falls off a cliff the proxy cannot see
(at 0.3 of the MACs on TinyResNet with weight SVD the solver's optimum on predicted scores
reached 0.13 top-1 where the exact dictionary's reached 0.69). So, for a target: solve,
measure every choice of the optimum that was predicted (one single-layer evaluation each,
as the exact build would), predict the layer's other candidates again through its new
measured points, and solve again; stop once the optimum's choices are all measured (then it
is what the exact dictionary's solver would pick whenever the predictions it passed over were
not pessimistic) or the budget is spent. A refinement that stops short says so
(``converged`` False): do not trust its selection without an end-to-end check.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter, check_open_unit, check_positive_int
from greedy_compress._util.progress import progress_bar
from greedy_compress.dictionary import EvalScores, Evaluator
from greedy_compress.dictionary.scoring import LayerScorer
from greedy_compress.dictionary.two_level import predict_scores
from greedy_compress.schemes import Scheme, get_scheme
from greedy_compress.selection.selection import Selection
from greedy_compress.selection.solvers import Solver, get_solver

__all__ = ["Refinement", "refine_two_level", "with_measured"]

_OWNER = "refine_two_level"


@dataclass(frozen=True)
class Refinement:
    """What :func:`refine_two_level` did.

    Attributes:
        measured: the ``(layer, rank)`` scores it measured, in order.
        rounds: how many times it solved.
        converged: whether the final optimum's choices are all measured scores.
    """

    measured: list[tuple[str, int]]
    rounds: int
    converged: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "measured": [list(item) for item in self.measured],
            "rounds": self.rounds,
            "converged": self.converged,
        }


def _predicted_choices(scores: EvalScores, selection: Selection) -> list[tuple[str, int]]:
    """The predicted (not measured) scores around the optimum: each choice, and the
    candidates one step more and one step less compressed (the solver's next trades)."""
    found = []
    for name, choice in selection.choices.items():
        entries = sorted(scores.layers[name].entries, key=lambda e: e.kept_ratio)
        ranks = list(dict.fromkeys(e.rank for e in entries))
        index = ranks.index(choice.rank)
        around = [ranks[index], *ranks[max(index - 1, 0) : index], *ranks[index + 1 : index + 2]]
        for rank in around:
            if any(not e.measured for e in entries if e.rank == rank):
                found.append((name, rank))
    return found


def with_measured(scores: EvalScores, new: dict[tuple[str, int], float | None]) -> EvalScores:
    """``scores`` with the ``(layer, rank) -> score`` of ``new`` measured, and each changed
    layer's other predicted scores predicted again through its measured points.

    Example:
        >>> from greedy_compress.dictionary import build_two_level_scores
        >>> two = build_two_level_scores(model, evaluator, data=train_loader,
        ...                              input_shape=(1, 1, 8, 8), progress=False)
        >>> entry = next(e for e in two.layers["features.3"].entries if not e.measured)
        >>> again = with_measured(two, {("features.3", entry.rank): 0.5})
        >>> again.predicted == two.predicted - 1
        True
    """
    known = [e.score for layer in scores.layers.values() for e in layer.entries if e.measured]
    floor = min(s for s in [scores.baseline, *known, *new.values()] if s is not None)
    for name in dict.fromkeys(name for name, _ in new):
        layer = scores.layers[name]
        seen = {e.rank: e.score for e in layer.entries if e.measured}
        seen.update({rank: score for (n, rank), score in new.items() if n == name})
        errors = {e.rank: e.proxy for e in layer.entries if e.proxy is not None}
        predicted = predict_scores(errors, seen, baseline=scores.baseline, floor=floor)
        entries = tuple(
            dataclasses.replace(
                e,
                score=seen[e.rank] if e.rank in seen else predicted.get(e.rank, e.score),
                measured=e.rank in seen,
            )
            for e in layer.entries
        )
        scores = scores.with_layer(name, dataclasses.replace(layer, entries=entries))
    return scores


def refine_two_level(
    model: nn.Module,
    evaluator: Evaluator,
    scores: EvalScores,
    *,
    target: float,
    scheme: str | Scheme | None = None,
    solver: str | Solver = "knapsack",
    max_measurements: int = 48,
    example_input: torch.Tensor | None = None,
    progress: bool = False,
) -> tuple[EvalScores, Refinement]:
    """Measure the predicted scores the optimum for ``target`` rests on, until it rests on
    measured scores only or ``max_measurements`` are spent (see the module docstring).

    Args:
        model: the original model.
        evaluator: ``evaluator(model) -> float``, the dictionary's.
        scores: a two-level dictionary (an exact one is returned unchanged).
        target: fraction of the model's cost to keep, in (0, 1).
        scheme: the scheme instance the dictionary was built with (a data-aware one).
        solver: the solver whose optimum is refined.
        max_measurements: most single-layer scores to measure.
        example_input: a tensor the model accepts (default: zeros of the dictionary's shape).
        progress: show a progress bar.

    Returns:
        The dictionary with the new measurements, and a :class:`Refinement`.

    Raises:
        InvalidParameterError: a plain ``scheme`` for a data-aware dictionary or the other
            way round (the measured scores would not be the dictionary's).

    Example:
        >>> from greedy_compress.dictionary import build_two_level_scores
        >>> two = build_two_level_scores(model, evaluator, data=train_loader,
        ...                              input_shape=(1, 1, 8, 8), progress=False)
        >>> refined, how = refine_two_level(model, evaluator, two, target=0.5)
        >>> how.converged, refined.predicted < two.predicted or not how.measured
        (True, True)
    """
    target = check_open_unit(target, "target", _OWNER)
    max_measurements = check_positive_int(max_measurements, "max_measurements", _OWNER)
    solver = get_solver(solver, _OWNER)
    layer_scheme = get_scheme(scores.fingerprint["scheme"] if scheme is None else scheme, _OWNER)
    scored_aware = bool(scores.fingerprint.get("scheme_settings", {}).get("data_aware", False))
    if bool(layer_scheme.settings().get("data_aware", False)) != scored_aware:
        # measured with another scheme, the new scores would not be the dictionary's
        raise bad_parameter(
            "scheme",
            _OWNER,
            f"the {'data-aware' if scored_aware else 'plain'} scheme the dictionary was built with",
            scheme,
        )
    if example_input is None:
        example_input = scores.example_input(like=model)
    layer_scheme.prepare(model, example_input=example_input)  # a data-aware one: its moments
    scorer = LayerScorer(model, evaluator, example_input, fast=True, workers=1)
    measured: list[tuple[str, int]] = []
    rounds = 0
    with progress_bar(total=max_measurements, desc="refining", enabled=progress) as bar:
        while True:
            rounds += 1
            wanted = _predicted_choices(scores, solver.solve(scores, target=target))
            room = max_measurements - len(measured)
            if not wanted or room <= 0:
                break
            jobs = [
                (name, layer_scheme.factorize_in(model, name), [rank])
                for name, rank in wanted[:room]
            ]
            new = {
                (name, rank): score
                for name, ranks in scorer.score(jobs, bar).items()
                for rank, score in ranks.items()
            }
            measured += list(new)
            scores = with_measured(scores, new)
    return scores, Refinement(measured, rounds, not wanted)
