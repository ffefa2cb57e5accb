"""One-call compression, and the selection step it shares with every other entry point."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import torch
from torch import nn
from typing_extensions import Unpack

from greedy_compress._util.constraints import BOOLEAN, bad_parameter, check, check_open_unit
from greedy_compress.apply import FinetuneCallback, apply_selection
from greedy_compress.dictionary import (
    BuildOptions,
    BuildSettings,
    EvalScores,
    Evaluator,
    build_eval_scores,
    run_evaluator,
)
from greedy_compress.dictionary.plan import plan_dictionary
from greedy_compress.dictionary.sharing import check_scores_path
from greedy_compress.model.cost import CostMetric
from greedy_compress.report import CompressionReport, build_report
from greedy_compress.schemes import Scheme, get_scheme
from greedy_compress.selection import (
    LatencyCheck,
    MaxDrop,
    Selection,
    Solver,
    asked_target,
    check_latency,
    check_max_drop,
    get_solver,
    meet_latency,
    repair_selection,
)

__all__ = ["compress", "select"]


def select(
    scores: EvalScores,
    *,
    target: float,
    solver: str | Solver = "greedy",
    cost: CostMetric | None = None,
    monotone: bool = False,
) -> Selection:
    """Choose per-layer ranks from a dictionary so the model keeps ``target`` of its cost.

    Cheap and pure: call it for as many targets and solvers as you like. The cost lands
    within 1% of the target where the candidates allow (``details["budget_note"]`` says why
    not otherwise), exactly also where pruned layers compound; ``monotone=True`` solves on
    monotone fits of the layers' score curves.

    Example:
        >>> [round(select(scores, target=t).predicted_ratio, 2) for t in (0.7, 0.5)]
        [0.7, 0.5]
    """
    return get_solver(solver, "select").solve(scores, target=target, cost=cost, monotone=monotone)


def compress(
    model: nn.Module,
    evaluator: Evaluator,
    *,
    target: float,
    scheme: str | Scheme = "spatial_svd",
    solver: str | Solver = "greedy",
    scores_path: str | os.PathLike[str] | None = None,
    finetune: FinetuneCallback | None = None,
    max_drop: float | MaxDrop | None = None,
    monotone: bool = False,
    measure_latency: bool = False,
    settings: BuildSettings | None = None,
    **options: Unpack[BuildOptions],
) -> tuple[nn.Module, CompressionReport]:
    """Compress ``model`` to keep ``target`` of its MACs, parameters or latency with the best
    score.

    Builds (or loads and completes) the eval-score dictionary, selects per-layer ratios,
    builds the compressed model and evaluates it once. ``model`` is not modified. The
    selection's cost lands within 1% of the target where the candidates allow; the report
    gives the dictionary's predicted score next to the measured one. With
    ``cost="latency"`` the combined model is also timed next to the original, and the
    selection repaired while it misses the target
    (:func:`~greedy_compress.selection.meet_latency`).

    Args:
        model: the trained model.
        evaluator: ``evaluator(model) -> float`` on held-out data, higher is better.
        target: fraction of the model's cost to keep, in (0, 1).
        scheme: a scheme name or instance (see ``available_schemes()``).
        solver: ``"greedy"`` or ``"knapsack"`` (see ``available_solvers()``).
        scores_path: JSON file for the dictionary: reused, resumed, written as layers finish.
        finetune: ``finetune(model, layer_name)`` called after each layer is compressed.
        max_drop: if given, the largest allowed fall of the score below the baseline: a
            float (absolute, e.g. 0.02 = two accuracy points) or ``MaxDrop(0.02,
            relative=True)`` (2% of the baseline). When the combined model falls further,
            the selection is repaired (:func:`~greedy_compress.selection.repair_selection`,
            evaluations without fine-tuning) and the report logs each step.
        monotone: solve on monotone fits of the layers' score curves (noisy dictionaries).
        measure_latency: also time the compressed model next to the original for a MAC or
            memory target (always done for a latency target); the report gives the ratio.
        settings: a :class:`~greedy_compress.BuildSettings`; keyword ``options`` (its
            fields: ``cost``, ``candidates``, ``multiplicity``, ``ignore``, ``config_list``
            (the layers compressed and their ratio bounds, ``docs/config-list.md``),
            ``example_input`` or ``input_shape``, ``progress``, ``fast``, ``workers``,
            ``distributed``) override it.

    Returns:
        The compressed model and a :class:`~greedy_compress.CompressionReport`.

    Example:
        >>> small, report = compress(model, evaluator, target=0.5, input_shape=(1, 1, 8, 8),
        ...                          progress=False)
        >>> abs(report.achieved_ratio - 0.5) <= 0.01
        True
    """
    owner = "compress"
    # Check what is cheap to check before the expensive dictionary.
    config = BuildSettings.resolve(settings, dict(options), owner)
    target = check_open_unit(target, "target", owner)
    scheme = get_scheme(scheme, owner)
    solver = get_solver(solver, owner)
    limit = check_max_drop(max_drop, owner)
    monotone = check(monotone, BOOLEAN, "monotone", owner)
    measure_latency = check(measure_latency, BOOLEAN, "measure_latency", owner)
    if finetune is not None and not callable(finetune):
        raise bad_parameter("finetune", owner, "None or a callable (model, layer name)", finetune)
    if not callable(evaluator):
        raise bad_parameter("evaluator", owner, "a callable model -> float", evaluator)
    check_scores_path(scores_path, owner)
    example = config.example_for(model, owner)
    config = config.replace(owner=owner, example_input=example, input_shape=None)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    # Profiling and the candidates' costs are cheap: an unreachable target fails here,
    # before the expensive dictionary (a latency target once latency is measured, before
    # any layer is scored).
    plan = plan_dictionary(model, scheme=scheme, settings=config, owner=owner)
    if config.cost != "latency":
        plan.check_reachable(target)
    scores = build_eval_scores(
        model, evaluator, scores_path=scores_path, plan=plan, latency_target=target
    )
    scheme = plan.scheme  # prepared, rounding as the dictionary does
    timings["dictionary"] = time.perf_counter() - start

    start = time.perf_counter()
    selection = solver.solve(scores, target=target, monotone=monotone)
    timings["selection"] = time.perf_counter() - start

    by_latency, latency = selection.cost_metric == "latency", None
    if by_latency:  # the combined model timed; re-solved for less while it misses
        start = time.perf_counter()
        selection, latency = meet_latency(
            model,
            scores,
            selection,
            solve=lambda asked: solver.solve(scores, target=asked, monotone=monotone),
            meter=config.latency_meter,
            example=example,
            scheme=scheme,
        )
        timings["latency check"] = time.perf_counter() - start
    timed = selection

    repair = None
    if limit is not None:
        # The combined check, then repair; both on models without fine-tuning, which is
        # what the dictionary's single-layer scores describe.
        start = time.perf_counter()
        check_score = run_evaluator(
            evaluator, apply_selection(model, selection, scheme=scheme, example_input=example)
        )
        # A latency repair asked the solver for less: the score repair keeps that budget.
        selection, repair = repair_selection(
            model,
            evaluator,
            scores,
            dataclasses.replace(selection, target=asked_target(selection)),
            max_drop=limit,
            scheme=scheme,
            score=check_score,
            progress=config.progress,
            example_input=example,
        )
        selection = dataclasses.replace(selection, target=target)
        timings["repair"] = time.perf_counter() - start

    start = time.perf_counter()
    record: dict[str, Any] = {}
    compressed = apply_selection(
        model, selection, scheme=scheme, finetune=finetune, example_input=example, record=record
    )
    selection = selection.with_replay(record)  # pruned layers' kept channels: no data to rebuild
    timings["apply"] = time.perf_counter() - start

    if repair is not None and finetune is None:
        final_score = repair.final_score  # this very model was evaluated by the repair
    else:
        start = time.perf_counter()
        final_score = run_evaluator(evaluator, compressed)
        timings["final evaluation"] = time.perf_counter() - start

    if (by_latency or measure_latency) and (latency is None or selection.choices != timed.choices):
        start = time.perf_counter()
        latency = _timed(model, compressed, selection, latency, config, example)
        timings["latency"] = time.perf_counter() - start

    report = build_report(
        model,
        compressed,
        scores=scores,
        selection=selection,
        example_input=example,
        final_score=final_score,
        timings=timings,
        repair=repair,
        latency=latency,
    )
    return compressed, report


def _timed(
    model: nn.Module,
    compressed: nn.Module,
    selection: Selection,
    earlier: LatencyCheck | None,
    config: BuildSettings,
    example: torch.Tensor,
) -> LatencyCheck:
    """The final model timed next to the original (after a score repair changed it, or on
    request for a MAC or memory target)."""
    by_latency = selection.cost_metric == "latency"
    return check_latency(
        model,
        compressed,
        example=example,
        meter=config.latency_meter,
        target=selection.target if by_latency else None,
        predicted_ratio=selection.predicted_ratio if by_latency else None,
        rounds=None if earlier is None else earlier.rounds,
    )
