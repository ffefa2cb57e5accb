"""Quantization as a scheme: a layer's candidates are weight bit widths.

``Quantize`` scores each layer with its weights at 8, 6, 4, 3 and 2 bits (symmetric per
output channel), optionally with its input activations at ``activation_bits`` on a range
calibrated from data. Its costs are exact in every metric: ``memory`` counts the weights at
their bits and the bias at 32 bits, ``bops`` the MACs at weight x activation bits (32 for
float activations), ``mac`` does not change (so quantization has nothing to offer there).

Layers reading the same tensor share its activation quantizer, so with activation
quantization they are decided together: the first of them carries the candidates and its
cost covers all of them; the others are skipped with the reason.

``CompressThenQuantize`` (names like ``"weight_svd+w4"``) chains a decomposition scheme
and weight quantization, so a mixed dictionary of such schemes lets the knapsack choose
one (scheme, rank, bits) per layer under one budget.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import Interval, bad_parameter, check, check_positive_int
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.bits import FLOAT_BITS
from greedy_compress.model.cost import Cost, CostMetric
from greedy_compress.model.hashing import tensor_hash
from greedy_compress.model.modes import eval_mode
from greedy_compress.model.profile import LayerInfo, ModelProfile
from greedy_compress.model.sampling import capture, take_samples
from greedy_compress.model.swap import Replacement
from greedy_compress.quantization import calibrate, quantize_layer, quantize_modules
from greedy_compress.schemes._base import Candidate, Factorization, Scheme

__all__ = [
    "DEFAULT_BITS",
    "CompressThenQuantize",
    "Quantize",
    "composite_parts",
    "quantized_cost",
]

DEFAULT_BITS = (8, 6, 4, 3, 2)
_BITS = Interval(int, 1, FLOAT_BITS - 1)


def quantized_cost(cost: Cost, bias: int, weight_bits: int, activation_bits: int) -> Cost:
    """``cost`` of a float layer with its weights at ``weight_bits`` (its ``bias``
    parameters stay 32-bit) and its MACs at ``weight_bits x activation_bits``.

    Example:
        >>> quantized_cost(Cost(macs=100, params=12), 2, 4, 8)
        Cost(macs=100, params=12, bits=104, bops=3200)
    """
    if weight_bits >= FLOAT_BITS:
        return cost
    bits = (cost.params - bias) * weight_bits + bias * FLOAT_BITS
    return Cost(cost.macs, cost.params, bits, cost.macs * weight_bits * activation_bits)


def _bias(layer: LayerInfo) -> int:
    return layer.out_channels if layer.bias else 0


class _QuantizeFactorization(Factorization):
    def __init__(
        self, modules: Mapping[str, nn.Module], activation_bits: int | None, samples: Any
    ) -> None:
        self.modules, self.activation_bits, self.samples = modules, activation_bits, samples

    def replacements(self, name: str, rank: int) -> dict[str, Replacement]:
        return dict(self._layers(rank))

    def _layers(self, rank: int) -> dict[str, nn.Module]:
        new: dict[str, nn.Module] = {}
        for member, module in self.modules.items():
            if rank >= FLOAT_BITS:
                new[member] = copy.deepcopy(module)
                continue
            layer = quantize_layer(module, weight_bits=rank, activation_bits=self.activation_bits)
            if self.activation_bits is not None:
                calibrate(layer, self.samples)
            new[member] = layer
        return new

    def build(self, rank: int) -> nn.Module:
        return self._layers(rank)[next(iter(self.modules))]


class Quantize(Scheme):
    """Weight bit widths as candidates (rank = weight bits; 32 = float).

    Args:
        bits: the weight bit widths scored, each in [1, 31].
        activation_bits: quantize each layer's input activations too (then ``data`` is
            needed to calibrate their ranges); None keeps activations float.
        data: input batches for calibration (e.g. a DataLoader).
        num_samples: how many inputs calibrate the ranges.

    Example:
        >>> scores = build_eval_scores(model, evaluator, scheme="quantize", cost="memory",
        ...                            input_shape=(1, 1, 8, 8), progress=False)
        >>> [e.rank for e in scores.layers["features.3"].entries]
        [2, 3, 4, 6, 8]
        >>> select(scores, target=0.15, solver="knapsack").predicted_ratio <= 0.15
        True
    """

    name = "quantize"
    rank_unit = "weight bits"

    def __init__(
        self,
        *,
        bits: Sequence[int] = DEFAULT_BITS,
        activation_bits: int | None = None,
        data: Iterable[Any] | None = None,
        num_samples: int = 64,
    ) -> None:
        owner = type(self).__name__
        if isinstance(bits, (str, bytes)) or not isinstance(bits, Sequence) or not bits:
            raise bad_parameter("bits", owner, "a non-empty list of ints in [1, 31]", bits)
        self.bits = tuple(sorted({check(b, _BITS, "bits", owner) for b in bits}))
        self.activation_bits = (
            None
            if activation_bits is None
            else check(activation_bits, _BITS, "activation_bits", owner)
        )
        self.data = data
        self.num_samples = check_positive_int(num_samples, "num_samples", owner)
        self._samples: torch.Tensor | None = None
        self._model: nn.Module | None = None
        self._inputs: dict[str, torch.Tensor] = {}
        self._members: dict[str, list[LayerInfo]] = {}
        self._followers: dict[str, str] = {}
        self._groups: dict[str, list[str]] = {}

    # data -------------------------------------------------------------------------------

    @property
    def uses_data(self) -> bool:
        return self.activation_bits is not None

    def with_data(self, data: Iterable[Any] | None) -> Scheme:
        if not self.uses_data or data is None or self.data is not None:
            return self
        given = copy.copy(self)
        given.data, given._samples = data, None
        return given

    def check_ready(self) -> None:
        if self.uses_data and self._samples is None:
            self._samples = take_samples(
                self.data, self.num_samples, f"{type(self).__name__} (activation_bits=...)"
            )

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "bits": list(self.bits),
            "activation_bits": self.activation_bits,
        }
        if self.uses_data:
            settings["samples"] = None if self._samples is None else tensor_hash(self._samples)
            settings["shared_input"] = dict(self._groups)
        return settings

    # model ------------------------------------------------------------------------------

    def prepare(
        self,
        model: nn.Module,
        *,
        example_input: torch.Tensor | None = None,
        profile: ModelProfile | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ModelProfile | None:
        recorded = (details or {}).get("scheme_settings") or {}
        recorded = recorded.get(self.name, recorded)  # a mixed selection's, by scheme
        if recorded.get("activation_bits", self.activation_bits) != self.activation_bits:
            raise GreedyCompressError(
                f"The selection was made with activation_bits={recorded['activation_bits']}; "
                f"build it with scheme=Quantize(activation_bits={recorded['activation_bits']}, "
                "data=...) (this scheme has activation_bits="
                f"{self.activation_bits})."
            )
        self._model, self._inputs, self._members, self._followers = model, {}, {}, {}
        if not self.uses_data:
            return profile
        self.check_ready()
        assert self._samples is not None
        names = [
            n
            for n, m in model.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and n
        ]
        groups = _shared_inputs(model, names, self._samples[:1])
        captured = capture(model, names, self._samples)
        self._inputs = {name: captured[name][0] for name in names}
        usable = set(names) if profile is None else set(profile.layers)
        self._groups = {}
        for members in groups:
            present = [m for m in members if m in usable]
            if len(present) > 1:
                self._groups[present[0]] = present
                self._followers.update({m: present[0] for m in present[1:]})
        if profile is None:
            return None
        layers = dict(profile.layers)
        for leader, present in self._groups.items():
            self._members[leader] = [layers[m] for m in present]
            total = Cost(0, 0)
            for member in present:
                total = total + layers[member].cost
            layers[leader] = _with_cost(layers[leader], total)
        return ModelProfile(profile.model_cost, layers, profile.unusable, profile.input_shape)

    def unsupported_reason(self, layer: LayerInfo, metric: CostMetric) -> str | None:
        if metric == "mac":
            return "quantization keeps every MAC (use cost='memory' or cost='bops')"
        return super().unsupported_reason(layer, metric)

    def skip_reason(self, layer: LayerInfo) -> str | None:
        leader = self._followers.get(layer.name)
        if leader is not None:
            return f"shares its input quantizer with {leader}; quantized with that layer"
        return None

    def max_rank(self, layer: LayerInfo) -> int:
        return FLOAT_BITS

    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        activation = FLOAT_BITS if self.activation_bits is None else self.activation_bits
        members = self._members.get(layer.name, [layer])
        total = Cost(0, 0)
        for member in members:
            total = total + quantized_cost(member.cost, _bias(member), rank, activation)
        return total

    def candidates(
        self, layer: LayerInfo, ratios: Sequence[float], metric: CostMetric, multiplicity: int = 1
    ) -> list[Candidate]:
        original = layer.cost.get(metric)
        found = []
        for bits in self.bits:
            cost = self.cost(layer, bits)
            found.append(
                Candidate(cost.get(metric) / original, bits, cost, cost.get(metric) / original)
            )
        return found

    def factorize(self, module: nn.Module) -> Factorization:
        if self.uses_data:
            raise GreedyCompressError(
                f"{self.name} with activation_bits calibrates on the model's data: use "
                "factorize_in(model, name) after prepare()."
            )
        return _QuantizeFactorization({"": module}, None, None)

    def factorize_in(self, model: nn.Module, name: str) -> Factorization:
        if not self.uses_data:
            return _QuantizeFactorization({name: model.get_submodule(name)}, None, None)
        if name not in self._inputs:
            raise GreedyCompressError(
                f"{self.name} has no calibration inputs for {name!r}: call prepare(model, "
                "example_input=...) first (build_eval_scores and apply_selection do)."
            )
        members = self._groups.get(name, [name])
        modules = {member: model.get_submodule(member) for member in members}
        return _QuantizeFactorization(modules, self.activation_bits, self._inputs[name])


def _with_cost(layer: LayerInfo, cost: Cost) -> LayerInfo:
    return dataclasses.replace(layer, cost=cost)


def _shared_inputs(model: nn.Module, names: Sequence[str], sample: torch.Tensor) -> list[list[str]]:
    """Groups (call order) of the layers that read the very same tensor."""
    readers: dict[int, list[str]] = {}
    keep: list[torch.Tensor] = []  # alive during the pass, so ids stay unique

    def hook(name: str):
        def record(_module: nn.Module, args: tuple[Any, ...]) -> None:
            keep.append(args[0])
            readers.setdefault(id(args[0]), []).append(name)

        return record

    handles = [model.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    try:
        with eval_mode(model), torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    return [group for group in readers.values() if len(group) > 1]


class CompressThenQuantize(Scheme):
    """``base`` (a decomposition scheme) at a rank, then its layers' weights at ``bits``.

    Registered-name form: ``"<base>+w<bits>"``, e.g. ``"weight_svd+w4"``.

    Example:
        >>> scheme = get_scheme("weight_svd+w4")
        >>> scheme.name, type(scheme.compress(nn.Linear(8, 8), 2)[0]).__name__
        ('weight_svd+w4', 'QuantizedLayer')
    """

    def __init__(self, base: Scheme, *, bits: int) -> None:
        owner = type(self).__name__
        if not isinstance(base, Scheme) or base.costs_interact or isinstance(base, Quantize):
            raise bad_parameter(
                "base", owner, "a decomposition scheme (not pruning, not quantize)", base
            )
        self.base = base
        self.bits = check(bits, _BITS, "bits", owner)
        self.name = f"{base.name}+w{self.bits}"  # type: ignore[misc]
        self.rank_unit = base.rank_unit  # type: ignore[misc]

    @property
    def uses_data(self) -> bool:
        return self.base.uses_data

    def with_data(self, data: Iterable[Any] | None) -> Scheme:
        given = self.base.with_data(data)
        return self if given is self.base else CompressThenQuantize(given, bits=self.bits)

    def check_ready(self) -> None:
        self.base.check_ready()

    def settings(self) -> dict[str, Any]:
        return {"base": self.base.settings(), "bits": self.bits}

    def prepare(self, model: nn.Module, **kwargs: Any) -> ModelProfile | None:
        return self.base.prepare(model, **kwargs)

    def skip_reason(self, layer: LayerInfo) -> str | None:
        return self.base.skip_reason(layer)

    def max_rank(self, layer: LayerInfo) -> int:
        return self.base.max_rank(layer)

    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        return quantized_cost(self.base.cost(layer, rank), _bias(layer), self.bits, FLOAT_BITS)

    def candidates(
        self, layer: LayerInfo, ratios: Sequence[float], metric: CostMetric, multiplicity: int = 1
    ) -> list[Candidate]:
        """The base scheme's ranks for ``ratios`` (of its own cost), each then quantized:
        the grid spans rank x bits, below what either reaches alone."""
        original = layer.cost.get(metric)
        found = []
        for ratio in ratios:
            rank = self.base.rank_for_ratio(layer, ratio, metric, multiplicity)
            cost = self.cost(layer, rank)
            found.append(Candidate(ratio, rank, cost, cost.get(metric) / original))
        return found

    def factorize(self, module: nn.Module) -> Factorization:
        return _Quantized(self.base.factorize(module), self.bits)

    def factorize_in(self, model: nn.Module, name: str) -> Factorization:
        return _Quantized(self.base.factorize_in(model, name), self.bits)


class _Quantized(Factorization):
    def __init__(self, inner: Factorization, bits: int) -> None:
        self.inner, self.bits = inner, bits

    def build(self, rank: int) -> nn.Module:
        return quantize_modules(self.inner.build(rank), weight_bits=self.bits)


_COMPOSITE = re.compile(r"^(?P<base>.+)\+w(?P<bits>\d+)$")


def composite_parts(name: str) -> tuple[str, int] | None:
    """``("weight_svd", 4)`` for ``"weight_svd+w4"``; None for other names."""
    match = _COMPOSITE.match(name)
    return None if match is None else (match["base"], int(match["bits"]))
