"""Cost of a model or a layer: multiply-accumulates (measured by torch) and parameter count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from greedy_compress._util.constraints import check_choice
from greedy_compress.model.attention_flops import ATTENTION_FLOPS
from greedy_compress.model.modes import eval_mode

__all__ = ["COST_METRICS", "Cost", "CostMetric", "check_metric", "count_macs", "measure_cost"]

CostMetric = Literal["mac", "memory"]
COST_METRICS: tuple[str, ...] = ("mac", "memory")


@dataclass(frozen=True)
class Cost:
    """MACs of one forward pass on the example input, and the number of parameters."""

    macs: int
    params: int

    def get(self, metric: CostMetric) -> int:
        """Return the figure for ``metric``: ``"mac"`` -> macs, ``"memory"`` -> params."""
        return self.macs if metric == "mac" else self.params

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)

    def __sub__(self, other: Cost) -> Cost:
        return Cost(self.macs - other.macs, self.params - other.params)

    def to_dict(self) -> dict[str, int]:
        """Plain-data form for JSON."""
        return {"macs": self.macs, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> Cost:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["macs"]), int(data["params"]))


def check_metric(metric: object, owner: str) -> CostMetric:
    """Validate a cost-metric name, listing the valid ones on error."""
    return check_choice(metric, COST_METRICS, "cost", owner)  # type: ignore[return-value]


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
