"""Measured latency of modules on this machine: warm-up, interleaved repeats, medians.

MACs are not latency, so a latency is measured, never assumed. :class:`LatencyMeter` times
*runs* (a module on an input, or several modules whose times add up) round robin, each
thing timed next to the original it is compared with and the order reversed every other
round, so a load that comes and goes slows both alike. It reports medians, and for a pair
the median of the per-round ratios with its spread. The clock is a :class:`LatencyTimer`:
:class:`WallClock` on a real machine, or the deterministic :class:`MacTimer` (for tests and
examples, where a real clock would make results depend on the machine's load).

Example:
    >>> meter = LatencyMeter(timer=MacTimer(ns_per_module=0), repeats=3)
    >>> paired = meter.compare(nn.Linear(16, 4), nn.Linear(16, 8), torch.zeros(2, 16))
    >>> paired.ratio, paired.spread, paired.ns
    (0.5, 0.0, 128)
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.cost import count_macs
from greedy_compress.model.modes import eval_mode

__all__ = [
    "DEFAULT_REPEATS",
    "LatencyMeter",
    "LatencyTimer",
    "MacTimer",
    "PairedLatency",
    "Run",
    "WallClock",
    "device_description",
    "module_inputs",
]

DEFAULT_REPEATS = 15
DEFAULT_WARMUP = 3

Run = Sequence[tuple[nn.Module, torch.Tensor]]  # modules timed together: one sample is the sum


class LatencyTimer(ABC):
    """Times one forward pass of ``module`` on ``inputs``, in nanoseconds.

    The meter calls it in eval mode under ``torch.inference_mode``; ``name`` goes into the
    fingerprint of every dictionary measured with it.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """What the timer is, for fingerprints (a dictionary timed by another is not reused)."""

    @abstractmethod
    def __call__(self, module: nn.Module, inputs: torch.Tensor) -> int:
        """Nanoseconds one ``module(inputs)`` takes."""


class WallClock(LatencyTimer):
    """The real time of one forward pass (``time.perf_counter_ns``; CUDA is synchronized)."""

    @property
    def name(self) -> str:
        return "wall_clock"

    def __call__(self, module: nn.Module, inputs: torch.Tensor) -> int:
        cuda = inputs.is_cuda
        if cuda:
            torch.cuda.synchronize(inputs.device)
        start = time.perf_counter_ns()
        module(inputs)
        if cuda:
            torch.cuda.synchronize(inputs.device)
        return time.perf_counter_ns() - start


@dataclass(frozen=True)
class MacTimer(LatencyTimer):
    """A deterministic stand-in for a clock: ``ns_per_mac`` per multiply-accumulate (torch's
    flop counter) plus ``ns_per_module`` per leaf module. Tests and examples use it so their
    results do not depend on the machine; it models a per-call overhead, which is why a
    factorized layer (two modules) can be slower than the original."""

    ns_per_mac: float = 1.0
    ns_per_module: int = 1000
    # Counting MACs runs the module under torch's flop counter, which is slow; the count
    # depends only on the module's structure (its repr) and the input's shape.
    _known: dict[tuple[str, tuple[int, ...]], int] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def name(self) -> str:
        return f"mac_timer(ns_per_mac={self.ns_per_mac:g}, ns_per_module={self.ns_per_module})"

    def __call__(self, module: nn.Module, inputs: torch.Tensor) -> int:
        key = (f"{type(module).__qualname__}:{module!r}", tuple(inputs.shape))
        if key not in self._known:
            leaves = sum(1 for m in module.modules() if next(m.children(), None) is None)
            macs = count_macs(module, inputs)
            self._known[key] = round(self.ns_per_mac * macs) + self.ns_per_module * leaves
        return self._known[key]


