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

import os
import time
import warnings
from pathlib import Path
from typing import Any

from torch import nn
from typing_extensions import Unpack

from greedy_compress._util.constraints import bad_parameter
from greedy_compress._util.progress import progress_bar
from greedy_compress.dictionary.evaluator import Evaluator
from greedy_compress.dictionary.identity import evaluate_baseline
from greedy_compress.dictionary.latency import plan_latency
from greedy_compress.dictionary.plan import DictionaryPlan, plan_dictionary
from greedy_compress.dictionary.scores import EvalScores
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
from greedy_compress.dictionary.sharing import WorkShare, check_scores_path, check_writable
from greedy_compress.dictionary.suffix import default_workers
from greedy_compress.errors import GreedyCompressError, ScoresMismatchError
from greedy_compress.model.hashing import declared_name
from greedy_compress.schemes import Scheme

__all__ = ["build_eval_scores"]

_OWNER = "build_eval_scores"


def _load_known(
    path: Path | None,
    fingerprint: dict[str, Any],
    shard: Shard,
    plan: DictionaryPlan,
    baseline: float,
) -> tuple[Known, Known, list[int], EvalScores | None]:
    """What earlier runs finished (the dictionary file and every part file, all ranks
    merged), this rank's own earlier part, the ranks whose part files exist here, and the
    saved dictionary itself (None if there was none).

    Raises:
        ScoresFormatError, ScoresMismatchError: a file that is not for this build, was edited,
            or whose baseline differs from the evaluator's score of the model now.
    """
    known, own, part_ranks, saved = Known(), Known(), [], None
    if path is not None:
        if path.exists():
            saved = EvalScores.load(path, expect=fingerprint, resuming=True)
            plan.check_saved(saved, os.fspath(path))
            _check_baseline(saved.baseline, baseline, os.fspath(path))
            known.baseline = saved.baseline
            for name, layer in saved.layers.items():  # a two-level file: its measured ones
                known.scores.update({(name, e.rank): e.score for e in layer.entries if e.measured})
        parts = read_parts(path, fingerprint)
        for rank, part in parts.items():
            if part.baseline is not None:
                _check_baseline(part.baseline, baseline, f"part file of rank {rank}")
            known.update(part)
        own = parts.get(shard.rank, Known())
        part_ranks = list(parts)
    if shard.world > 1:  # ranks may not share a file system: pool what each one sees
        for seen in all_gather_json(known.to_json()):
            known.update(Known.from_json(seen))
    return known, own, part_ranks, saved


def _complete_on_disk(path: Path, plan: DictionaryPlan) -> bool:
    """Whether ``path`` already holds every planned layer (then nothing needs writing, and a
    read-only location is fine); a file that cannot be read counts as incomplete."""
    if not path.is_file():
        return False
    try:
        saved = EvalScores.load(path, resuming=True)
    except GreedyCompressError:
        return False  # refused in detail once the fingerprint is known
    return not saved.predicted and all(name in saved.layers for name in plan.planned)


def _check_baseline(saved: float, now: float, source: str) -> None:
    if abs(saved - now) > 1e-6 * max(1.0, abs(now)):
        raise ScoresMismatchError(
            f"{source} was made with an evaluator that scored the unchanged model {saved!r}; "
            f"the evaluator now scores it {now!r}: other data or another metric. Use another "
            "scores path, or delete the file to rebuild it."
        )


