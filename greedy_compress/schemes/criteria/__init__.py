"""Filter-pruning criteria: ``criterion(evidence) -> importance per channel``.

Adding one: write a module with a function decorated by :func:`register_criterion` and
import it below (one line).
"""

from __future__ import annotations

from greedy_compress.schemes.criteria import gm, l2, nuclear  # noqa: F401  (registers them)
from greedy_compress.schemes.criteria._base import (
    ChannelEvidence,
    Criterion,
    available_criteria,
    get_criterion,
    register_criterion,
)

__all__ = [
    "ChannelEvidence",
    "Criterion",
    "available_criteria",
    "get_criterion",
    "register_criterion",
]
