"""Build the eval-score dictionary: score the model with each layer compressed alone.

The compressed layer is swapped into the model in place, evaluated, and the original put
back, so the model is never copied. Each layer's factorization is computed once and
truncated for every candidate; candidates that round to the same rank are scored once. The
dictionary is written atomically after every layer, so an interrupted build resumes there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from greedy_compress._progress import progress_bar
from greedy_compress._validation import bad_parameter, check_positive_int
from greedy_compress.candidates import make_candidates
from greedy_compress.cost import CostMetric, check_metric
from greedy_compress.exceptions import GreedyCompressError, NoCompressibleLayerError
from greedy_compress.fingerprint import make_fingerprint
from greedy_compress.layers import ModelProfile, make_example_input, profile_model
from greedy_compress.schemes import Scheme, get_scheme
from greedy_compress.scores import EvalScores, LayerScores, ScoreEntry
from greedy_compress.swap import swapped

__all__ = ["Evaluator", "build_eval_scores", "run_evaluator"]

Evaluator = Callable[[nn.Module], float]

_OWNER = "build_eval_scores"


def run_evaluator(evaluator: Evaluator, model: nn.Module) -> float:
    """Call ``evaluator(model)`` and return its score as a float (NaN if not finite).

    Raises:
        GreedyCompressError: the evaluator returned something that is not a number.
    """
    value = evaluator(model)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy scalars and the like
        except (TypeError, ValueError):
            raise GreedyCompressError(
                f"The evaluator must return a number (higher is better). Got {value!r} instead."
            ) from None
    return float(value)


def _plan(
    profile: ModelProfile, scheme: Scheme, metric: CostMetric
) -> tuple[list[str], dict[str, str]]:
    planned, skipped = [], dict(profile.unusable)
    for name, layer in profile.layers.items():
        reason = scheme.unsupported_reason(layer, metric)
        if reason is None:
            planned.append(name)
        else:
            skipped[name] = reason
    if not planned:
        details = "; ".join(f"{n}: {r}" for n, r in skipped.items()) or "no Conv1d/Conv2d/Linear"
        raise NoCompressibleLayerError(
            f"The model has no layer that scheme {scheme.name!r} can compress ({details})."
        )
    return planned, skipped


def _score_layer(
    model: nn.Module,
    name: str,
    profile: ModelProfile,
    scheme: Scheme,
    *,
    evaluator: Evaluator,
    metric: CostMetric,
    multiplicity: int,
    candidates: Sequence[float],
    bar: Any,
) -> LayerScores:
    layer = profile.layers[name]
    factorization = scheme.factorize_in(model, name)
    by_rank: dict[int, float | None] = {}
    entries = []
    for ratio in candidates:
        choice = scheme.candidate(layer, ratio, metric, multiplicity)
        bar.set_postfix_str(f"{name} ratio={ratio:g} rank={choice.rank}", refresh=False)
        if choice.rank not in by_rank:
            with swapped(model, factorization.replacements(name, choice.rank)):
                score = run_evaluator(evaluator, model)
            by_rank[choice.rank] = score if math.isfinite(score) else None
        bar.update(1)
        entries.append(
            ScoreEntry(
                ratio=ratio,
                rank=choice.rank,
                real_ratio=choice.real_ratio,
                cost=choice.cost,
                score=by_rank[choice.rank],
            )
        )
    return LayerScores(info=layer, entries=tuple(entries))


def build_eval_scores(
    model: nn.Module,
    evaluator: Evaluator,
    *,
    scheme: str | Scheme = "spatial_svd",
    cost: CostMetric = "mac",
    candidates: int | Sequence[float] | None = None,
    example_input: torch.Tensor | None = None,
    input_shape: Sequence[int] | None = None,
    ignore: Iterable[str] = (),
    multiplicity: int = 1,
    scores_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> EvalScores:
    """Score ``model`` with each compressible layer compressed alone at each candidate ratio.

    With ``scores_path``: an existing file made for the same model and settings is loaded
    and completed (only missing layers are evaluated); the file is rewritten atomically
    after every layer, so an interrupted build loses at most the layer in progress.

    Args:
        model: the trained model; it is modified only temporarily and restored.
        evaluator: ``evaluator(model) -> float``, higher is better.
        scheme: a scheme name (see :func:`greedy_compress.schemes.available_schemes`).
        cost: ``"mac"`` or ``"memory"``; a ratio is the fraction of this cost kept.
        candidates: number of evenly spaced ratios (default 10) or an explicit list.
        example_input: a tensor the model accepts (or give ``input_shape``).
        input_shape: shape of a zero input, batch dimension included.
        ignore: names of modules (and their children) to leave alone.
        multiplicity: ranks are rounded down to a multiple of this.
        scores_path: JSON file to save to, resume from and reuse.
        progress: show a progress bar.

    Returns:
        The complete dictionary.

    Example:
        >>> scores = build_eval_scores(model, evaluator, input_shape=(1, 1, 8, 8))  # doctest: +SKIP
    """
    scheme = get_scheme(scheme, _OWNER)
    metric = check_metric(cost, _OWNER)
    multiplicity = check_positive_int(multiplicity, "multiplicity", _OWNER)
    ratios = make_candidates(candidates, _OWNER)
    example = make_example_input(example_input, input_shape, _OWNER, like=model)
    if not callable(evaluator):
        raise bad_parameter("evaluator", _OWNER, "a callable model -> float", evaluator)

    profile = profile_model(model, example, ignore=ignore)
    profile = scheme.prepare(model, example_input=example, profile=profile) or profile
    planned, skipped = _plan(profile, scheme, metric)
    fingerprint = make_fingerprint(
        model,
        scheme=scheme.name,
        metric=metric,
        multiplicity=multiplicity,
        candidates=ratios,
        evaluator=evaluator,
        input_shape=example.shape,
    )
    if scheme.settings():  # e.g. a pruning scheme's data and sample count
        fingerprint["scheme_settings"] = scheme.settings()
    # The fingerprint does not cover `ignore`, which only changes which layers are planned.
    scores = None
    if scores_path is not None and Path(scores_path).exists():
        scores = EvalScores.load(scores_path, expect=fingerprint)
        if list(scores.planned) != planned:
            scores = EvalScores(
                fingerprint=fingerprint,
                baseline=scores.baseline,
                model_cost=scores.model_cost,
                planned=tuple(planned),
                layers={n: s for n, s in scores.layers.items() if n in planned},
                skipped=skipped,
            )
    if scores is None:
        baseline = run_evaluator(evaluator, model)
        if not math.isfinite(baseline):
            raise GreedyCompressError(
                f"The evaluator returned {baseline!r} for the uncompressed model; "
                "the baseline score must be a finite number."
            )
        scores = EvalScores(
            fingerprint=fingerprint,
            baseline=baseline,
            model_cost=profile.model_cost,
            planned=tuple(planned),
            skipped=skipped,
        )
        if scores_path is not None:
            scores.save(scores_path)

    missing = scores.missing
    with progress_bar(
        total=len(missing) * len(ratios), desc=f"scoring {scheme.name}", enabled=progress
    ) as bar:
        for name in missing:
            layer_scores = _score_layer(
                model,
                name,
                profile,
                scheme,
                evaluator=evaluator,
                metric=metric,
                multiplicity=multiplicity,
                candidates=ratios,
                bar=bar,
            )
            scores = scores.with_layer(name, layer_scores)
            if scores_path is not None:
                scores.save(scores_path)
    return scores
