"""Cost of a model or a layer: multiply-accumulates (measured by torch), parameter count and,
where it was measured, latency (:mod:`greedy_compress.model.latency`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from greedy_compress._util.constraints import check_choice
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.attention_flops import ATTENTION_FLOPS
from greedy_compress.model.modes import eval_mode

__all__ = [
    "ANALYTIC_METRICS",
    "COST_METRICS",
    "Cost",
    "CostMetric",
    "check_metric",
    "count_macs",
    "measure_cost",
]

CostMetric = Literal["mac", "memory", "latency"]
COST_METRICS: tuple[str, ...] = ("mac", "memory", "latency")
# What a scheme computes from shapes alone; latency is measured (a dictionary's).
ANALYTIC_METRICS: tuple[str, ...] = ("mac", "memory")


def _plus(a: int | None, b: int | None, sign: int) -> int | None:
    """Latency arithmetic: an unmeasured side counts 0; unmeasured on both stays None."""
    return None if a is None and b is None else (a or 0) + sign * (b or 0)


@dataclass(frozen=True, repr=False)
class Cost:
    """MACs of one forward pass on the example input, the number of parameters and, when it
    was measured, the latency in integer nanoseconds (``latency_ns``; None otherwise)."""

    macs: int
    params: int
    latency_ns: int | None = None

    def get(self, metric: CostMetric) -> int:
        """Return the figure for ``metric``: ``"mac"`` -> macs, ``"memory"`` -> params,
        ``"latency"`` -> latency_ns.

        Raises:
            GreedyCompressError: ``"latency"`` of a cost whose latency was not measured.
        """
        if metric == "latency":
            if self.latency_ns is None:
                raise GreedyCompressError(
                    "This cost has no measured latency: build the dictionary with "
                    "cost='latency' to select by latency."
                )
            return self.latency_ns
        return self.macs if metric == "mac" else self.params

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.macs + other.macs,
            self.params + other.params,
            _plus(self.latency_ns, other.latency_ns, 1),
        )

    def __sub__(self, other: Cost) -> Cost:
        return Cost(
            self.macs - other.macs,
            self.params - other.params,
            _plus(self.latency_ns, other.latency_ns, -1),
        )

    def __repr__(self) -> str:  # unmeasured figures (None) are left out
        figures = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
        return "Cost(" + ", ".join(f"{k}={v!r}" for k, v in figures if v is not None) + ")"

    def to_dict(self) -> dict[str, int]:
        """Plain-data form for JSON (``latency_ns`` only when measured)."""
        data = {"macs": self.macs, "params": self.params}
        if self.latency_ns is not None:
            data["latency_ns"] = self.latency_ns
        return data

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> Cost:
        """Inverse of :meth:`to_dict`."""
        latency = data.get("latency_ns")
        return cls(
            int(data["macs"]), int(data["params"]), None if latency is None else int(latency)
        )


def check_metric(metric: object, owner: str, *, analytic: bool = False) -> CostMetric:
    """Validate a cost-metric name, listing the valid ones on error; ``analytic=True``
    refuses ``"latency"`` (for what is computed without a dictionary's measurements)."""
    choices = ANALYTIC_METRICS if analytic else COST_METRICS
    return check_choice(metric, choices, "cost", owner)  # type: ignore[return-value]


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Count multiply-accumulates of ``module(*inputs)`` with torch's own flop counter.

    torch counts a multiply-accumulate as two flops; bias additions and element-wise
    operations are not counted, which is the usual MAC convention. Attention is counted
    whole on every path, fused eval-mode kernels included (see
    :mod:`greedy_compress.model.attention_flops`).

    Example:
        >>> count_macs(nn.Linear(4, 3, bias=False), torch.zeros(2, 4))
        24
    """
    counter = FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOPS)
    with eval_mode(module), torch.inference_mode(), counter:
        module(*inputs)
    return counter.get_total_flops() // 2


def measure_cost(module: nn.Module, *inputs: torch.Tensor) -> Cost:
    """Measure a module's MACs on ``inputs`` and count its (distinct) parameters.

    Example:
        >>> measure_cost(nn.Linear(4, 3), torch.zeros(1, 4))
        Cost(macs=12, params=15)
    """
    params = sum(p.numel() for p in module.parameters())
    return Cost(count_macs(module, *inputs), params)
