"""Build the eval-score dictionary: score the model with each layer compressed alone.

This module orchestrates; the work is done elsewhere. Each layer's factorization is computed
once and truncated for every candidate; candidates that round to the same rank are scored
once. With a :class:`~evaluators.BatchEvaluator` the candidates of a layer are scored by
suffix-only evaluation (:mod:`greedy_compress.dictionary.suffix`): the unchanged front of the
network runs once per batch, only the rest per candidate. Any other evaluator, or a model fx cannot
trace, gets whole-model evaluation: the compressed layer is swapped into the model in
place, evaluated, and the original put back, so the model is never copied. Under
torch.distributed the work is split across ranks (:mod:`greedy_compress.dictionary.sharding`).
Suffix-only layers are scored several at a time, in passes planned to last about
``_PASS_SECONDS``; whole-model layers one at a time. The dictionary (or, sharded, each
rank's part) is written atomically after every pass, so an interrupted build resumes there.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluators import BatchEvaluator
from greedy_compress._util.constraints import bad_parameter, check_positive_int
from greedy_compress._util.progress import progress_bar
from greedy_compress.dictionary.candidates import make_candidates
from greedy_compress.dictionary.fingerprint import make_fingerprint
from greedy_compress.dictionary.scores import EvalScores, LayerScores, ScoreEntry
from greedy_compress.dictionary.sharding import (
    Known,
    Shard,
    all_gather_json,
    current_shard,
    read_parts,
    remove_parts,
    write_part,
)
from greedy_compress.dictionary.suffix import SuffixScorer, SuffixUnavailable, default_workers
from greedy_compress.errors import GreedyCompressError, NoCompressibleLayerError
from greedy_compress.model.cost import CostMetric, check_metric
from greedy_compress.model.profile import ModelProfile, make_example_input, profile_model
from greedy_compress.model.swap import swapped
from greedy_compress.schemes import Candidate, Factorization, Scheme, get_scheme

__all__ = ["Evaluator", "build_eval_scores", "run_evaluator"]

Evaluator = Callable[[nn.Module], float]

_OWNER = "build_eval_scores"
# Suffix-only scoring runs several layers per pass over the data (the unchanged network
# runs once per batch for all of them), saving after each pass: a pass is planned to take
# about this long, so an interrupted build loses about this much work.
_PASS_SECONDS = 10.0


def _as_score(value: Any) -> float:
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


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run_evaluator(evaluator: Evaluator, model: nn.Module) -> float:
    """Call ``evaluator(model)`` and return its score as a float (NaN if not finite).

    Raises:
        GreedyCompressError: the evaluator returned something that is not a number.
    """
    return _as_score(evaluator(model))


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


class _Scorer:
    """Scores layers' ranks: suffix-only when it can, whole-model otherwise."""

    def __init__(
        self,
        model: nn.Module,
        evaluator: Evaluator,
        example: torch.Tensor,
        *,
        fast: bool,
        workers: int,
    ) -> None:
        self.model = model
        self.evaluator = evaluator
        self.suffix = None
        # A subclass that overrides __call__ may score differently than update/compute.
        if (
            fast
            and isinstance(evaluator, BatchEvaluator)
            and type(evaluator).__call__ is BatchEvaluator.__call__
        ):
            self.suffix = SuffixScorer(model, evaluator, example, workers=workers)
        self.warned = False

    @property
    def pass_seconds(self) -> float:
        """How long one pass over the data may score layers before the dictionary is
        saved; 0 when layers are scored one at a time anyway (whole-model evaluation)."""
        return _PASS_SECONDS if self.suffix is not None else 0.0

    def score(
        self, layers: Sequence[tuple[str, Factorization, Sequence[int]]], bar: Any
    ) -> dict[str, dict[int, float | None]]:
        """``name -> rank -> score`` (None if not finite) for each ``(name, factorization,
        ranks)``; suffix-only layers in one pass over the data."""
        if len(layers) == 1:
            name, _, ranks = layers[0]
            bar.set_postfix_str(f"{name} ranks {','.join(map(str, ranks))}", refresh=False)
        else:
            bar.set_postfix_str(f"{len(layers)} layers from {layers[0][0]}", refresh=False)
        values: dict[str, dict[int, Any]] = {}
        if self.suffix is not None:
            jobs = [
                {rank: f.replacements(name, rank) for rank in ranks} for name, f, ranks in layers
            ]
            for (name, _, ranks), result in zip(
                layers, self.suffix.score_layers(jobs), strict=True
            ):
                if isinstance(result, SuffixUnavailable):
                    self._warn_once(name, result)
                else:
                    values[name] = result
                    bar.update(len(ranks))
        for name, factorization, ranks in layers:
            if name in values:
                continue
            values[name] = {}
            for rank in ranks:  # one candidate's modules at a time keeps memory low
                with swapped(self.model, factorization.replacements(name, rank)):
                    values[name][rank] = run_evaluator(self.evaluator, self.model)
                bar.update(1)
        return {
            name: {rank: _finite_or_none(_as_score(value)) for rank, value in scores.items()}
            for name, scores in values.items()
        }

    def _warn_once(self, name: str, why: Exception) -> None:
        if not self.warned:
            self.warned = True
            warnings.warn(
                f"build_eval_scores: suffix-only evaluation is not possible ({why}; first seen "
                f"at layer {name!r}); evaluating whole models instead: same scores, slower.",
                RuntimeWarning,
                stacklevel=4,
            )


