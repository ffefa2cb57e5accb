"""The quantizer interface (NNI's): one class, one registry line.

A quantizer takes the model and an NNI ``config_list`` (``quant_types``, ``quant_bits``,
``op_types`` / ``op_names`` / ``exclude``); :meth:`Quantizer.compress` wraps each
configured layer in a :class:`~greedy_compress.quantization.QuantizedLayer` (in place, like
NNI) whose forward pass calls the quantizer's :meth:`~Quantizer.quantize_weight`,
:meth:`~Quantizer.quantize_input` and :meth:`~Quantizer.quantize_output`. The training
loop calls :meth:`~Quantizer.update_epoch` at each epoch and :meth:`~Quantizer.step`
after each batch (no-ops unless a quantizer uses them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from greedy_compress._util.constraints import Constraint, bad_parameter
from greedy_compress._util.registry import Registry
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.config_list import ConfigList, ConfigSpec, resolve_config_list
from greedy_compress.quantization.bn_fold import batch_norm_pairs
from greedy_compress.quantization.fake import QuantGrid, activation_grid
from greedy_compress.quantization.layer import QUANT_TYPES, QuantizedLayer

__all__ = [
    "Quantizer",
    "available_quantizers",
    "get_quantizer",
    "register_quantizer",
    "track_range",
]

MAX_BITS = 32


@dataclass(frozen=True)
class _QuantTypes(Constraint):
    allowed: tuple[str, ...]

    @property
    def description(self) -> str:  # type: ignore[override]
        return "a non-empty list of " + ", ".join(map(repr, self.allowed))

    def accept(self, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            raise TypeError(value)
        if any(item not in self.allowed for item in value):
            raise ValueError(value)
        return list(dict.fromkeys(value))

    def invalid(self) -> list[Any]:
        return [[], ["bias"], 3]


def _is_bits(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 1 <= value <= MAX_BITS


@dataclass(frozen=True)
class _QuantBits(Constraint):
    """An int of bits in [1, 32], or ``{quant type: bits}``."""

    description = f"an int in [1, {MAX_BITS}] or a dict {{quant type: int in [1, {MAX_BITS}]}}"

    def accept(self, value: Any) -> Any:
        if _is_bits(value):
            return value
        if (
            isinstance(value, Mapping)
            and value
            and all(k in QUANT_TYPES for k in value)
            and all(map(_is_bits, value.values()))
        ):
            return dict(value)
        raise ValueError(value)

    def invalid(self) -> list[Any]:
        return [0, 1.5, 33, True, {"bias": 8}, {"weight": 0}]


def _bits_for_types(config: dict[str, Any]) -> str | None:
    bits = config["quant_bits"]
    missing = [t for t in config["quant_types"] if isinstance(bits, dict) and t not in bits]
    if missing:
        return f"quant_bits for every quant type (missing {', '.join(missing)})"
    return None


class Quantizer:
    """Base of every quantizer. Subclasses set ``name`` and override the hooks they use.

    Class attributes a subclass may set:
        name: the registry name.
        quant_types: which tensors it can quantize.
        default_types: what ``op_types: ["default"]`` stands for.
        extra_keys: its own config keys, with their constraints and defaults.
        fold_batch_norm: whether :meth:`compress` folds the BatchNorm after a conv into it.

    Args:
        model: the model to quantize; :meth:`compress` modifies it in place.
        config_list: NNI entries (see :mod:`greedy_compress.model.config_list`), each with
            ``quant_types`` and ``quant_bits`` (an int or ``{type: bits}``).
    """

    name: ClassVar[str]
    quant_types: ClassVar[tuple[str, ...]] = QUANT_TYPES
    default_types: ClassVar[tuple[str, ...]] = ("Conv1d", "Conv2d", "Linear")
    supported_types: ClassVar[tuple[str, ...]] = ("Conv1d", "Conv2d", "Linear")
    extra_keys: ClassVar[dict[str, tuple[Constraint, Any]]] = {}
    fold_batch_norm: ClassVar[bool] = False

    def __init__(self, model: nn.Module, config_list: ConfigList) -> None:
        if not isinstance(model, nn.Module):
            raise bad_parameter("model", type(self).__name__, "an nn.Module", model)
        self.model = model
        self.configs = resolve_config_list(model, config_list, self.spec())
        for config in self.configs.values():
            bits = config["quant_bits"]
            config["quant_bits"] = (
                {t: bits for t in config["quant_types"]} if isinstance(bits, int) else bits
            )
        self.epoch = 0
        self.steps = 0
        self.compressed = False

    @classmethod
    def spec(cls) -> ConfigSpec:
        """What this quantizer's config list accepts."""
        return ConfigSpec(
            owner=cls.__name__,
            default_types=cls.default_types,
            supported_types=cls.supported_types,
            keys={
                "quant_types": _QuantTypes(cls.quant_types),
                "quant_bits": _QuantBits(),
                **{key: rule for key, (rule, _) in cls.extra_keys.items()},
            },
            required=("quant_types", "quant_bits"),
            defaults={key: default for key, (_, default) in cls.extra_keys.items()},
            check_entry=_bits_for_types,
        )

    # The interface a new quantizer overrides --------------------------------------------

    def quantize_weight(
        self, weight: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        """The fake-quantized ``weight`` (same shape, float); identity by default."""
        return weight

    def quantize_input(
        self, inputs: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        """The fake-quantized input of ``layer``; identity by default."""
        return inputs

    def quantize_output(
        self, output: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        """The fake-quantized output of ``layer``; identity by default."""
        return output

    def weight_grid(self, weight: torch.Tensor, config: dict[str, Any]) -> QuantGrid | None:
        """The integer grid :meth:`quantize_weight` rounds to (what export stores), or None
        when it has none (then export refuses to write integer weights)."""
        return None

    def activation_grid(
        self, layer: QuantizedLayer, kind: str, config: dict[str, Any]
    ) -> QuantGrid | None:
        """The grid of ``layer``'s ``"input"`` or ``"output"`` activations: by default from
        the range tracked in the layer's buffers (None before any was tracked)."""
        if not bool(getattr(layer, f"{kind}_tracked")):
            return None
        low, high = getattr(layer, f"{kind}_range").tolist()
        return activation_grid(low, high, int(config["quant_bits"][kind]))

    def update_epoch(self, epoch: int) -> None:
        """Called at the start of each training epoch."""
        self.epoch = int(epoch)

    def step(self) -> None:
        """Called after each training batch."""
        self.steps += 1

    # Shared behaviour -------------------------------------------------------------------

    def compress(self) -> nn.Module:
        """Wrap every configured layer of the model (in place) and return the model.

        Raises:
            GreedyCompressError: the quantizer was already applied.
        """
        if self.compressed:
            raise GreedyCompressError(f"{type(self).__name__}.compress() was already called.")
        pairs: dict[str, str] = {}
        if self.fold_batch_norm:
            pairs = batch_norm_pairs(self.model)
        for name, config in self.configs.items():
            layer = self.model.get_submodule(name)
            bn = None
            if name in pairs:
                bn = self.model.get_submodule(pairs[name])
                self.model.set_submodule(pairs[name], nn.Identity())
            wrapped = QuantizedLayer(layer, quantizer=self, config=config, bn=bn)  # type: ignore[arg-type]
            self.model.set_submodule(name, wrapped)
        self.compressed = True
        return self.model

    def quantized_layers(self) -> dict[str, QuantizedLayer]:
        """The model's quantized layers by name (after :meth:`compress`)."""
        return {
            n: m
            for n, m in self.model.named_modules()
            if isinstance(m, QuantizedLayer) and m.quantizer is self
        }


def track_range(layer: QuantizedLayer, kind: str, x: torch.Tensor, *, decay: float | None) -> None:
    """Update ``layer``'s ``kind`` range from ``x``: its min and max the first time, then an
    exponential moving average with weight ``decay`` on the old range (None: the running
    min and max, for calibration)."""
    low, high = float(x.detach().min()), float(x.detach().max())
    buffer = getattr(layer, f"{kind}_range")
    tracked = getattr(layer, f"{kind}_tracked")
    if bool(tracked):
        old_low, old_high = buffer.tolist()
        if decay is None:
            low, high = min(low, old_low), max(high, old_high)
        else:
            low = decay * old_low + (1 - decay) * low
            high = decay * old_high + (1 - decay) * high
    buffer.copy_(torch.tensor([low, high]))
    tracked.fill_(True)


_QUANTIZERS: Registry[Quantizer] = Registry("quantizer", Quantizer)


def register_quantizer(cls: type[Quantizer]) -> type[Quantizer]:
    """Add a quantizer class under its ``name`` (usable as a decorator)."""
    return _QUANTIZERS.register(cls)


def available_quantizers() -> list[str]:
    """Names of the registered quantizers, sorted."""
    return _QUANTIZERS.names()


def get_quantizer(name: str, owner: str = "get_quantizer") -> type[Quantizer]:
    """The quantizer class registered as ``name``."""
    return _QUANTIZERS.get_class(name, owner)
