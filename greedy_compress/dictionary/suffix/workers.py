"""Candidates side by side: a pool of threads that share torch's threads.

On CPU the convolutions of small and medium networks gain little from torch's intra-op
threads (one forward of the benchmark ResNet is 1.1x faster on 2 threads than on 1), while
independent forwards side by side use every core. Each pool thread runs with its share of
torch's threads; the caller's count is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["WorkerPool", "default_workers", "worker_pool"]

_MAX_DEFAULT_WORKERS = 4  # each worker holds one candidate's activations at a time

K = TypeVar("K")
T = TypeVar("T")


def default_workers(model: nn.Module) -> int:
    """How many candidates to score at once by default: on CPU one per torch thread (at
    most 4, as each holds a batch of activations), elsewhere 1 (a GPU runs one at a time).

    Example:
        >>> default_workers(nn.Linear(2, 2)) == min(torch.get_num_threads(), 4)
        True
    """
    devices = {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()}
    if devices - {"cpu"}:
        return 1
    return max(1, min(torch.get_num_threads(), _MAX_DEFAULT_WORKERS))


class WorkerPool:
    """Runs tasks in this thread (one worker) or in ``count`` threads, each pool thread
    with ``torch.get_num_threads() // count`` torch threads."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pool = ThreadPoolExecutor(count) if count > 1 else None
        self.threads = max(1, torch.get_num_threads() // count)

    def run(self, task: Callable[..., T], jobs: Mapping[K, tuple[Any, ...]]) -> dict[K, T]:
        """``key -> task(*arguments)`` for each ``key -> arguments``, side by side."""
        if self.pool is None or len(jobs) == 1:
            return {key: task(*job) for key, job in jobs.items()}
        futures = {key: self.pool.submit(self._pooled, task, job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}

    def _pooled(self, task: Callable[..., T], job: tuple[Any, ...]) -> T:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # per OS thread; the caller's is restored
        return task(*job)


@contextmanager
def worker_pool(count: int) -> Iterator[WorkerPool]:
    """A :class:`WorkerPool` for the block; torch's thread count is restored afterwards.

    Example:
        >>> with worker_pool(2) as pool:
        ...     pool.run(pow, {"a": (2, 3), "b": (3, 2)})
        {'a': 8, 'b': 9}
    """
    threads = torch.get_num_threads()
    pool = WorkerPool(count)
    try:
        yield pool
    finally:
        if pool.pool is not None:
            pool.pool.shutdown()
            # torch.set_num_threads in a pool thread also sets the count that new threads
            # start with; put it back.
            torch.set_num_threads(threads)
