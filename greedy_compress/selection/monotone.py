"""Monotone sequences: the test, and the least-squares fit (pool adjacent violators).

A layer's score curve (score against the cost it keeps) should never fall as more is kept,
but small eval sets are noisy; :func:`greedy_compress.selection.options.layer_options`
uses these to find such curves and, with ``monotone=True``, to replace them by their fit.

Example:
    >>> [round(v, 3) for v in isotonic([0.9, 0.95, 0.93, 1.0])]
    [0.9, 0.94, 0.94, 1.0]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

__all__ = ["is_monotone", "isotonic"]


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
