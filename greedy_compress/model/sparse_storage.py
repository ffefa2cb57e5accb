"""Bytes of a masked weight in the sparse export (compressed sparse rows), so costs and the
export agree on one formula.

A masked weight of shape ``(out, ...)`` is viewed as a matrix ``(out, rest)`` and stored as
its kept entries (``values``, in the weight's dtype), their column indices (int16 where
``rest`` <= 32767, else int32), ``out + 1`` int32 row starts and its shape (int64, one per
dimension). When that is not smaller than the dense tensor the weight is stored dense
(masked entries as zeros) instead, so a sparse file never grows a weight: with float32
values and int16 columns CSR wins below about two thirds density, with int32 columns below
about one half.
"""

from __future__ import annotations

import math

__all__ = [
    "INT16_COLUMNS",
    "csr_bytes",
    "csr_tensor_bytes",
    "stored_weight_bytes",
    "stores_sparse",
]

INT16_COLUMNS = 32767
"""The most columns (``numel / out``) whose indices fit int16."""


def csr_bytes(shape: tuple[int, ...], nonzeros: int, value_bytes: int = 4) -> int:
    """Bytes of the values, column indices and row starts of a weight of ``shape`` with
    ``nonzeros`` kept entries (the shape tensor aside: see :func:`csr_tensor_bytes`).

    Example:
        >>> csr_bytes((64, 32, 3, 3), 3686), 64 * 32 * 9 * 4
        (22376, 73728)
    """
    rows = shape[0] if shape else 1
    rest = math.prod(shape[1:])
    index_bytes = 2 if rest <= INT16_COLUMNS else 4
    return nonzeros * (value_bytes + index_bytes) + 4 * (rows + 1)


def csr_tensor_bytes(shape: tuple[int, ...], nonzeros: int, value_bytes: int = 4) -> int:
    """Bytes of all four tensors the CSR form writes: :func:`csr_bytes` plus the int64
    shape (8 bytes per dimension).

    Example:
        >>> csr_tensor_bytes((10, 12), 30)
        240
    """
    return csr_bytes(shape, nonzeros, value_bytes) + 8 * len(shape)


def stores_sparse(shape: tuple[int, ...], nonzeros: int, value_bytes: int = 4) -> bool:
    """Whether the sparse export writes this weight in CSR form (strictly smaller than
    dense) rather than dense.

    Example:
        >>> stores_sparse((10, 12), 80), stores_sparse((10, 12), 60)
        (False, True)
    """
    return csr_tensor_bytes(shape, nonzeros, value_bytes) < value_bytes * math.prod(shape)


def stored_weight_bytes(shape: tuple[int, ...], nonzeros: int, value_bytes: int = 4) -> int:
    """Bytes the sparse export writes for a masked weight: the CSR tensors, or the dense
    tensor when CSR would not be smaller.

    Example:
        >>> stored_weight_bytes((10, 12), 30), stored_weight_bytes((10, 12), 100)
        (240, 480)
    """
    if stores_sparse(shape, nonzeros, value_bytes):
        return csr_tensor_bytes(shape, nonzeros, value_bytes)
    return value_bytes * math.prod(shape)
