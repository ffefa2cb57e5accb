"""What an eval-score dictionary depends on, as a small dict of strings and numbers.

Two builds with equal fingerprints produce the same dictionary, so a saved one can be
reused or resumed; when they differ, the error names each field that changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from greedy_compress.model.hashing import architecture_hash, callable_identity, weights_hash

__all__ = ["make_fingerprint"]


def make_fingerprint(
    model: nn.Module,
    *,
    scheme: str,
    metric: str,
    multiplicity: int,
    candidates: Sequence[float],
    evaluator: Callable[..., Any],
    input_shape: Sequence[int],
    evaluator_data: str | None = None,
) -> dict[str, Any]:
    """Everything a dictionary's scores depend on; stored in the file and compared on load.

    ``evaluator`` is identified by :func:`~greedy_compress.model.hashing.callable_identity`
    and ``evaluator_data`` is the digest of the batches it scores (None for a plain callable).
    """
    return {
        "architecture": architecture_hash(model),
        "weights": weights_hash(model),
        "scheme": scheme,
        "cost": metric,
        "multiplicity": multiplicity,
        "candidates": [float(c) for c in candidates],
        "evaluator": callable_identity(evaluator),
        "evaluator_data": evaluator_data,
        "input_shape": [int(s) for s in input_shape],
    }
