"""Build the eval-score dictionary: score the model with each layer compressed alone.

This module orchestrates; the work is done elsewhere. Each layer's factorization is computed
once and truncated for every candidate; candidates that round to the same rank are scored
once (:mod:`~greedy_compress.dictionary.scoring`: suffix-only with a
:class:`~evaluators.BatchEvaluator`, whole models otherwise). Under torch.distributed the
work is split across ranks (:mod:`~greedy_compress.dictionary.sharding`). Layers are scored
in passes (several suffix-only layers per pass over the data, planned to last about
``PASS_SECONDS``; whole-model layers one at a time), and the dictionary (or, sharded, each
rank's part) is written atomically after every pass, so an interrupted build resumes there.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from torch import nn
from typing_extensions import Unpack

from greedy_compress._util.constraints import bad_parameter
from greedy_compress._util.progress import progress_bar
from greedy_compress.dictionary.evaluator import Evaluator, run_evaluator
from greedy_compress.dictionary.fingerprint import make_fingerprint
from greedy_compress.dictionary.scores import EvalScores, LayerScores, ScoreEntry
from greedy_compress.dictionary.scoring import LayerScorer, next_pass
from greedy_compress.dictionary.settings import BuildOptions, BuildSettings
from greedy_compress.dictionary.sharding import (
    Known,
    Shard,
    all_gather_json,
    current_shard,
    read_parts,
    remove_parts,
    write_part,
)
from greedy_compress.dictionary.suffix import default_workers
from greedy_compress.errors import GreedyCompressError, NoCompressibleLayerError
from greedy_compress.graph import ChannelCosts
from greedy_compress.model.cost import CostMetric
from greedy_compress.model.profile import ModelProfile, profile_model
from greedy_compress.schemes import Candidate, Scheme, get_scheme

__all__ = ["build_eval_scores"]

_OWNER = "build_eval_scores"


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


def _assemble(
    fingerprint: dict[str, Any],
    known: Known,
    profile: ModelProfile,
    planned: list[str],
    skipped: dict[str, str],
    choices: dict[str, list[Candidate]],
    exact_costs: ChannelCosts | None,
) -> EvalScores:
    """The dictionary of every planned layer whose candidates are all scored in ``known``."""
    assert known.baseline is not None  # set before any layer is scored
    layers = {}
    for name in planned:
        if all((name, c.rank) in known.scores for c in choices[name]):
            entries = tuple(
                ScoreEntry.scored(c, known.scores[(name, c.rank)]) for c in choices[name]
            )
            layers[name] = LayerScores(info=profile.layers[name], entries=entries)
    return EvalScores(
        fingerprint=fingerprint,
        baseline=known.baseline,
        model_cost=profile.model_cost,
        planned=tuple(planned),
        layers=layers,
        skipped=skipped,
        exact_costs=exact_costs,
    )


def _load_known(
    scores_path: str | os.PathLike[str] | None, fingerprint: dict[str, Any], shard: Shard
) -> tuple[Known, Known, list[int]]:
    """What earlier runs finished (the dictionary file and every part file, all ranks
    merged), this rank's own earlier part, and the ranks whose part files exist here."""
    known, own, part_ranks = Known(), Known(), []
    if scores_path is not None:
        if Path(scores_path).exists():
            saved = EvalScores.load(scores_path, expect=fingerprint, resuming=True)
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
    scores_path: str | os.PathLike[str] | None = None,
    settings: BuildSettings | None = None,
    **options: Unpack[BuildOptions],
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
        scheme: a scheme name or instance (see ``available_schemes()``).
        scores_path: JSON file to save to, resume from and reuse.
        settings: a :class:`BuildSettings`; keyword ``options`` (its fields: ``cost``,
            ``candidates``, ``multiplicity``, ``ignore``, ``example_input`` or
            ``input_shape``, ``progress``, ``fast``, ``workers``, ``distributed``) override it.

    Returns:
        The complete dictionary.

    Example:
        >>> scores = build_eval_scores(model, evaluator, candidates=4, input_shape=(1, 1, 8, 8),
        ...                            progress=False)
        >>> list(scores.layers)
        ['features.0', 'features.3', 'features.7', 'features.10']
    """
    config = BuildSettings.resolve(settings, dict(options), _OWNER)
    scheme = get_scheme(scheme, _OWNER)
    if not callable(evaluator):
        raise bad_parameter("evaluator", _OWNER, "a callable model -> float", evaluator)
    scheme.check_ready()
    metric, multiplicity, ratios = config.cost, config.multiplicity, config.ratios
    example = config.example_for(model, _OWNER)
    workers = default_workers(model) if config.workers is None else config.workers
    shard = current_shard(config.distributed, _OWNER)

    profile = profile_model(model, example, ignore=config.ignore)
    profile = scheme.prepare(model, example_input=example, profile=profile) or profile
    planned, skipped = _plan(profile, scheme, metric)
    exact_costs = scheme.exact_costs()
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
        name: scheme.candidates(profile.layers[name], ratios, metric, multiplicity)
        for name in planned
    }

    def assemble() -> EvalScores:
        return _assemble(fingerprint, known, profile, planned, skipped, choices, exact_costs)

    def save() -> None:
        if scores_path is None:
            return
        if shard.world > 1:
            write_part(scores_path, shard.rank, fingerprint, own)
        else:
            assemble().save(scores_path)

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
    scorer = LayerScorer(model, evaluator, example, fast=config.fast, workers=workers)
    where = f" (rank {shard.rank} of {shard.world})" if shard.world > 1 else ""
    with progress_bar(
        total=sum(map(len, mine.values())),
        desc=f"scoring {scheme.name}{where}",
        enabled=config.progress and shard.rank == 0,
    ) as bar:
        pending, spent, scored = list(mine.items()), 0.0, 0
        while pending:
            chunk = next_pass(pending, spent / scored if scored else None, scorer.pass_seconds)
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
    scores = assemble()
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
