"""Search per-layer ratios with Optuna, scoring the real compressed model in every trial.

The dictionary's solvers predict a model's score by adding up single-layer score changes,
which misses how compressed layers interact. This strategy treats each layer's candidate
(the dictionary's options, "keep" included) as a categorical trial parameter, builds the model
each trial proposes and evaluates it, so what is maximized is the real score. The model's
cost is known exactly before evaluating (pruned layers' compounding included): a trial over
budget is marked infeasible (an Optuna constraint) and returns ``-inf`` without being
evaluated, and ``n_trials`` counts evaluated models only.

The study starts from the solvers' answers (greedy and knapsack by default, enqueued as its
first trials), so its best is never worse than theirs. Its storage is a parameter: in memory
by default; an RDB URL (``"sqlite:///study.db"``) or a journal file path resumes a study and
lets several worker processes search one study together.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from torch import nn

from evaluators import BatchEvaluator
from greedy_compress._util.constraints import (
    Interval,
    NoneOr,
    bad_parameter,
    check,
    check_open_unit,
    check_positive_int,
)
from greedy_compress._util.progress import progress_bar
from greedy_compress.dictionary import EvalScores, Evaluator, run_evaluator
from greedy_compress.dictionary.identity import batch_digest
from greedy_compress.errors import GreedyCompressError, ScoresFormatError
from greedy_compress.model.cost import CostMetric, check_metric
from greedy_compress.model.hashing import callable_identity
from greedy_compress.model.swap import swapped
from greedy_compress.schemes import Factorization, Scheme, build_compressed, get_scheme
from greedy_compress.selection._optuna_study import (
    HAS_SET_CONSTRAINT,
    default_study_name,
    make_sampler,
    open_storage,
    open_study,
    study_identity,
)
from greedy_compress.selection.exact_cost import choices_cost
from greedy_compress.selection.options import LayerOption, layer_options
from greedy_compress.selection.selection import (
    LayerChoice,
    Selection,
    build_details,
    layer_schemes,
)
from greedy_compress.selection.solvers import GreedySolver, Solver, get_solver

__all__ = ["SearchResult", "optuna_search"]

_OWNER = "optuna_search"
_KEEP = "keep"


@dataclass
class SearchResult:
    """What :func:`optuna_search` found.

    Attributes:
        selection: the best feasible trial as a :class:`Selection` (solver ``"optuna"``).
        score: that selection's real (evaluated) score.
        study: the Optuna study, for its own plots and analysis.
        summary: plain data: trials run and evaluated, the seeds' real scores, timing.
    """

    selection: Selection
    score: float
    study: optuna.Study
    summary: dict[str, Any] = field(default_factory=dict)


def _labels(options: Sequence[LayerOption], mixed: bool) -> dict[str, LayerOption]:
    """Readable, stable categorical labels for one layer's options."""
    labels: dict[str, LayerOption] = {}
    for option in options:
        if option.rank is None:
            label = _KEEP
        else:
            label = f"{option.kept_ratio:.4f}"
            if mixed:
                label = f"{option.scheme}:{label}"
            if label in labels:  # two ranks rounding to one ratio: tell them apart
                label = f"{label}@{option.rank}"
        labels[label] = option
    return labels


class _TrialModels:
    """Builds and scores the model a trial proposes, never changing the user's model."""

    def __init__(
        self,
        model: nn.Module,
        evaluator: Evaluator,
        scores: EvalScores,
        scheme: Scheme | None,
        example_input: torch.Tensor | None,
    ) -> None:
        self.model, self.evaluator, self.scores = model, evaluator, scores
        self.override, self.example_input = scheme, example_input
        self.factorizations: dict[tuple[str, str], Factorization] = {}

    def score(self, selection: Selection) -> float:
        schemes = layer_schemes(
            selection.choices,
            selection.scheme,
            scheme=self.override,
            owner=_OWNER,
            multiplicity=int(selection.details.get("multiplicity", 1)),
        )
        if any(s.costs_interact for s in schemes.values()):
            # The scheme edits other modules too (pruning shrinks the neighbours), so
            # layers interact: build the model as apply_selection does.
            built = build_compressed(
                self.model,
                {name: (schemes[name], c.rank) for name, c in selection.choices.items()},
                example_input=self.example_input,
                details=selection.details,
            )
            return run_evaluator(self.evaluator, built)
        replacements: dict[str, nn.Module] = {}
        for name, choice in selection.choices.items():
            key = (schemes[name].name, name)
            if key not in self.factorizations:
                self.factorizations[key] = schemes[name].factorize_in(self.model, name)
            replacements.update(self.factorizations[key].replacements(name, choice.rank))
        # Factorizations from the original layers equal apply_selection's for schemes that
        # replace only the layer itself, so swapping in is the same model, without a copy.
        with swapped(self.model, replacements):
            return run_evaluator(self.evaluator, self.model)


