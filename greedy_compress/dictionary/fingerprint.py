"""What an eval-score dictionary depends on, as a small dict of strings and numbers.

Two builds with equal fingerprints produce the same dictionary, so a saved one can be
reused or resumed; when they differ, the error names each field that changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["architecture_hash", "evaluator_name", "make_fingerprint", "weights_hash"]


def architecture_hash(model: nn.Module) -> str:
    """Hash of the module tree (types, hyper-parameters, parameter shapes)."""
    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    return digest.hexdigest()[:16]


def weights_hash(model: nn.Module) -> str:
    """Hash of every parameter and buffer's bytes, in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def evaluator_name(evaluator: Callable[..., Any]) -> str:
    """A stable name for an evaluator: its ``name`` attribute, else its qualified name."""
    name = getattr(evaluator, "name", None)
    if isinstance(name, str) and name:
        return name
    target = evaluator if hasattr(evaluator, "__qualname__") else type(evaluator)
    return f"{target.__module__}.{target.__qualname__}"


def make_fingerprint(
    model: nn.Module,
    *,
    scheme: str,
    metric: str,
    multiplicity: int | str,
    candidates: Sequence[float],
    evaluator: Callable[..., Any],
    input_shape: Sequence[int],
) -> dict[str, Any]:
    """Everything a dictionary's scores depend on; stored in the file and compared on load."""
    return {
        "architecture": architecture_hash(model),
        "weights": weights_hash(model),
        "scheme": scheme,
        "cost": metric,
        "multiplicity": multiplicity,
        "candidates": [float(c) for c in candidates],
        "evaluator": evaluator_name(evaluator),
        "input_shape": [int(s) for s in input_shape],
    }
