"""Cost of a model or a layer: multiply-accumulates (measured by torch), parameter count,
storage bits and bit operations.

Four metrics read these figures: ``"mac"`` (MACs), ``"memory"`` (parameter storage; kept as
a whole number of *bits* so that 3-bit layers stay exact, shown as bytes = bits / 8) and
``"bops"`` (bit operations: MACs x weight bits x activation bits, AIMET's and HAWQ's
measure). An unquantized float32 parameter is 32 bits and an unquantized MAC 32 x 32 bit
operations, so a float32 model's memory is its real parameter bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from greedy_compress._util.constraints import check_choice
from greedy_compress.model.bits import FLOAT_BITS, LowBitLayer
from greedy_compress.model.modes import eval_mode

__all__ = [
    "COST_METRICS",
    "Cost",
    "CostMetric",
    "check_metric",
    "count_macs",
    "float32_reason",
    "measure_cost",
]

CostMetric = Literal["mac", "memory", "bops"]
COST_METRICS: tuple[str, ...] = ("mac", "memory", "bops")
_FLOAT_BOPS = FLOAT_BITS * FLOAT_BITS


@dataclass(frozen=True)
class Cost:
    """MACs of one forward pass on the example input, the number of parameters, their
    storage in bits and the bit operations of the MACs.

    ``bits`` and ``bops`` default to the float32 figures (32 bits per parameter, 32 x 32
    per MAC), so a float layer's cost is ``Cost(macs, params)``.

    Example:
        >>> Cost(10, 3)
        Cost(macs=10, params=3, bits=96, bops=10240)
        >>> Cost(10, 3).bytes, Cost(10, 3, bits=24, bops=320).get("memory")
        (12.0, 24)
    """

    macs: int
    params: int
    # None (the default) stands for the float32 figure; differences of costs may be negative.
    bits: int = None  # type: ignore[assignment]
    bops: int = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.bits is None:
            object.__setattr__(self, "bits", FLOAT_BITS * self.params)
        if self.bops is None:
            object.__setattr__(self, "bops", _FLOAT_BOPS * self.macs)

    @property
    def bytes(self) -> float:
        """Parameter storage in bytes (``bits / 8``)."""
        return self.bits / 8

    def get(self, metric: CostMetric) -> int:
        """The figure for ``metric``: ``"mac"`` -> macs, ``"memory"`` -> bits (of
        parameter storage), ``"bops"`` -> bops."""
        if metric == "mac":
            return self.macs
        return self.bits if metric == "memory" else self.bops

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.macs + other.macs,
            self.params + other.params,
            self.bits + other.bits,
            self.bops + other.bops,
        )

    def __sub__(self, other: Cost) -> Cost:
        return Cost(
            self.macs - other.macs,
            self.params - other.params,
            self.bits - other.bits,
            self.bops - other.bops,
        )

    def to_dict(self) -> dict[str, int]:
        """Plain-data form for JSON."""
        return {"macs": self.macs, "params": self.params, "bits": self.bits, "bops": self.bops}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cost:
        """Inverse of :meth:`to_dict`; files without ``bits`` / ``bops`` (written before
        they existed, all float32) get the float32 figures."""
        bits, bops = data.get("bits"), data.get("bops")
        return cls(
            int(data["macs"]),
            int(data["params"]),
            None if bits is None else int(bits),  # type: ignore[arg-type]
            None if bops is None else int(bops),  # type: ignore[arg-type]
        )


def check_metric(metric: object, owner: str) -> CostMetric:
    """Validate a cost-metric name, listing the valid ones on error."""
    return check_choice(metric, COST_METRICS, "cost", owner)  # type: ignore[return-value]


def float32_reason(cost: Cost, metric: CostMetric) -> str | None:
    """Why a layer of measured ``cost`` cannot be priced analytically in ``metric``: the
    schemes price memory and BOPs for float32 layers, so any other storage is refused
    rather than priced wrong. None when it can be.

    Example:
        >>> print(float32_reason(Cost(10, 3, bits=192), "memory"))
        its parameters are not float32 (64 bits each); memory and bops are priced for float32 layers
        >>> float32_reason(Cost(10, 3, bits=192), "mac") is None
        True
    """
    if metric == "mac" or cost == Cost(cost.macs, cost.params):
        return None
    width = cost.bits / max(1, cost.params)
    return (
        f"its parameters are not float32 ({width:g} bits each); memory and bops are priced "
        "for float32 layers"
    )


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Count multiply-accumulates of ``module(*inputs)`` with torch's own flop counter.

    torch counts a multiply-accumulate as two flops; bias additions and element-wise
    operations are not counted, which is the usual MAC convention.

    Example:
        >>> count_macs(nn.Linear(4, 3, bias=False), torch.zeros(2, 4))
        24
    """
    return _measure_macs(module, inputs)[0]


def _measure_macs(
    module: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> tuple[int, dict[int, int]]:
    """Total MACs, and the MACs of each low-bit layer (by ``id``) within them."""
    low_bit = [m for m in module.modules() if isinstance(m, LowBitLayer)]
    own: dict[int, int] = {}
    with eval_mode(module), torch.inference_mode(), FlopCounterMode(display=False) as counter:
        handles = []
        for layer in low_bit:

            def before(mod: nn.Module, _args: Any) -> None:
                own[id(mod)] = own.get(id(mod), 0) - counter.get_total_flops()

            def after(mod: nn.Module, _args: Any, _out: Any) -> None:
                own[id(mod)] += counter.get_total_flops()

            handles += [layer.register_forward_pre_hook(before), layer.register_forward_hook(after)]
        try:
            module(*inputs)
        finally:
            for handle in handles:
                handle.remove()
    return counter.get_total_flops() // 2, {key: flops // 2 for key, flops in own.items()}


def _stored_weight(layer: nn.Module) -> nn.Parameter:
    """The parameter holding ``layer``'s weight (the original under a parametrization)."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations["weight"].original  # type: ignore[union-attr,index]
    return layer.get_parameter("weight")


def measure_cost(module: nn.Module, *inputs: torch.Tensor) -> Cost:
    """Measure a module's MACs on ``inputs``, count its (distinct) parameters, their storage
    bits (a dtype's width; a low-bit layer's weight at its declared bits) and the bit
    operations (a low-bit layer's MACs at its weight x activation bits, others at 32 x 32).

    Example:
        >>> measure_cost(nn.Linear(4, 3), torch.zeros(1, 4))
        Cost(macs=12, params=15, bits=480, bops=12288)
    """
    params = list(module.parameters())
    low_bit = [m for m in module.modules() if isinstance(m, LowBitLayer)]
    weight_bits = {id(_stored_weight(layer.layer)): layer.weight_bits for layer in low_bit}
    bits = sum(p.numel() * weight_bits.get(id(p), p.element_size() * 8) for p in params)
    macs, own = _measure_macs(module, inputs)
    bops = _FLOAT_BOPS * macs
    for layer in low_bit:
        layer_macs = own.get(id(layer), 0)
        bops += layer_macs * (layer.weight_bits * layer.activation_bits - _FLOAT_BOPS)
    return Cost(macs, sum(p.numel() for p in params), bits, bops)