@dataclass(frozen=True)
class PairedLatency:
    """Something timed next to a reference, round by round.

    Attributes:
        ns: median latency of the thing measured.
        reference_ns: median latency of the reference.
        ratio: median of the per-round ratios (the load of a round cancels out).
        spread: half the interquartile range of the per-round ratios.
        repeats: rounds timed.
    """

    ns: int
    reference_ns: int
    ratio: float
    spread: float
    repeats: int

    @classmethod
    def from_samples(cls, samples: Sequence[int], reference: Sequence[int]) -> PairedLatency:
        """The pairing of two equally long sample lists taken round by round."""
        ratios = [s / max(r, 1) for s, r in zip(samples, reference, strict=True)]
        spread = 0.0
        if len(ratios) > 1:
            low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
            spread = (high - low) / 2
        return cls(
            ns=round(statistics.median(samples)),
            reference_ns=round(statistics.median(reference)),
            ratio=statistics.median(ratios),
            spread=spread,
            repeats=len(ratios),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "ns": self.ns,
            "reference_ns": self.reference_ns,
            "ratio": self.ratio,
            "spread": self.spread,
            "repeats": self.repeats,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairedLatency:
        """Inverse of :meth:`to_dict`."""
        return cls(
            ns=int(data["ns"]),
            reference_ns=int(data["reference_ns"]),
            ratio=float(data["ratio"]),
            spread=float(data["spread"]),
            repeats=int(data["repeats"]),
        )


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class LatencyMeter:
    """How latencies are measured: the timer, rounds, warm-up, threads and batch size.

    Attributes:
        timer: the clock (default :class:`WallClock`).
        repeats: timed rounds; medians are taken over them.
        warmup: untimed rounds first (allocations, caches, lazy initialisation).
        threads: torch threads while timing (None: as set now).
        batch_size: inputs are the example's rows repeated to this batch size (None: the
            example as it is).
    """

    timer: LatencyTimer = field(default_factory=WallClock)
    repeats: int = DEFAULT_REPEATS
    warmup: int = DEFAULT_WARMUP
    threads: int | None = None
    batch_size: int | None = None

    def inputs(self, example: torch.Tensor) -> torch.Tensor:
        """The input latency is measured on: ``example`` at :attr:`batch_size`.

        Example:
            >>> LatencyMeter(batch_size=5).inputs(torch.zeros(2, 3)).shape
            torch.Size([5, 3])
        """
        if self.batch_size is None or self.batch_size == example.shape[0]:
            return example
        rows = torch.arange(self.batch_size, device=example.device) % example.shape[0]
        return example[rows].contiguous()

    def threads_set(self) -> contextlib.AbstractContextManager[None]:
        """Within the block torch runs on :attr:`threads` threads (restored afterwards)."""
        return _threads(self.threads)

    def sample(self, runs: Sequence[Run]) -> list[list[int]]:
        """``repeats`` timings of each run, taken round robin (reversed every other round)."""
        modules = {id(m): m for run in runs for m, _ in run}
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.threads_set())
            stack.enter_context(torch.inference_mode())
            for module in modules.values():
                stack.enter_context(eval_mode(module))
            for _ in range(self.warmup):
                for run in runs:
                    self._time(run)
            samples: list[list[int]] = [[] for _ in runs]
            for round_index in range(self.repeats):
                order = range(len(runs)) if round_index % 2 == 0 else range(len(runs) - 1, -1, -1)
                for index in order:
                    samples[index].append(self._time(runs[index]))
        return samples

    def _time(self, run: Run) -> int:
        return sum(self.timer(module, inputs) for module, inputs in run)

    def pair(self, run: Run, reference: Run) -> PairedLatency:
        """``run`` timed next to ``reference``, round by round."""
        measured, base = self.sample([run, reference])
        return PairedLatency.from_samples(measured, base)

    def compare(
        self, module: nn.Module, reference: nn.Module, example: torch.Tensor
    ) -> PairedLatency:
        """Two modules (e.g. a compressed model and the original) on :meth:`inputs` of
        ``example``, timed next to each other."""
        inputs = self.inputs(example)
        return self.pair([(module, inputs)], [(reference, inputs)])

    def describe(self, example: torch.Tensor) -> dict[str, Any]:
        """What a latency measured this way depends on (a dictionary's fingerprint holds it)."""
        return {
            "device": device_description(example),
            "threads": torch.get_num_threads() if self.threads is None else self.threads,
            "batch_size": int(self.inputs(example).shape[0]),
            "torch": torch.__version__,
            "timer": self.timer.name,
            "repeats": self.repeats,
        }


def device_description(tensor: torch.Tensor) -> str:
    """The device ``tensor`` lives on, by model name (a CPU's from ``/proc/cpuinfo``).

    Example:
        >>> device_description(torch.zeros(1)).startswith("cpu")
        True
    """
    if tensor.is_cuda:
        return f"cuda: {torch.cuda.get_device_name(tensor.device)}"
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{tensor.device.type}: {name} ({os.cpu_count()} logical cores)"


def module_inputs(
    model: nn.Module, inputs: torch.Tensor, names: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The input each module ``names`` receives (its first call) when ``model`` runs on
    ``inputs``, in eval mode.

    Raises:
        GreedyCompressError: a module that the forward pass never calls with a tensor.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> module_inputs(net, torch.zeros(5, 4), ["2"])["2"].shape
        torch.Size([5, 3])
    """
    seen: dict[str, torch.Tensor] = {}

    def hook_for(name: str) -> Any:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            if name not in seen and args and isinstance(args[0], torch.Tensor):
                seen[name] = args[0].detach()

        return hook

    handles = [model.get_submodule(n).register_forward_pre_hook(hook_for(n)) for n in names]
    try:
        with eval_mode(model), torch.inference_mode():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    missing = [n for n in names if n not in seen]
    if missing:
        raise GreedyCompressError(
            f"Modules {missing} are not called with a tensor in the forward pass, so their "
            "latency cannot be measured."
        )
    return seen