def optuna_search(
    model: nn.Module,
    evaluator: Evaluator,
    scores: EvalScores,
    *,
    target: float,
    n_trials: int = 50,
    timeout: float | None = None,
    storage: str | os.PathLike[str] | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    sampler: str | optuna.samplers.BaseSampler = "tpe",
    seed: int | None = 0,
    start_from: Sequence[str | Solver] = ("greedy", "knapsack"),
    cost: CostMetric | None = None,
    scheme: str | Scheme | None = None,
    example_input: torch.Tensor | None = None,
    progress: bool = True,
) -> SearchResult:
    """Find per-layer ratios that meet ``target`` with the best *real* score, using Optuna.

    Args:
        model: the trained model (swapped into temporarily; always restored).
        evaluator: ``evaluator(model) -> float``, higher is better.
        scores: the model's complete dictionary (single-scheme or mixed); its options are
            the search space.
        target: fraction of the model's cost to keep, in (0, 1).
        n_trials: models to evaluate in this call (over-budget trials are not evaluated and
            not counted; at most ``50 * n_trials`` trials are drawn in all).
        timeout: stop after this many seconds (None: no time limit).
        storage: None (in memory), an RDB URL (``"sqlite:///study.db"``,
            ``"postgresql://..."``) or a journal file path: resumes the study and shares it
            between worker processes.
        study_name: the study to create or resume (default: derived from the dictionary's
            fingerprint and the target, so workers with the same inputs share one).
        sampler: ``"tpe"`` (default), ``"nsga2"``, ``"random"``, or an Optuna sampler.
        seed: the sampler's seed (None: random).
        start_from: solvers whose answers are the first trials (never worse than these).
        cost: cost metric (default: the dictionary's).
        scheme: a scheme instance for dictionaries made with an unregistered scheme, or a
            configured one (``ChannelPruning(data=...)`` for a channel-pruning dictionary).
        example_input: a tensor the model accepts (pruning schemes trace the model with it;
            default: zeros of the dictionary's input shape).
        progress: show a progress bar with the best score so far.

    Returns:
        A :class:`SearchResult`; ``result.selection`` works with :func:`apply_selection`.

    Example:
        >>> result = optuna_search(model, evaluator, scores, target=0.5, n_trials=3,
        ...                        progress=False)
        >>> result.score >= max(result.summary["seed_scores"].values())
        True
        >>> small = apply_selection(model, result.selection)
    """
    target = check_open_unit(target, "target", _OWNER)
    n_trials = check_positive_int(n_trials, "n_trials", _OWNER)
    timeout = check(timeout, NoneOr(Interval(float, 0, None, closed="neither")), "timeout", _OWNER)
    if not isinstance(scores, EvalScores):
        raise bad_parameter("scores", _OWNER, "an EvalScores dictionary", type(scores).__name__)
    if not callable(evaluator):
        raise bad_parameter("evaluator", _OWNER, "a callable model -> float", evaluator)
    metric = scores.cost_metric if cost is None else check_metric(cost, _OWNER)
    override = None if scheme is None else get_scheme(scheme, _OWNER)
    if example_input is None:
        example_input = scores.example_input(like=model)
    if isinstance(start_from, (str, Solver)):
        start_from = [start_from]
    seeds = [get_solver(s, _OWNER) for s in start_from]
    sampler = make_sampler(sampler, seed)
    opened = open_storage(storage)
    if not scores.is_complete:
        raise ScoresFormatError(
            f"The dictionary is incomplete (missing {', '.join(scores.missing)}); "
            "finish building it before searching."
        )
    # Raises TargetUnreachableError (with the reachable ratio) before any evaluation.
    seed_selections = {s.name: s.solve(scores, target=target, cost=metric) for s in seeds}
    if not seed_selections:
        GreedySolver().solve(scores, target=target, cost=metric)

    options = layer_options(scores, metric)
    mixed = any(o.scheme is not None for opts in options.values() for o in opts)
    labels = {name: _labels(opts, mixed) for name, opts in options.items()}
    total = scores.model_cost.get(metric)
    budget = target * total

    def choices_of(params: Mapping[str, str]) -> dict[str, LayerChoice]:
        chosen = {name: labels[name][params[name]] for name in labels}
        return {
            name: LayerChoice(o.kept_ratio, o.rank, o.score, o.scheme)
            for name, o in chosen.items()
            if o.rank is not None
        }

    def cost_of(params: Mapping[str, str]) -> int:
        # Exact, also where pruned layers compound.
        return choices_cost(scores, choices_of(params)).get(metric)

    def to_selection(params: Mapping[str, str], details: dict[str, Any]) -> Selection:
        details = {**details, **build_details(scores)}
        return Selection(
            scheme=scores.scheme,
            solver="optuna",
            cost_metric=metric,
            target=target,
            predicted_ratio=cost_of(params) / total,
            choices=choices_of(params),
            details=details,
        )

    def params_of(selection: Selection) -> dict[str, str]:
        params = {}
        for name, layer_labels in labels.items():
            choice = selection.choices.get(name)
            params[name] = next(
                label
                for label, o in layer_labels.items()
                if (choice is None and o.rank is None)
                or (choice is not None and o.rank == choice.rank and o.scheme == choice.scheme)
            )
        return params

    evaluator_data = (
        batch_digest(evaluator.batches(model)) if isinstance(evaluator, BatchEvaluator) else None
    )
    identity = study_identity(
        scores, f"{callable_identity(evaluator)}|{evaluator_data}", target, metric
    )
    name = study_name or default_study_name(identity)
    seed_params = {solver: params_of(sel) for solver, sel in seed_selections.items()}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our bar replaces its per-trial lines
    try:
        study = open_study(storage=opened, sampler=sampler, name=name, identity=identity)
        for params in seed_params.values():
            study.enqueue_trial(params, skip_if_exists=True)
        result = _run(
            study,
            labels=labels,
            to_selection=to_selection,
            cost_of=cost_of,
            budget=budget,
            total=total,
            models=_TrialModels(model, evaluator, scores, override, example_input),
            n_trials=n_trials,
            timeout=timeout,
            progress=progress,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)

    evaluated, drawn, elapsed = result
    best = _best_feasible(study)
    if best is None or best.value is None:  # only possible if every evaluation failed
        raise GreedyCompressError(
            "The search evaluated no feasible model; give it more trials or time."
        )
    seed_scores = {}
    for solver_name, params in seed_params.items():
        seen = next(
            (t for t in study.trials if t.user_attrs.get("evaluated") and t.params == params),
            None,
        )
        if seen is not None:
            seed_scores[solver_name] = seen.value
    summary = {
        "study_name": name,
        "best_trial": best.number,
        "best_score": best.value,
        "baseline": scores.baseline,
        "seed_scores": seed_scores,
        "trials_in_study": len(study.trials),
        "trials_this_call": drawn,
        "evaluated_this_call": evaluated,
        "seconds": elapsed,
    }
    selection = to_selection(
        best.params,
        {
            "score": best.value,
            "trial": best.number,
            "study_name": name,
            "seed_scores": seed_scores,
        },
    )
    return SearchResult(selection=selection, score=float(best.value), study=study, summary=summary)