def _next_pass(
    pending: Sequence[tuple[str, list[int]]], seconds_per_score: float | None, budget: float
) -> list[tuple[str, list[int]]]:
    """The layers to score in the next pass: one until a score has been timed, then as many
    as fit in ``budget`` seconds (always at least one)."""
    if seconds_per_score is None:
        return list(pending[:1])
    chunk, planned = [], 0.0
    for name, ranks in pending:
        planned += len(ranks) * seconds_per_score
        if chunk and planned > budget:
            break
        chunk.append((name, ranks))
    return chunk


def _assemble(
    fingerprint: dict[str, Any],
    known: Known,
    profile: ModelProfile,
    planned: list[str],
    skipped: dict[str, str],
    choices: dict[str, list[Candidate]],
) -> EvalScores:
    """The dictionary of every planned layer whose candidates are all scored in ``known``."""
    assert known.baseline is not None  # set before any layer is scored
    layers = {}
    for name in planned:
        if all((name, c.rank) in known.scores for c in choices[name]):
            entries = tuple(
                ScoreEntry(
                    ratio=c.ratio,
                    rank=c.rank,
                    real_ratio=c.real_ratio,
                    cost=c.cost,
                    score=known.scores[(name, c.rank)],
                )
                for c in choices[name]
            )
            layers[name] = LayerScores(info=profile.layers[name], entries=entries)
    return EvalScores(
        fingerprint=fingerprint,
        baseline=known.baseline,
        model_cost=profile.model_cost,
        planned=tuple(planned),
        layers=layers,
        skipped=skipped,
    )


