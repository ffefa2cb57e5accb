"""Calling tensorly safely from the decomposition schemes.

Schemes hand tensorly float64 numpy arrays under its numpy backend, whatever backend the
user selected globally, and silence the warnings its SVD initialisation prints when a rank
exceeds a mode's size (it pads with random columns, which is what we want).

BLAS runs single-threaded inside (:mod:`greedy_compress._util.blas` says why).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import tensorly as tl
import torch

from greedy_compress._util.blas import single_threaded_blas

__all__ = ["as_numpy64", "numpy_backend"]


def as_numpy64(weight: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of ``weight`` (float64 keeps exact ranks exact at float32 precision)."""
    return weight.detach().to("cpu", torch.float64).numpy().copy()


@contextmanager
def numpy_backend() -> Iterator[None]:
    """Run tensorly on its numpy backend, single-threaded, with its rank-padding warnings off."""
    with tl.backend_context("numpy"), single_threaded_blas(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"tensorly\.")
        yield