def _run(
    study: optuna.Study,
    *,
    labels: Mapping[str, Mapping[str, LayerOption]],
    to_selection: Callable[[Mapping[str, str], dict[str, Any]], Selection],
    cost_of: Callable[[Mapping[str, str]], int],
    budget: float,
    total: int,
    models: _TrialModels,
    n_trials: int,
    timeout: float | None,
    progress: bool,
) -> tuple[int, int, float]:
    """Optimize until ``n_trials`` models were evaluated (or the time is up)."""

    def objective(trial: optuna.Trial) -> float:
        params = {n: trial.suggest_categorical(n, list(ls)) for n, ls in labels.items()}
        selection = to_selection(params, {})
        # Integer cost against the budget, exactly as the solvers compare them.
        over = max(0.0, (cost_of(params) - budget) / total)
        trial.set_user_attr("ratio", selection.predicted_ratio)
        trial.set_user_attr("over_budget", over)
        if HAS_SET_CONSTRAINT:
            trial.set_constraint("budget", over)
        if over > 0:
            return float("-inf")  # infeasible: not worth an evaluation
        trial.set_user_attr("evaluated", True)
        score = models.score(selection)
        # A broken model (NaN score) must never win; -inf keeps the trial comparable.
        return score if math.isfinite(score) else float("-inf")

    evaluated, drawn, start = 0, 0, time.perf_counter()
    with progress_bar(total=n_trials, desc="optuna search", enabled=progress, unit="trial") as bar:

        def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            nonlocal evaluated, drawn
            drawn += 1
            if trial.user_attrs.get("evaluated"):
                evaluated += 1
                bar.update(1)
                best = _best_feasible(study)
                if best is not None:
                    bar.set_postfix_str(f"best {best.value:.4f}", refresh=False)
            if evaluated >= n_trials or drawn >= 50 * n_trials:
                study.stop()

        study.optimize(objective, timeout=timeout, callbacks=[callback])
    elapsed = time.perf_counter() - start

    return evaluated, drawn, elapsed


def _best_feasible(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The evaluated, within-budget trial with the highest score (earliest on ties)."""
    best: tuple[float, optuna.trial.FrozenTrial] | None = None
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        value = trial.value
        if not trial.user_attrs.get("evaluated") or value is None or not math.isfinite(value):
            continue
        if best is None or value > best[0]:
            best = (value, trial)
    return None if best is None else best[1]
