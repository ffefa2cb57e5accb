"""Cost of a model or a layer: multiply-accumulates (measured by torch), parameter count,
storage bits, bit operations and, where it was measured, latency
(:mod:`greedy_compress.model.latency`).

Four metrics read these figures: ``"mac"`` (MACs), ``"memory"`` (parameter storage; kept as
a whole number of *bits* so that 3-bit layers stay exact, shown as bytes = bits / 8),
``"bops"`` (bit operations: MACs x weight bits x activation bits, AIMET's and HAWQ's
measure) and ``"latency"`` (integer nanoseconds, measured by a latency dictionary). An
unquantized float32 parameter is 32 bits and an unquantized MAC 32 x 32 bit operations, so a
float32 model's memory is its real parameter bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from greedy_compress._util.constraints import check_choice
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.attention_flops import ATTENTION_FLOPS
from greedy_compress.model.bits import FLOAT_BITS, LowBitLayer
from greedy_compress.model.mask import masked_originals
from greedy_compress.model.modes import eval_mode
from greedy_compress.model.sparse_storage import stored_weight_bytes, stores_sparse

__all__ = [
    "ANALYTIC_METRICS",
    "COST_METRICS",
    "Cost",
    "CostMetric",
    "check_metric",
    "count_macs",
    "float32_reason",
    "measure_cost",
]

CostMetric = Literal["mac", "memory", "bops", "latency"]
COST_METRICS: tuple[str, ...] = ("mac", "memory", "bops", "latency")
# What a scheme computes from shapes alone; latency is measured (a dictionary's).
ANALYTIC_METRICS: tuple[str, ...] = ("mac", "memory", "bops")
_FLOAT_BOPS = FLOAT_BITS * FLOAT_BITS


def _plus(a: int | None, b: int | None, sign: int) -> int | None:
    """Latency arithmetic: an unmeasured side counts 0; unmeasured on both stays None."""
    return None if a is None and b is None else (a or 0) + sign * (b or 0)


@dataclass(frozen=True, repr=False)
class Cost:
    """MACs of one forward pass on the example input, the number of parameters, their
    storage in bits, the bit operations of the MACs and, when it was measured, the latency
    in integer nanoseconds (``latency_ns``; None otherwise).

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
    latency_ns: int | None = None

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
        parameter storage), ``"bops"`` -> bops, ``"latency"`` -> latency_ns.

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
        if metric == "mac":
            return self.macs
        return self.bits if metric == "memory" else self.bops

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.macs + other.macs,
            self.params + other.params,
            self.bits + other.bits,
            self.bops + other.bops,
            _plus(self.latency_ns, other.latency_ns, 1),
        )

    def __sub__(self, other: Cost) -> Cost:
        return Cost(
            self.macs - other.macs,
            self.params - other.params,
            self.bits - other.bits,
            self.bops - other.bops,
            _plus(self.latency_ns, other.latency_ns, -1),
        )

    def __repr__(self) -> str:  # unmeasured figures (None) are left out
        figures = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
        return "Cost(" + ", ".join(f"{k}={v!r}" for k, v in figures if v is not None) + ")"

    def to_dict(self) -> dict[str, int]:
        """Plain-data form for JSON (``latency_ns`` only when measured)."""
        data = {"macs": self.macs, "params": self.params, "bits": self.bits, "bops": self.bops}
        if self.latency_ns is not None:
            data["latency_ns"] = self.latency_ns
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cost:
        """Inverse of :meth:`to_dict`; files without ``bits`` / ``bops`` (written before
        they existed, all float32) get the float32 figures."""
        bits, bops, latency = data.get("bits"), data.get("bops"), data.get("latency_ns")
        return cls(
            int(data["macs"]),
            int(data["params"]),
            None if bits is None else int(bits),  # type: ignore[arg-type]
            None if bops is None else int(bops),  # type: ignore[arg-type]
            None if latency is None else int(latency),
        )


def check_metric(metric: object, owner: str, *, analytic: bool = False) -> CostMetric:
    """Validate a cost-metric name, listing the valid ones on error; ``analytic=True``
    refuses ``"latency"`` (for what is computed without a dictionary's measurements)."""
    choices = ANALYTIC_METRICS if analytic else COST_METRICS
    return check_choice(metric, choices, "cost", owner)  # type: ignore[return-value]


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
    if metric in ("mac", "latency") or (
        cost.bits == FLOAT_BITS * cost.params and cost.bops == _FLOAT_BOPS * cost.macs
    ):
        return None
    width = cost.bits / max(1, cost.params)
    return (
        f"its parameters are not float32 ({width:g} bits each); memory and bops are priced "
        "for float32 layers"
    )


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
    return _measure_macs(module, inputs)[0]


@contextmanager
def _frozen_masked(module: nn.Module) -> Iterator[None]:
    """Masked parameters with ``requires_grad`` off for a while: the flop counter hooks the
    gradient of every module input that requires it, and a parametrization's input (the
    stored parameter) has no gradient graph under inference mode."""
    frozen = [p for p, _ in masked_originals(module) if p.requires_grad]
    for param in frozen:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in frozen:
            param.requires_grad_(True)


def _measure_macs(
    module: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> tuple[int, dict[int, int]]:
    """Total MACs, and the MACs of each low-bit layer (by ``id``) within them."""
    low_bit = [m for m in module.modules() if isinstance(m, LowBitLayer)]
    own: dict[int, int] = {}
    with (
        eval_mode(module),
        _frozen_masked(module),
        torch.inference_mode(),
        FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOPS) as counter,
    ):
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
    bits (a dtype's width; a low-bit layer's weight at its declared bits; a masked weight as
    the sparse export stores it, :mod:`greedy_compress.model.sparse_storage`: its kept
    entries and their indices, or dense when that is smaller) and the bit operations (a
    low-bit layer's MACs at its weight x activation bits, others at 32 x 32). A mask keeps
    every MAC: dense kernels multiply the zeros too.

    Example:
        >>> measure_cost(nn.Linear(4, 3), torch.zeros(1, 4))
        Cost(macs=12, params=15, bits=480, bops=12288)
    """
    params = list(module.parameters())
    low_bit = [m for m in module.modules() if isinstance(m, LowBitLayer)]
    weight_bits = {id(_stored_weight(layer.layer)): layer.weight_bits for layer in low_bit}
    stored = {
        id(p): (p.numel(), p.numel() * weight_bits.get(id(p), p.element_size() * 8)) for p in params
    }
    for param, mask in masked_originals(module):
        if id(param) in weight_bits:  # a low-bit weight is priced at its bits, masked or not
            continue
        shape, kept, width = tuple(param.shape), int(mask.count_nonzero()), param.element_size()
        count = kept if stores_sparse(shape, kept, width) else param.numel()
        stored[id(param)] = (count, 8 * stored_weight_bytes(shape, kept, width))
    macs, own = _measure_macs(module, inputs)
    bops = _FLOAT_BOPS * macs
    for layer in low_bit:
        layer_macs = own.get(id(layer), 0)
        bops += layer_macs * (layer.weight_bits * layer.activation_bits - _FLOAT_BOPS)
    counts, bits = sum(c for c, _ in stored.values()), sum(b for _, b in stored.values())
    return Cost(macs, counts, bits, bops)
