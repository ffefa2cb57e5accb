"""The evaluator protocol: ``evaluator(model) -> float``, higher is better.

Any callable works; a :class:`~evaluators.BatchEvaluator` (``reset / update / compute``
over batches) also lets the dictionary build score only the network after each layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from greedy_compress.errors import EvaluatorResultError

__all__ = ["Evaluator", "as_score", "finite_or_none", "run_evaluator"]

Evaluator = Callable[[nn.Module], float]


def as_score(value: Any) -> float:
    """``value`` as a float if it is a real number: an int or float, a numpy number or a
    one-element tensor (not a bool, a string or anything else a float() would accept).

    Raises:
        EvaluatorResultError: anything else.

    Example:
        >>> as_score(np.float32(0.5)), as_score(torch.tensor([0.25]))
        (0.5, 0.25)
        >>> as_score("0.9")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        greedy_compress.errors.EvaluatorResultError: The evaluator must ... Got '0.9' (str) instead.
    """
    number = value
    if (
        isinstance(number, torch.Tensor) and number.numel() == 1 and number.dtype != torch.bool
    ) or (isinstance(number, np.generic) and not isinstance(number, np.bool_)):
        number = number.item()
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise EvaluatorResultError(
            "The evaluator must return a number (higher is better): an int, a float, a numpy "
            f"number or a one-element tensor. Got {value!r} ({type(value).__name__}) instead."
        )
    return float(number)


def finite_or_none(value: float) -> float | None:
    """``value``, or None when it is not finite (a broken candidate)."""
    return value if math.isfinite(value) else None


def run_evaluator(evaluator: Evaluator, model: nn.Module) -> float:
    """Call ``evaluator(model)`` and return its score as a float (NaN if not finite).

    Raises:
        EvaluatorResultError: the evaluator returned something that is not a number.
    """
    return as_score(evaluator(model))
