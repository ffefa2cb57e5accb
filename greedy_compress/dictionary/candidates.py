"""Candidate compression ratios: the grid every layer is scored on."""

from __future__ import annotations

from collections.abc import Sequence

from greedy_compress._util.constraints import bad_parameter, check_ratio

__all__ = ["DEFAULT_NUM_CANDIDATES", "make_candidates"]

DEFAULT_NUM_CANDIDATES = 10


def make_candidates(candidates: int | Sequence[float] | None, owner: str) -> tuple[float, ...]:
    """Normalize ``candidates`` to a sorted tuple of ratios in (0, 1).

    An int ``n`` gives ``n`` evenly spaced ratios 1/n, 2/n, ..., 1, where 1 ("leave the
    layer alone") is never evaluated since its score is the baseline. None means
    ``DEFAULT_NUM_CANDIDATES``. An explicit list may include 1.0; it is dropped likewise.

    Example:
        >>> make_candidates(4, "demo")
        (0.25, 0.5, 0.75)
    """
    if candidates is None:
        candidates = DEFAULT_NUM_CANDIDATES
    if isinstance(candidates, int) and not isinstance(candidates, bool):
        if candidates < 2:
            raise bad_parameter("candidates", owner, "an int >= 2 or a list of ratios", candidates)
        return tuple(round(i / candidates, 10) for i in range(1, candidates))
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise bad_parameter("candidates", owner, "an int >= 2 or a list of ratios", candidates)
    ratios = set()
    for value in candidates:
        ratio = check_ratio(value, "candidates", owner)
        if ratio < 1.0:
            ratios.add(ratio)
    if not ratios:
        raise bad_parameter("candidates", owner, "at least one ratio below 1", list(candidates))
    return tuple(sorted(ratios))
