"""Score layers' candidates: suffix-only when the evaluator and the model allow it, whole
models otherwise (the compressed layer swapped in and back out, so the model is never
copied). A plain callable evaluates whole models, but with ``fast`` the unchanged front of
a traceable model runs once per batch for all of a layer's candidates
(:mod:`~greedy_compress.dictionary.suffix.memo`)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from evaluators import BatchEvaluator
from greedy_compress.dictionary.evaluator import Evaluator, as_score, finite_or_none, run_evaluator
from greedy_compress.dictionary.suffix import SuffixScorer, SuffixUnavailable
from greedy_compress.dictionary.suffix.memo import FrontMemo
from greedy_compress.model.swap import swapped
from greedy_compress.schemes import Factorization

__all__ = ["PASS_SECONDS", "LayerScorer", "next_pass"]

# Suffix-only scoring runs several layers per pass over the data (the unchanged network
# runs once per batch for all of them), saving after each pass: a pass is planned to take
# about this long, so an interrupted build loses about this much work.
PASS_SECONDS = 10.0


class LayerScorer:
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
        self.memo = FrontMemo(model, example) if fast else None
        self.warned = False

    @property
    def pass_seconds(self) -> float:
        """How long one pass over the data may score layers before the dictionary is
        saved; 0 when layers are scored one at a time anyway (whole-model evaluation)."""
        return PASS_SECONDS if self.suffix is not None else 0.0

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
            values[name] = self._whole_models(name, factorization, ranks, bar)
        return {
            name: {rank: finite_or_none(as_score(value)) for rank, value in scores.items()}
            for name, scores in values.items()
        }

    def _whole_models(
        self, name: str, factorization: Factorization, ranks: Sequence[int], bar: Any
    ) -> dict[int, Any]:
        """Evaluate the model with each rank's modules swapped in, one at a time (which keeps
        memory low); with a front memo, the layer's candidates share the unchanged front."""
        values: dict[int, Any] = {}
        jobs = {rank: factorization.replacements(name, rank) for rank in ranks[:1]}
        names = [n for modules in jobs.values() for n in modules]
        # One candidate has nothing to share its front with: tracing the cut and copying the
        # front's values would only cost time (the two-level build scores one probe per call).
        memo = self.memo if names and len(ranks) > 1 else None
        with contextlib.ExitStack() as stack:
            run = stack.enter_context(memo.layer(names)) if memo is not None else None
            for rank in ranks:
                modules = jobs.pop(rank, None) or factorization.replacements(name, rank)
                with swapped(self.model, modules):
                    if run is None:
                        values[rank] = run_evaluator(self.evaluator, self.model)
                    else:
                        with run.candidate(modules):
                            values[rank] = run_evaluator(self.evaluator, self.model)
                bar.update(1)
        return values

    def _warn_once(self, name: str, why: Exception) -> None:
        if not self.warned:
            self.warned = True
            warnings.warn(
                f"build_eval_scores: suffix-only evaluation is not possible ({why}; first seen "
                f"at layer {name!r}); evaluating whole models instead: same scores, slower.",
                RuntimeWarning,
                stacklevel=4,
            )


def next_pass(
    pending: Sequence[tuple[str, list[int]]], seconds_per_score: float | None, budget: float
) -> list[tuple[str, list[int]]]:
    """The layers to score in the next pass: one until a score has been timed, then as many
    as fit in ``budget`` seconds (always at least one)."""
    if seconds_per_score is None:
        return list(pending[:1])
    chunk: list[tuple[str, list[int]]] = []
    planned = 0.0
    for name, ranks in pending:
        planned += len(ranks) * seconds_per_score
        if chunk and planned > budget:
            break
        chunk.append((name, ranks))
    return chunk
