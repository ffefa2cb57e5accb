"""Evaluation callables for greedy-compress: ``evaluator(model) -> float``, higher is better.

This package never imports ``greedy_compress``; any plain callable works as an evaluator too.

Example:
    >>> from evaluators import TopKAccuracy
    >>> evaluate = TopKAccuracy(val_loader, k=1, max_batches=1)
    >>> 0.9 < evaluate(model) <= 1.0
    True
"""

from __future__ import annotations

from evaluators._base import BatchEvaluator, split_batch
from evaluators.accuracy import TopKAccuracy
from evaluators.loss import NegativeLoss

__all__ = ["BatchEvaluator", "NegativeLoss", "TopKAccuracy", "split_batch"]
