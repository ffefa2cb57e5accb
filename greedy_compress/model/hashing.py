"""Short, stable hashes: a model's architecture and weights, tensors, and the identity of a
callable (an evaluator, a criterion) that tells different code apart across runs.

A callable is identified by its declared ``name`` attribute when it has one (the user
vouches for it), else by its qualified name and a hash of its code, so two different
lambdas or closures are never taken for one another.
"""

from __future__ import annotations

import hashlib
import inspect
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = [
    "architecture_hash",
    "callable_identity",
    "declared_name",
    "tensor_hash",
    "weights_hash",
]


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


def tensor_hash(tensor: torch.Tensor) -> str:
    """A short SHA-256 of a tensor's shape and bytes (to fingerprint sampled data)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(str(tuple(tensor.shape)).encode())
    digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def declared_name(target: Any) -> str | None:
    """``target.name`` when it is a non-empty string (an identity the user declares)."""
    name = getattr(target, "name", None)
    return name if isinstance(name, str) and name else None


def _stable(value: Any) -> str | None:
    """A repr that is the same in every run, or None (objects shown by address)."""
    if value is None or isinstance(value, (bool, str, numbers.Number)):
        return repr(value)
    if isinstance(value, torch.Tensor):
        digest = hashlib.sha256(str(tuple(value.shape)).encode())
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
        return f"tensor:{digest.hexdigest()[:16]}"
    if isinstance(value, (tuple, list)):
        parts = [_stable(v) for v in value]
        return None if any(p is None for p in parts) else f"{type(value).__name__}{parts}"
    if inspect.iscode(value):
        return _code_hash(value)
    return None


def _code_hash(code: Any) -> str:
    digest = hashlib.sha256(code.co_code)
    for constant in code.co_consts:
        digest.update(repr(_stable(constant)).encode())
    digest.update(repr(code.co_names).encode())
    return digest.hexdigest()[:16]


def callable_identity(function: Callable[..., Any]) -> str:
    """A name for ``function`` that is stable across runs and tells different code apart.

    Its declared ``name`` if any; else ``module.qualname`` plus a hash of its code, its
    defaults and the values it closes over that print the same in every run (numbers,
    strings, tensors, ...).

    Example:
        >>> scale = 2
        >>> a, b = (lambda x: x * scale), (lambda x: x * 3)
        >>> callable_identity(a) == callable_identity(b)
        False
        >>> callable_identity(TopKAccuracy(val_loader))
        'TopKAccuracy(k=1, max_batches=None)'
    """
    name = declared_name(function)
    if name is not None:
        return name
    target = function if hasattr(function, "__code__") else type(function).__call__
    label = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
    code = getattr(target, "__code__", None)
    if code is None:  # a builtin or a C extension callable: its name is all we have
        return label
    digest = hashlib.sha256(_code_hash(code).encode())
    for value in getattr(target, "__defaults__", None) or ():
        digest.update(repr(_stable(value)).encode())
    for cell in getattr(target, "__closure__", None) or ():
        try:
            digest.update(repr(_stable(cell.cell_contents)).encode())
        except ValueError:  # an empty cell
            digest.update(b"<empty>")
    return f"{label}#{digest.hexdigest()[:12]}"
