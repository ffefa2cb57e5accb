"""The evaluator protocol: ``evaluator(model) -> float``, higher is better.

Any callable works; a :class:`~evaluators.BatchEvaluator` (``reset / update / compute``
over batches) also lets the dictionary build score only the network after each layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from greedy_compress.errors import GreedyCompressError

__all__ = ["Evaluator", "finite_or_none", "run_evaluator"]

Evaluator = Callable[[nn.Module], float]


def as_score(value: Any) -> float:
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


def finite_or_none(value: float) -> float | None:
    """``value``, or None when it is not finite (a broken candidate)."""
    return value if math.isfinite(value) else None


def run_evaluator(evaluator: Evaluator, model: nn.Module) -> float:
    """Call ``evaluator(model)`` and return its score as a float (NaN if not finite).

    Raises:
        GreedyCompressError: the evaluator returned something that is not a number.
    """
    return as_score(evaluator(model))
