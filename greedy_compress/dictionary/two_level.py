"""A two-level eval-score dictionary: a proxy for every candidate, the evaluator only near
each layer's knee.

Level one needs no model run. From one calibration pass
(:class:`~greedy_compress.model.statistics.Calibration`), every candidate of every layer gets
its *relative layer-output error* on the calibration data, ``tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)``
with ``H`` the second moment of the layer's inputs (for the whitened SVD the tail sum of
its squared singular values; for other schemes read off the compressed layer,
:meth:`~greedy_compress.schemes.Factorization.output_error`). Within a layer the proxy ranks
the candidates; it cannot say how much the user's metric cares about that layer.

Level two asks the evaluator, but only ``probes`` times per layer, around the knee of the
layer's proxy curve (where further compression starts to cost output error fast): first the
knee, then outward, toward more compression while the measured loss stays small and toward
less while it is large. Each unmeasured score is then predicted from the layer's measured
ones by interpolating the score loss in the proxy (through no loss at no error, monotone,
linear beyond the last point, never below the dictionary's worst measured score).

Every entry says whether it was measured (``measured``) and carries its ``proxy``; the
fingerprint records the two-level settings. The exact build
(:func:`~greedy_compress.dictionary.build_eval_scores`) given the same ``scores_path`` keeps
the measured scores and evaluates the rest. Check selections end to end with
:func:`~greedy_compress.selection.check_end_to_end`.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import nn
from typing_extensions import Unpack

from greedy_compress._util.constraints import bad_parameter, check_positive_int
from greedy_compress._util.progress import progress_bar
from greedy_compress.dictionary.evaluator import Evaluator
from greedy_compress.dictionary.identity import evaluate_baseline
from greedy_compress.dictionary.plan import plan_dictionary
from greedy_compress.dictionary.scores import EvalScores, LayerScores, ScoreEntry
from greedy_compress.dictionary.scoring import LayerScorer
from greedy_compress.dictionary.settings import BuildOptions, BuildSettings
from greedy_compress.dictionary.sharing import check_scores_path, check_writable
from greedy_compress.dictionary.suffix import default_workers
from greedy_compress.errors import ScoresMismatchError
from greedy_compress.model.statistics import Calibration
from greedy_compress.schemes import (
    Candidate,
    DataAwareScheme,
    Factorization,
    Scheme,
    get_scheme,
)

__all__ = ["DEFAULT_PROBES", "build_two_level_scores", "knee_index", "predict_scores"]

_OWNER = "build_two_level_scores"
DEFAULT_PROBES = 2


def knee_index(ratios: Sequence[float], errors: Sequence[float]) -> int:
    """The knee of a layer's proxy curve: the candidate furthest below the chord from the
    most compressed one to the uncompressed layer (no error at ratio 1), scaled to a unit
    square (Kneedle).

    ``ratios`` ascend; ``errors`` are the candidates' relative output errors.

    Example:
        >>> knee_index([0.1, 0.2, 0.3, 0.5, 0.7, 0.9], [0.9, 0.5, 0.2, 0.08, 0.03, 0.01])
        2
    """
    top = max(errors)
    if top <= 0:
        return len(ratios) // 2
    start = ratios[0]
    span = max(1.0 - start, 1e-12)
    gaps = []
    for ratio, error in zip(ratios, errors, strict=True):
        x = (ratio - start) / span
        gaps.append((1.0 - x) - error / top)  # the chord falls from 1 to 0 over x in [0, 1]
    return max(range(len(gaps)), key=lambda i: (gaps[i], -i))


def predict_scores(
    errors: Mapping[int, float],
    measured: Mapping[int, float | None],
    *,
    baseline: float,
    floor: float,
) -> dict[int, float]:
    """Scores of a layer's ranks predicted from the measured ones through the proxy.

    The loss ``baseline - score`` is interpolated linearly in the relative output error
    through (0, 0) and the measured points (their losses made non-decreasing in the error),
    extended beyond the last point along the line from the origin or the last segment,
    whichever is steeper, and never below ``floor``. Measured ranks keep their scores.

    Example:
        >>> predict_scores({4: 0.4, 8: 0.2, 12: 0.1}, {8: 0.9}, baseline=1.0, floor=0.0)
        {4: 0.8, 8: 0.9, 12: 0.95}
    """
    points = sorted(
        (errors[rank], max(0.0, baseline - score))
        for rank, score in measured.items()
        if score is not None and math.isfinite(score)
    )
    curve = [(0.0, 0.0)]
    for error, loss in points:
        curve.append((error, max(loss, curve[-1][1])))
    predicted: dict[int, float] = {}
    for rank, error in errors.items():
        if rank in measured and measured[rank] is not None:
            predicted[rank] = float(measured[rank])  # type: ignore[arg-type]
            continue
        if len(curve) == 1:  # nothing usable measured: only the order is known
            loss = error * (baseline - floor)
        elif error >= curve[-1][0]:
            (e0, l0), (e1, l1) = curve[-2], curve[-1]
            slope = max((l1 - l0) / (e1 - e0) if e1 > e0 else 0.0, l1 / e1 if e1 > 0 else 0.0)
            loss = l1 + slope * (error - e1)
        else:
            index = next(i for i in range(1, len(curve)) if error < curve[i][0])
            (e0, l0), (e1, l1) = curve[index - 1], curve[index]
            loss = l0 + (l1 - l0) * (error - e0) / (e1 - e0)
        predicted[rank] = max(floor, baseline - loss)
    return predicted


def _next_probe(
    order: Sequence[int],
    measured: Mapping[int, float | None],
    knee: int,
    *,
    small: float,
    baseline: float,
) -> int | None:
    """The next rank to measure for a layer (``order``: its ranks, most compressed first):
    the knee, then outward from the measured ones. A small loss at the most compressed one
    measured means the layer tolerates more; a large loss at the least compressed one, that
    the loss sets in before the knee."""
    if order[knee] not in measured:
        return order[knee]
    done = [i for i, rank in enumerate(order) if rank in measured]
    low, high = min(done), max(done)

    def loss(index: int) -> float:
        score = measured[order[index]]
        return math.inf if score is None else baseline - score

    if loss(low) <= small and low > 0:
        return order[low - 1]
    if loss(high) > small and high + 1 < len(order):
        return order[high + 1]
    if low > 0:
        return order[low - 1]
    return order[high + 1] if high + 1 < len(order) else None


def _calibration(data: Iterable[Any] | Calibration | None, scheme: Scheme) -> Calibration:
    if isinstance(data, Calibration):
        return data
    if data is not None:
        if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
            raise bad_parameter("data", _OWNER, "input batches or a Calibration", data)
        return Calibration(data)
    if isinstance(scheme, DataAwareScheme) and scheme.calibration is not None:
        return scheme.calibration
    raise bad_parameter(
        "data", _OWNER, "input batches or a Calibration (the proxy needs calibration data)", data
    )


def build_two_level_scores(
    model: nn.Module,
    evaluator: Evaluator,
    *,
    data: Iterable[Any] | Calibration | None = None,
    scheme: str | Scheme = "spatial_svd",
    probes: int = DEFAULT_PROBES,
    scores_path: str | os.PathLike[str] | None = None,
    settings: BuildSettings | None = None,
    **options: Unpack[BuildOptions],
) -> EvalScores:
    """An eval-score dictionary with every candidate predicted from a layer-output proxy and
    ``probes`` candidates per layer measured around the knee (see the module docstring).

    Args:
        model: the trained model; it is modified only temporarily and restored.
        evaluator: ``evaluator(model) -> float``, higher is better.
        data: calibration input batches, or a :class:`~greedy_compress.model.statistics.
            Calibration` (shared with a data-aware scheme, cached); a data-aware scheme's
            own calibration when None.
        scheme: a scheme name or instance.
        probes: candidates measured per layer (the rest are predicted).
        scores_path: JSON file to save to and resume from (measured scores are kept).
        settings: a :class:`BuildSettings`; keyword ``options`` override it.

    Returns:
        The complete dictionary; ``scores.predicted`` counts the predicted entries.

    Example:
        >>> scores = build_two_level_scores(model, evaluator, data=train_loader,
        ...                                 input_shape=(1, 1, 8, 8), progress=False)
        >>> scores.predicted > 0, scores.is_complete
        (True, True)
    """
    config = BuildSettings.resolve(settings, dict(options), _OWNER)
    scheme = get_scheme(scheme, _OWNER)
    if not callable(evaluator):
        raise bad_parameter("evaluator", _OWNER, "a callable model -> float", evaluator)
    probes = check_positive_int(probes, "probes", _OWNER)
    path = check_scores_path(scores_path, _OWNER)
    calibration = _calibration(data, scheme)
    if isinstance(scheme, DataAwareScheme):  # one without data shares the calibration
        scheme = scheme.with_data(calibration)
    calibration.samples  # noqa: B018 - bad calibration data fails before any work
    plan = plan_dictionary(model, scheme=scheme, settings=config, owner=_OWNER)
    scheme, example = plan.scheme, plan.example
    planned, skipped, choices, profile = plan.planned, plan.skipped, plan.candidates, plan.profile
    workers = default_workers(model) if config.workers is None else config.workers
    if path is not None:
        check_writable(path)  # before any evaluation: nothing computed is then lost

    baseline, digest = evaluate_baseline(evaluator, model)
    base = plan.fingerprint(model, evaluator, digest)
    fingerprint = {**base, "two_level": {"probes": probes, **calibration.settings()}}
    known: dict[tuple[str, int], float | None] = {}
    if path is not None and path.exists():
        saved = EvalScores.load(path, expect=base, resuming=True)  # exact files serve too
        plan.check_saved(saved, os.fspath(path))
        if abs(saved.baseline - baseline) > 1e-6 * max(1.0, abs(baseline)):
            raise ScoresMismatchError(
                f"{os.fspath(path)} was made with an evaluator that scored the unchanged model "
                f"{saved.baseline!r}; the evaluator now scores it {baseline!r}. Use another "
                "scores path, or delete the file to rebuild it."
            )
        for name, layer in saved.layers.items():
            known.update({(name, e.rank): e.score for e in layer.entries if e.measured})

    moments = calibration.moments(model)
    factorizations: dict[str, Factorization] = {}
    proxies: dict[str, dict[int, float]] = {}
    orders: dict[str, list[int]] = {}
    exact: list[str] = []  # layers without a proxy: every candidate is measured
    for name in planned:
        factorization = scheme.factorize_in(model, name)
        factorizations[name] = factorization
        order = sorted(
            dict.fromkeys(c.rank for c in choices[name]), key=lambda r: _kept(choices[name], r)
        )
        orders[name] = order
        errors = _relative_errors(
            factorization, order, moments.get(name), model.get_submodule(name)
        )
        if errors is None:
            exact.append(name)
        else:
            proxies[name] = errors

    scorer = LayerScorer(model, evaluator, example, fast=config.fast, workers=workers)
    knees = {
        name: knee_index(
            [_kept(choices[name], r) for r in orders[name]],
            [proxies[name][r] for r in orders[name]],
        )
        for name in proxies
    }
    wanted = sum(len(orders[n]) for n in exact) + sum(min(probes, len(orders[n])) for n in proxies)

    def measured_of(name: str) -> dict[int, float | None]:
        return {r: known[(name, r)] for r in orders[name] if (name, r) in known}

    def assemble() -> EvalScores:
        floor = min([baseline, *(s for s in known.values() if s is not None)])
        layers = {}
        for name in planned:
            seen = measured_of(name)
            if name in proxies:
                scores = predict_scores(proxies[name], seen, baseline=baseline, floor=floor)
            elif all(r in seen for r in orders[name]):
                scores = {r: s for r, s in seen.items()}  # type: ignore[misc]
            else:
                continue
            entries = tuple(
                _entry(c, scores.get(c.rank), c.rank in seen, proxies.get(name, {}).get(c.rank))
                for c in choices[name]
            )
            layers[name] = LayerScores(info=profile.layers[name], entries=entries)
        return EvalScores(
            fingerprint=fingerprint,
            baseline=baseline,
            model_cost=profile.model_cost,
            planned=tuple(planned),
            layers=layers,
            skipped=skipped,
            exact_costs=plan.exact_costs,
        )

    with progress_bar(
        total=wanted, desc=f"two-level {scheme.name}", enabled=config.progress
    ) as bar:
        for round_ in range(max(probes, 1)):
            jobs: list[tuple[str, Factorization, list[int]]] = []
            for name in planned:
                seen = measured_of(name)
                if name in exact:
                    ranks = [r for r in orders[name] if r not in seen] if round_ == 0 else []
                elif len(seen) >= min(probes, len(orders[name])):
                    ranks = []
                else:
                    small = _small_loss(planned, proxies, orders, knees, known, baseline)
                    rank = _next_probe(
                        orders[name], seen, knees[name], small=small, baseline=baseline
                    )
                    ranks = [] if rank is None else [rank]
                if ranks:
                    jobs.append((name, factorizations[name], ranks))
            if not jobs:
                break
            for name, new in scorer.score(jobs, bar).items():
                known.update({(name, rank): score for rank, score in new.items()})
            if path is not None:
                assemble().save(path)
    scores = assemble()
    if path is not None:
        scores.save(path)
    return scores


def _kept(choices: Sequence[Candidate], rank: int) -> float:
    return next(c.kept_ratio for c in choices if c.rank == rank)


def _entry(
    candidate: Candidate, score: float | None, measured: bool, proxy: float | None
) -> ScoreEntry:
    entry = ScoreEntry.scored(candidate, score)
    return ScoreEntry(
        asked_ratio=entry.asked_ratio,
        rank=entry.rank,
        cost=entry.cost,
        kept_ratio=entry.kept_ratio,
        score=score,
        measured=measured,
        proxy=proxy,
    )


def _relative_errors(
    factorization: Factorization, ranks: Sequence[int], moment: Any, original: nn.Module
) -> dict[int, float] | None:
    """Each rank's layer-output error relative to the layer's output energy, or None."""
    if moment is None:
        return None
    weight = getattr(original, "weight", None)
    energy = moment.error(weight) if weight is not None else 0.0
    errors = {}
    for rank in ranks:
        error = factorization.output_error(rank, moment, original)
        if error is None or not math.isfinite(error):
            return None
        errors[rank] = error / energy if energy > 0 else error
    return errors


def _small_loss(
    planned: Sequence[str],
    proxies: Mapping[str, Mapping[int, float]],
    orders: Mapping[str, list[int]],
    knees: Mapping[str, int],
    known: Mapping[tuple[str, int], float | None],
    baseline: float,
) -> float:
    """A loss small enough to compress further: a quarter of the median loss at the knees."""
    losses = [
        baseline - score
        for name in planned
        if name in proxies and (score := known.get((name, orders[name][knees[name]]))) is not None
    ]
    positive = [loss for loss in losses if loss > 0]
    return 0.25 * statistics.median(positive) if positive else 0.0
