"""Calling tensorly safely from the decomposition schemes.

Schemes hand tensorly float64 numpy arrays under its numpy backend, whatever backend the
user selected globally, and silence the warnings its SVD initialisation prints when a rank
exceeds a mode's size (it pads with random columns, which is what we want).

BLAS runs single-threaded inside: kernel unfoldings are small matrices, where threads cost
more than they give, and on a busy machine spinning BLAS threads made a CP fit 6x slower
(32 s -> 5 s for a 64x32x3x3 kernel at rank 90 on 2 shared cores).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import tensorly as tl
import torch
from threadpoolctl import threadpool_limits

__all__ = ["as_numpy64", "numpy_backend", "single_threaded_blas"]


def as_numpy64(weight: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of ``weight`` (float64 keeps exact ranks exact at float32 precision)."""
    return weight.detach().to("cpu", torch.float64).numpy().copy()


def single_threaded_blas() -> threadpool_limits:
    """Context manager: numpy's BLAS on one thread (small matrices; see the module doc)."""
    return threadpool_limits(limits=1, user_api="blas")


@contextmanager
def numpy_backend() -> Iterator[None]:
    """Run tensorly on its numpy backend, single-threaded, with its rank-padding warnings off."""
    with tl.backend_context("numpy"), single_threaded_blas(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"tensorly\.")
        yield
