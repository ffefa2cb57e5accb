"""The data an evaluator scores, as a digest, taken while it computes the baseline.

A dictionary is reused only when it was made with the same evaluator on the same data. A
:class:`~evaluators.BatchEvaluator` shows its data: the batches it scores are hashed as
they stream through the baseline evaluation. A plain callable shows only its code
(:func:`greedy_compress.model.hashing.callable_identity`); the data it reads is checked by
the baseline score alone.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from evaluators import BatchEvaluator
from greedy_compress.dictionary.evaluator import Evaluator, as_score, run_evaluator
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.modes import eval_mode

__all__ = ["batch_digest", "evaluate_baseline", "fast_batch_evaluator"]


def fast_batch_evaluator(evaluator: Any) -> bool:
    """Whether ``evaluator`` is a BatchEvaluator scoring exactly as its base class does
    (``reset / update / compute`` over ``batches``), so the package may run the loop itself."""
    return (
        isinstance(evaluator, BatchEvaluator)
        and type(evaluator).__call__ is BatchEvaluator.__call__
    )


def _update(digest: Any, batch: Any) -> None:
    for leaf in tree_leaves(batch):
        if isinstance(leaf, torch.Tensor):
            digest.update(f"{leaf.dtype}{tuple(leaf.shape)}".encode())
            data = leaf.detach().cpu().contiguous().reshape(-1)
            digest.update(data.view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(leaf).encode())


def batch_digest(batches: Iterable[Any]) -> str:
    """SHA-256 prefix of a stream of batches (shapes, dtypes and bytes of every tensor).

    Example:
        >>> batch_digest(val_loader) == batch_digest(val_loader)
        True
        >>> batch_digest(val_loader) == batch_digest(train_loader)
        False
    """
    digest = hashlib.sha256()
    for batch in batches:
        _update(digest, batch)
    return digest.hexdigest()[:16]


def evaluate_baseline(evaluator: Evaluator, model: nn.Module) -> tuple[float, str | None]:
    """The evaluator's score of ``model`` and a digest of the data it scored (None for a
    plain callable, whose data cannot be seen).

    A BatchEvaluator with the base ``__call__`` is run here, hashing its batches as they
    stream (one pass over the data); one with its own ``__call__`` is called as is, its
    batches hashed in a separate pass without the model.

    Raises:
        GreedyCompressError: the score is not a finite number (nothing can be compared
            with it).

    Example:
        >>> score, data = evaluate_baseline(evaluator, model)
        >>> score == evaluator(model), data == batch_digest(evaluator.batches(model))
        (True, True)
    """
    baseline, digest = _score_and_digest(evaluator, model)
    if not math.isfinite(baseline):
        raise GreedyCompressError(
            f"The evaluator returned {baseline!r} for the uncompressed model; "
            "the baseline score must be a finite number."
        )
    return baseline, digest


def _score_and_digest(evaluator: Evaluator, model: nn.Module) -> tuple[float, str | None]:
    if not isinstance(evaluator, BatchEvaluator):
        return run_evaluator(evaluator, model), None
    if not fast_batch_evaluator(evaluator):
        digest = batch_digest(evaluator.batches(model))
        return run_evaluator(evaluator, model), digest
    hasher = hashlib.sha256()
    evaluator.reset()
    with eval_mode(model), torch.inference_mode():
        for inputs, targets in evaluator.batches(model):
            _update(hasher, (inputs, targets))
            outputs = model(inputs)
            evaluator.update(outputs, targets.to(outputs.device))
    score = as_score(evaluator.compute())
    return (score if math.isfinite(score) else float("nan")), hasher.hexdigest()[:16]
