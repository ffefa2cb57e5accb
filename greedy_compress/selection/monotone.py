"""Per-layer score curves: find the non-monotone ones and fit them monotone.

A layer's curve is its score against the cost it keeps. Keeping more should never score
lower, but small eval sets are noisy: a layer can score higher compressed harder. Solvers
trust such noise (a threshold search happily takes the noisy high point), so
``layer_options(..., monotone=True)`` replaces each curve by its isotonic fit (least squares,
non-decreasing in cost, pool-adjacent-violators) with "leave alone" pinned at the baseline.

Example:
    >>> [round(v, 3) for v in isotonic([0.9, 0.95, 0.93, 1.0])]
    [0.9, 0.94, 0.94, 1.0]
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["fit_options", "is_monotone", "isotonic", "non_monotone"]

T = TypeVar("T")  # a LayerOption (kept generic: solvers import this module)


def is_monotone(values: Sequence[float]) -> bool:
    """True when ``values`` never decrease (non-finite values, failed scores, are ignored).

    Example:
        >>> is_monotone([0.5, 0.9, 0.8]), is_monotone([float("-inf"), 0.5, 0.5])
        (False, True)
    """
    finite = [v for v in values if math.isfinite(v)]
    return all(a <= b for a, b in itertools.pairwise(finite))


def isotonic(values: Sequence[float], weights: Sequence[float] | None = None) -> list[float]:
    """The non-decreasing sequence closest to ``values`` in weighted least squares.

    Pool adjacent violators: walk left to right, merging a block into its predecessor while
    the predecessor's mean is larger. Non-finite values (failed candidates) are kept as they
    are and left out of the fit.

    Args:
        values: scores ordered by cost kept, smallest first.
        weights: per value (default 1); a huge weight pins a value (the baseline).

    Returns:
        The fitted values, same length and order.
    """
    weights = [1.0] * len(values) if weights is None else list(weights)
    index = [i for i, v in enumerate(values) if math.isfinite(v)]
    blocks: list[list[float]] = []  # [weighted mean, total weight, count]
    for i in index:
        blocks.append([float(values[i]), float(weights[i]), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight, count = blocks.pop()
            last = blocks[-1]
            total = last[1] + weight
            last[0] = (last[0] * last[1] + mean * weight) / total
            last[1], last[2] = total, last[2] + count
    fitted = [float(v) for v in values]
    position = 0
    for mean, _, count in blocks:
        for i in index[position : position + int(count)]:
            fitted[i] = mean
        position += int(count)
    return fitted


def fit_options(options: Sequence[T], baseline: float) -> list[T]:
    """One layer's options (cheapest first) with scores fitted non-decreasing in cost.

    "Leave alone" keeps the baseline exactly and bounds the fit (bounded isotonic regression
    is the unbounded fit clipped to the bound). Failed (-inf) candidates stay failed.

    Example:
        >>> from greedy_compress.selection.solvers import LayerOption
        >>> opts = [LayerOption(0.2, 1, 2, 0.9), LayerOption(0.5, 2, 5, 0.8),
        ...         LayerOption(1.0, None, 10, 1.0)]
        >>> [round(o.score, 3) for o in fit_options(opts, 1.0)]
        [0.85, 0.85, 1.0]
    """
    fitted: dict[int, Any] = {}
    # Each scheme has its own curve (a mixed-scheme layer has one per scheme).
    for scheme in dict.fromkeys(getattr(o, "scheme", None) for o in options if o.rank is not None):
        curve = [
            i
            for i, o in enumerate(options)
            if o.rank is not None and getattr(o, "scheme", None) == scheme
        ]
        values = isotonic([options[i].score for i in curve])
        for i, value in zip(curve, values, strict=True):
            fitted[i] = dataclasses.replace(options[i], score=min(value, baseline))
    return [fitted.get(i, o) for i, o in enumerate(options)]


def non_monotone(options: Mapping[str, Sequence[Any]]) -> list[str]:
    """Names of layers whose scores (options cheapest first) fall somewhere as cost grows.

    Example:
        >>> non_monotone(layer_options(scores, "mac"))  # doctest: +SKIP
        ['layer2.0.conv1']
    """
    return [name for name, opts in options.items() if not is_monotone([o.score for o in opts])]
