"""Single-threaded BLAS for the small matrices of kernel decompositions and VBMF.

Kernel unfoldings are small matrices, where BLAS threads cost more than they give, and on a
busy machine spinning BLAS threads made a CP fit 6x slower (32 s -> 5 s for a 64x32x3x3
kernel at rank 90 on 2 shared cores).
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

__all__ = ["single_threaded_blas"]


def single_threaded_blas() -> threadpool_limits:
    """Context manager: numpy's BLAS on one thread."""
    return threadpool_limits(limits=1, user_api="blas")