def _load_known(
    scores_path: str | os.PathLike[str] | None, fingerprint: dict[str, Any], shard: Shard
) -> tuple[Known, Known, list[int]]:
    """What earlier runs finished (the dictionary file and every part file, all ranks
    merged), this rank's own earlier part, and the ranks whose part files exist here."""
    known, own, part_ranks = Known(), Known(), []
    if scores_path is not None:
        if Path(scores_path).exists():
            saved = EvalScores.load(scores_path, expect=fingerprint)
            known.baseline = saved.baseline
            for name, layer in saved.layers.items():
                known.scores.update({(name, e.rank): e.score for e in layer.entries})
        parts = read_parts(scores_path, fingerprint)
        for part in parts.values():
            known.update(part)
        own = parts.get(shard.rank, Known())
        part_ranks = list(parts)
    if shard.world > 1:  # ranks may not share a file system: pool what each one sees
        for seen in all_gather_json(known.to_json()):
            known.update(Known.from_json(seen))
    return known, own, part_ranks


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
    fast: bool = True,
    workers: int | None = None,
    distributed: bool | None = None,
) -> EvalScores:
    """Score ``model`` with each compressible layer compressed alone at each candidate ratio.

    With ``scores_path``: an existing file made for the same model and settings is loaded
    and completed (only missing layers are evaluated); the file is rewritten atomically
    after every pass over the data (one layer, or several layers planned to take about 10 s
    together), so an interrupted build loses at most the pass in progress.

    With a :class:`~evaluators.BatchEvaluator` and a model ``torch.fx`` can trace, only the
    part of the network from the compressed layer on is run per candidate, several
    candidates at once in threads (same scores, several times faster); otherwise, or with
    ``fast=False``, whole models are evaluated one at a time.
    Run under ``torchrun`` with an initialized process group, the work is split across the
    ranks (see :mod:`greedy_compress.dictionary.sharding`) and every rank returns the whole
    dictionary.

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
        progress: show a progress bar (on rank 0 only when sharded).
        fast: allow suffix-only evaluation; False always evaluates whole models.
        workers: candidates scored at once by the suffix-only path, in threads that share
            torch's threads. None: one per torch thread on CPU, at most 4 (each holds a
            batch of activations); 1 on a GPU. Use 1 if a module's ``forward`` writes to
            the module.
        distributed: None: shard when a torch.distributed group of several ranks is
            initialized; True: require one; False: do all the work in this process.

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
    if not isinstance(fast, bool):
        raise bad_parameter("fast", _OWNER, "True or False", fast)
    workers = (
        default_workers(model)
        if workers is None
        else check_positive_int(workers, "workers", _OWNER)
    )
    shard = current_shard(distributed, _OWNER)

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
    known, own, part_ranks = _load_known(scores_path, fingerprint, shard)
    choices = {
        name: [scheme.candidate(profile.layers[name], r, metric, multiplicity) for r in ratios]
        for name in planned
    }

    def save() -> None:
        if scores_path is None:
            return
        if shard.world > 1:
            write_part(scores_path, shard.rank, fingerprint, own)
        else:
            _assemble(fingerprint, known, profile, planned, skipped, choices).save(scores_path)

    if known.baseline is None:  # every rank checks it before the expensive work
        baseline = run_evaluator(evaluator, model)
        if not math.isfinite(baseline):
            raise GreedyCompressError(
                f"The evaluator returned {baseline!r} for the uncompressed model; "
                "the baseline score must be a finite number."
            )
        known.baseline = baseline
        if shard.rank == 0:
            own.baseline = baseline
            save()

    todo = [
        (name, rank)
        for name in planned
        for rank in dict.fromkeys(c.rank for c in choices[name])
        if (name, rank) not in known.scores
    ]
    mine: dict[str, list[int]] = {}
    for name, rank in shard.take(todo):
        mine.setdefault(name, []).append(rank)
    scorer = _Scorer(model, evaluator, example, fast=fast, workers=workers)
    where = f" (rank {shard.rank} of {shard.world})" if shard.world > 1 else ""
    with progress_bar(
        total=sum(map(len, mine.values())),
        desc=f"scoring {scheme.name}{where}",
        enabled=progress and shard.rank == 0,
    ) as bar:
        pending, spent, scored = list(mine.items()), 0.0, 0
        while pending:
            chunk = _next_pass(pending, spent / scored if scored else None, scorer.pass_seconds)
            del pending[: len(chunk)]
            started = time.perf_counter()
            layers = [(name, scheme.factorize_in(model, name), ranks) for name, ranks in chunk]
            for name, new in scorer.score(layers, bar).items():
                known.scores.update({(name, rank): score for rank, score in new.items()})
                own.scores.update({(name, rank): score for rank, score in new.items()})
            save()
            spent += time.perf_counter() - started
            scored += sum(len(ranks) for _, ranks in chunk)

    if shard.world > 1:
        gathered = [Known.from_json(part) for part in all_gather_json(own.to_json())]
        if gathered[0].baseline is not None:  # the dictionary holds rank 0's baseline
            known.baseline = gathered[0].baseline
        for part in gathered:
            known.scores.update(part.scores)
    scores = _assemble(fingerprint, known, profile, planned, skipped, choices)
    if scores_path is not None:
        if shard.rank == 0:
            scores.save(scores_path)
        if shard.world > 1:
            all_gather_json(None)  # the merged file is on disk before any part goes
        stale = [r for r in part_ranks if r >= shard.world] if shard.rank == 0 else []
        remove_parts(
            scores_path,
            [shard.rank, *stale] if shard.world > 1 else part_ranks,
            leftovers=shard.rank == 0,
        )
    return scores