def build_eval_scores(
    model: nn.Module,
    evaluator: Evaluator,
    *,
    scheme: str | Scheme = "spatial_svd",
    scores_path: str | os.PathLike[str] | None = None,
    settings: BuildSettings | None = None,
    plan: DictionaryPlan | None = None,
    latency_target: float | None = None,
    **options: Unpack[BuildOptions],
) -> EvalScores:
    """Score ``model`` with each compressible layer compressed alone at each candidate ratio.

    The evaluator runs once first, on the unchanged model: the baseline score, with a digest
    of the data a :class:`~evaluators.BatchEvaluator` scores. With ``scores_path``, an
    existing file made for the same model, settings, evaluator and data (same fingerprint
    and baseline) is loaded and completed (only missing layers are evaluated); the file is
    rewritten atomically after every pass over the data, so an interrupted build loses at
    most the pass in progress. Several processes building into one file share the work
    under a lock (:mod:`greedy_compress.dictionary.sharing`).

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
            ``candidates``, ``multiplicity``, ``ignore``, ``config_list``, ``example_input``
            or ``input_shape``, ``progress``, ``fast``, ``workers``, ``distributed``) override
            it. A ``config_list`` chooses the layers scored; its bounds are recorded in the
            dictionary (``EvalScores.bounds``) and honoured by every solver.
        plan: a :func:`~greedy_compress.dictionary.plan.plan_dictionary` result to use
            instead of ``scheme``, ``settings`` and ``options`` (``compress`` passes the plan
            it checked the target against).
        latency_target: with ``cost="latency"``, a target to refuse once the candidates are
            measured, before any layer is scored, when they cannot reach it
            (``compress`` passes its target).

    Returns:
        The complete dictionary.

    Raises:
        TargetUnreachableError: ``latency_target`` below what the measured candidates reach.

    Example:
        >>> scores = build_eval_scores(model, evaluator, candidates=4, input_shape=(1, 1, 8, 8),
        ...                            progress=False)
        >>> list(scores.layers)
        ['features.0', 'features.3', 'features.7', 'features.10']
    """
    if not callable(evaluator):
        raise bad_parameter("evaluator", _OWNER, "a callable model -> float", evaluator)
    path = check_scores_path(scores_path, _OWNER)
    if plan is None:
        config = BuildSettings.resolve(settings, dict(options), _OWNER)
        plan = plan_dictionary(model, scheme=scheme, settings=config, owner=_OWNER)
    elif settings is not None or options:
        raise bad_parameter("plan", _OWNER, "given without settings or options", "both given")
    config, scheme = plan.settings, plan.scheme
    workers = default_workers(model) if config.workers is None else config.workers
    shard = current_shard(config.distributed, _OWNER)

    if path is not None and not _complete_on_disk(path, plan):
        check_writable(path)  # before any evaluation: nothing computed is then lost
    # One evaluation before anything else: it proves the evaluator works, and its score and
    # data digest say whether a saved dictionary was made with the same evaluator and data.
    baseline, data = evaluate_baseline(evaluator, model)
    fingerprint = plan.fingerprint(model, evaluator, data)
    if path is not None and path.exists() and data is None and declared_name(evaluator) is None:
        warnings.warn(
            f"build_eval_scores: the evaluator is a plain callable without a `name`, so reusing "
            f"{os.fspath(path)} is checked only by its code and its baseline score, not by the "
            "data it reads; give it a `name` attribute that changes with its data, or use a "
            "BatchEvaluator.",
            RuntimeWarning,
            stacklevel=2,
        )
    if config.measures_latency:  # timed before any scoring, saved with the first save
        plan = plan_latency(model, plan, scores_path=path, fingerprint=fingerprint, shard=shard)
    known, own, part_ranks, saved = _load_known(path, fingerprint, shard, plan, baseline)
    if known.baseline is None:
        known.baseline = baseline
    if shard.rank == 0 and own.baseline is None:
        own.baseline = known.baseline

    todo = [
        (name, rank)
        for name in plan.planned
        for rank in dict.fromkeys(c.rank for c in plan.candidates[name])
        if (name, rank) not in known.scores
    ]
    if path is not None and (
        todo or saved is None or assemble_from(plan, fingerprint, known) != saved
    ):
        check_writable(path)  # e.g. a complete file of an older format, to upgrade
    share = WorkShare(path) if path is not None and shard.world == 1 else None

    def refresh() -> list[str]:
        """Merge what other processes saved into ``known``; the layers now complete."""
        assert path is not None
        if path.exists():
            other = EvalScores.load(path, expect=fingerprint, resuming=True)
            for name, layer in other.layers.items():
                known.scores.update({(name, e.rank): e.score for e in layer.entries if e.measured})
        return [
            name
            for name in plan.planned
            if all((name, c.rank) in known.scores for c in plan.candidates[name])
        ]

    def save() -> None:
        if path is None:
            return
        if shard.world > 1:
            write_part(path, shard.rank, fingerprint, own)
        else:
            if share is not None and path.exists():
                refresh()
            assemble_from(plan, fingerprint, known).save(path)

    if (
        plan.latency is not None
        and shard.world == 1
        and (saved is None or saved.latency != plan.latency)
    ):
        save()  # the measurements first: an interrupted build resumes without timing again
    if latency_target is not None and config.cost == "latency":
        plan.check_reachable(latency_target)  # measured, saved, and nothing scored yet

    mine: dict[str, list[int]] = {}
    for name, rank in shard.take(todo):
        mine.setdefault(name, []).append(rank)
    scorer = LayerScorer(model, evaluator, plan.example, fast=config.fast, workers=workers)
    where = f" (rank {shard.rank} of {shard.world})" if shard.world > 1 else ""
    try:
        with progress_bar(
            total=sum(map(len, mine.values())),
            desc=f"scoring {scheme.name}{where}",
            enabled=config.progress and shard.rank == 0,
        ) as bar:
            pending, spent, scored, busy = list(mine.items()), 0.0, 0, set[str]()
            while pending:
                free = [item for item in pending if item[0] not in busy] or pending
                chunk = next_pass(free, spent / scored if scored else None, scorer.pass_seconds)
                if share is not None:
                    chunk, busy = share.claim(chunk, refresh=refresh)
                    finished = {n for n in mine if all((n, r) in known.scores for r in mine[n])}
                    for _, ranks in [item for item in pending if item[0] in finished]:
                        bar.update(len(ranks))  # scored by another process
                    pending = [item for item in pending if item[0] not in finished]
                    if not chunk:
                        if pending and all(item[0] in busy for item in pending):
                            share.wait()  # everything left is being scored elsewhere
                        continue
                started = time.perf_counter()
                layers = [(name, scheme.factorize_in(model, name), ranks) for name, ranks in chunk]
                for name, new in scorer.score(layers, bar).items():
                    known.scores.update({(name, rank): score for rank, score in new.items()})
                    own.scores.update({(name, rank): score for rank, score in new.items()})
                if share is not None:
                    share.finish([name for name, _ in chunk], save=save)
                else:
                    save()
                done = {name for name, _ in chunk}
                pending = [item for item in pending if item[0] not in done]
                spent += time.perf_counter() - started
                scored += sum(len(ranks) for _, ranks in chunk)
    except BaseException:
        if share is not None:
            share.release_all()
        raise

    if shard.world > 1:
        gathered = [Known.from_json(part) for part in all_gather_json(own.to_json())]
        if gathered[0].baseline is not None:  # the dictionary holds rank 0's baseline
            known.baseline = gathered[0].baseline
        for part in gathered:
            known.scores.update(part.scores)
    scores = assemble_from(plan, fingerprint, known)
    if path is not None:
        if shard.rank == 0 and scores != saved:
            scores.save(path)
        if shard.world > 1:
            all_gather_json(None)  # the merged file is on disk before any part goes
        stale = [r for r in part_ranks if r >= shard.world] if shard.rank == 0 else []
        remove_parts(
            path,
            [shard.rank, *stale] if shard.world > 1 else part_ranks,
            leftovers=shard.rank == 0,
        )
    return scores


def assemble_from(plan: DictionaryPlan, fingerprint: dict[str, Any], known: Known) -> EvalScores:
    """The dictionary of what ``known`` holds (the baseline must be set)."""
    assert known.baseline is not None  # set from the baseline evaluation before any scoring
    return plan.assemble(fingerprint, known.baseline, known.scores)
