"""One-call compression, and the phases it chains for reuse across experiments."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter, check_open_unit
from greedy_compress.apply import FinetuneCallback, apply_selection
from greedy_compress.dictionary.build import Evaluator, build_eval_scores, run_evaluator
from greedy_compress.dictionary.scores import EvalScores
from greedy_compress.model.cost import CostMetric, measure_cost
from greedy_compress.model.profile import make_example_input
from greedy_compress.report.report import CompressionReport, LayerReport
from greedy_compress.schemes import Scheme, get_scheme
from greedy_compress.selection.exact_cost import solve_exact
from greedy_compress.selection.repair import (
    MaxDrop,
    RepairResult,
    check_max_drop,
    predicted_score,
    repair_selection,
)
from greedy_compress.selection.solvers import Selection, Solver, get_solver

__all__ = ["build_report", "compress", "select"]


def select(
    scores: EvalScores,
    *,
    target: float,
    solver: str | Solver = "greedy",
    metric: CostMetric | None = None,
    monotone: bool = False,
) -> Selection:
    """Choose per-layer ranks from a dictionary so the model keeps ``target`` of its cost.

    Cheap and pure: call it for as many targets and solvers as you like. The cost lands
    within 1% of the target where the candidates allow (``details["budget_note"]`` says why
    not otherwise); ``monotone=True`` solves on monotone fits of the layers' score curves.

    Example:
        >>> scores = EvalScores.load("scores.json")                    # doctest: +SKIP
        >>> [select(scores, target=t).predicted_ratio for t in (0.7, 0.5)]  # doctest: +SKIP
    """
    return get_solver(solver, "select").solve(
        scores, target=target, metric=metric, monotone=monotone
    )


def build_report(
    model: nn.Module,
    compressed: nn.Module,
    *,
    scores: EvalScores,
    selection: Selection,
    example_input: torch.Tensor,
    final_score: float,
    timings: dict[str, float] | None = None,
    repair: RepairResult | None = None,
) -> CompressionReport:
    """Measure both models on ``example_input`` and describe what changed per layer."""
    before, after = measure_cost(model, example_input), measure_cost(compressed, example_input)
    rows = []
    for name, layer in scores.layers.items():
        choice = selection.choices.get(name)
        if choice is None:
            rows.append(LayerReport(name, 1.0, None, layer.info.cost, layer.info.cost))
        else:
            after_cost = next(
                e.cost for e in layer.entries if e.rank == choice.rank and e.scheme == choice.scheme
            )
            rows.append(
                LayerReport(
                    name, choice.ratio, choice.rank, layer.info.cost, after_cost, choice.scheme
                )
            )
    return CompressionReport(
        scheme=selection.scheme,
        solver=selection.solver,
        metric=selection.metric,
        target=selection.target,
        achieved_ratio=after.get(selection.metric) / before.get(selection.metric),
        predicted_ratio=selection.predicted_ratio,
        model_before=before,
        model_after=after,
        baseline_score=scores.baseline,
        final_score=final_score,
        layers=rows,
        skipped=dict(scores.skipped),
        timings=dict(timings or {}),
        selection=selection,
        predicted_score=predicted_score(scores, selection),
        repair=repair,
    )


def compress(
    model: nn.Module,
    evaluator: Evaluator,
    *,
    target: float,
    scheme: str | Scheme = "spatial_svd",
    cost: CostMetric = "mac",
    candidates: int | Sequence[float] | None = None,
    example_input: torch.Tensor | None = None,
    input_shape: Sequence[int] | None = None,
    ignore: Iterable[str] = (),
    multiplicity: int = 1,
    scores_path: str | os.PathLike[str] | None = None,
    finetune: FinetuneCallback | None = None,
    progress: bool = True,
    solver: str | Solver = "greedy",
    max_drop: float | MaxDrop | None = None,
    monotone: bool = False,
) -> tuple[nn.Module, CompressionReport]:
    """Compress ``model`` to keep ``target`` of its MACs (or parameters) with the best score.

    Builds (or loads and completes) the eval-score dictionary, selects per-layer ratios,
    builds the compressed model and evaluates it once. ``model`` is not modified. The
    selection's cost lands within 1% of the target where the candidates allow; the report
    gives the dictionary's predicted score next to the measured one.

    Args:
        model: the trained model.
        evaluator: ``evaluator(model) -> float`` on held-out data, higher is better.
        target: fraction of the model's cost to keep, in (0, 1).
        scheme: ``"spatial_svd"`` or ``"weight_svd"`` (see ``available_schemes()``).
        cost: ``"mac"`` or ``"memory"`` (parameter count).
        candidates: number of evenly spaced candidate ratios (default 10) or a list.
        example_input: a tensor the model accepts; or give ``input_shape``.
        input_shape: shape of a zero input, batch dimension included.
        ignore: names of modules (and their children) never to compress.
        multiplicity: ranks are rounded down to a multiple of this (e.g. 8).
        scores_path: JSON file for the dictionary: reused, resumed, written as layers finish.
        finetune: ``finetune(model, layer_name)`` called after each layer is compressed.
        progress: show progress bars.
        solver: ``"greedy"`` or ``"knapsack"`` (see ``available_solvers()``).
        max_drop: if given, the largest allowed fall of the score below the baseline: a
            float (absolute, e.g. 0.02 = two accuracy points) or ``MaxDrop(0.02,
            relative=True)`` (2% of the baseline). When the combined model falls further,
            the selection is repaired (:func:`~greedy_compress.selection.repair.repair_selection`,
            evaluations without fine-tuning) and the report logs each step.
        monotone: solve on monotone fits of the layers' score curves (noisy dictionaries).

    Returns:
        The compressed model and a :class:`CompressionReport`.

    Example:
        >>> from evaluators import TopKAccuracy
        >>> small, report = compress(model, TopKAccuracy(val_loader), target=0.5,
        ...                          input_shape=(1, 3, 32, 32))  # doctest: +SKIP
        >>> print(report)                                          # doctest: +SKIP
    """
    # Check what is cheap to check before the expensive dictionary.
    target = check_open_unit(target, "target", "compress")
    scheme = get_scheme(scheme, "compress")
    solver = get_solver(solver, "compress")
    limit = check_max_drop(max_drop, "compress")
    if not isinstance(monotone, bool):
        raise bad_parameter("monotone", "compress", "True or False", monotone)
    example = make_example_input(example_input, input_shape, "compress", like=model)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    scores = build_eval_scores(
        model,
        evaluator,
        scheme=scheme,
        cost=cost,
        candidates=candidates,
        example_input=example,
        ignore=ignore,
        multiplicity=multiplicity,
        scores_path=scores_path,
        progress=progress,
    )
    timings["dictionary"] = time.perf_counter() - start

    start = time.perf_counter()
    # = solver.solve() for schemes whose layers are independent (SVD, decompositions)
    selection = solve_exact(scores, scheme, solver, target=target, monotone=monotone)
    timings["selection"] = time.perf_counter() - start

    repair = None
    if limit is not None:
        # The combined check, then repair; both on models without fine-tuning, which is
        # what the dictionary's single-layer scores describe.
        start = time.perf_counter()
        check = run_evaluator(
            evaluator, apply_selection(model, selection, scheme=scheme, example_input=example)
        )
        before_repair = selection
        selection, repair = repair_selection(
            model,
            evaluator,
            scores,
            selection,
            max_drop=limit,
            scheme=scheme,
            score=check,
            progress=progress,
            example_input=example,
        )
        exact_cost = getattr(scheme, "selection_cost", None)
        if exact_cost is not None and selection != before_repair:
            ranks = {name: choice.rank for name, choice in selection.choices.items()}
            kept = exact_cost(ranks).get(selection.metric) / scores.model_cost.get(selection.metric)
            if kept > target:  # repair moves add costs up; pruned layers compound
                selection = before_repair
                repair = dataclasses.replace(
                    repair,
                    final_score=check,
                    success=False,
                    message=repair.message + " Not used: with pruned layers compounding, the "
                    f"repaired selection keeps {kept:.4f} of the cost, over the target.",
                )
        timings["repair"] = time.perf_counter() - start

    start = time.perf_counter()
    compressed = apply_selection(
        model, selection, scheme=scheme, finetune=finetune, example_input=example
    )
    timings["apply"] = time.perf_counter() - start

    if repair is not None and finetune is None:
        final_score = repair.final_score  # this very model was evaluated by the repair
    else:
        start = time.perf_counter()
        final_score = run_evaluator(evaluator, compressed)
        timings["final evaluation"] = time.perf_counter() - start

    report = build_report(
        model,
        compressed,
        scores=scores,
        selection=selection,
        example_input=example,
        final_score=final_score,
        timings=timings,
        repair=repair,
    )
    return compressed, report
