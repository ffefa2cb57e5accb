"""A Conv/Linear computed with fake-quantized weights and activations.

:class:`QuantizedLayer` wraps the float layer (its weights stay float and trainable) and asks
a quantizer for the fake-quantized weight, input and output on every forward pass: the same
object serves the dictionary's candidates, post-training quantization and training-aware
quantization inside the user's loop. With a BatchNorm attached (QAT's folding) it quantizes
the folded weights, as an integer kernel would run them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from greedy_compress.model.bits import FLOAT_BITS, LowBitLayer
from greedy_compress.quantization.bn_fold import folded_parameters
from greedy_compress.quantization.fake import QuantGrid

if TYPE_CHECKING:
    from greedy_compress.quantization._base import Quantizer

__all__ = ["QUANT_TYPES", "QuantizedLayer"]

QUANT_TYPES = ("weight", "input", "output")


class QuantizedLayer(LowBitLayer):
    """``layer`` with the quant types of ``config`` fake-quantized by ``quantizer``.

    Args:
        layer: an ``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Linear`` (kept, float).
        quantizer: the object whose ``quantize_weight`` / ``quantize_input`` /
            ``quantize_output`` do the work (see :class:`~greedy_compress.quantization.Quantizer`).
        config: ``{"quant_types": [...], "quant_bits": {type: bits}, ...}``.
        bn: a BatchNorm folded into the layer (training: batch statistics, as Jacob et al.
            2018 simulate it; eval: running statistics folded into weight and bias).

    Buffers ``input_range`` / ``output_range`` hold the activation ranges tracked so far
    (``[low, high]``; ``*_tracked`` says whether any were seen), so they are saved with the
    state dict.
    """

    def __init__(
        self,
        layer: nn.Module,
        *,
        quantizer: Quantizer,
        config: dict[str, Any],
        bn: nn.modules.batchnorm._BatchNorm | None = None,
    ) -> None:
        super().__init__()
        self.layer = layer
        self.bn = bn
        self.config = config
        object.__setattr__(self, "quantizer", quantizer)  # not a submodule, not saved
        for kind in ("input", "output"):
            self.register_buffer(f"{kind}_range", torch.zeros(2))
            self.register_buffer(f"{kind}_tracked", torch.tensor(False))

    quantizer: Quantizer
    bn: nn.modules.batchnorm._BatchNorm | None

    def _float_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        layer = cast(Any, self.layer)  # a Conv1d, Conv2d or Linear
        return layer.weight, layer.bias

    @property
    def quant_types(self) -> list[str]:
        """The quantized tensors: some of ``"weight"``, ``"input"``, ``"output"``."""
        return list(self.config["quant_types"])

    def bits(self, kind: str) -> int:
        """Bits of quant type ``kind`` (32 when it is not quantized)."""
        return int(self.config["quant_bits"][kind]) if kind in self.quant_types else FLOAT_BITS

    @property
    def weight_bits(self) -> int:
        return self.bits("weight")

    @property
    def activation_bits(self) -> int:
        return self.bits("input")

    def effective_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The float weight and bias the layer computes with before weight quantization
        (the batch norm folded in with its running statistics, when attached)."""
        weight, bias = self._float_parameters()
        if self.bn is not None:
            weight, bias = folded_parameters(weight, bias, self.bn)
        return weight, bias

    def quantized_weight(self) -> torch.Tensor:
        """The fake-quantized weight of eval mode (what export stores as integers)."""
        weight, _ = self.effective_parameters()
        if "weight" not in self.quant_types:
            return weight
        return self.quantizer.quantize_weight(weight, self.config, layer=self)

    def weight_grid(self) -> QuantGrid | None:
        """The integer grid of the quantized weight, or None (custom quantizers that give
        none, or an unquantized weight)."""
        if "weight" not in self.quant_types:
            return None
        return self.quantizer.weight_grid(self.effective_parameters()[0], self.config)

    def activation_grid(self, kind: str) -> QuantGrid | None:
        """The integer grid of the ``"input"`` or ``"output"`` activations, or None."""
        if kind not in self.quant_types:
            return None
        return self.quantizer.activation_grid(self, kind, self.config)

    def _compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, weight, bias)
        return cast(Any, self.layer)._conv_forward(x, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        types = self.config["quant_types"]
        if "input" in types:
            x = self.quantizer.quantize_input(x, self.config, layer=self)
        weight, bias = self._float_parameters()
        if self.bn is not None and self.training:
            # Jacob et al. 2018: quantize the weights scaled by the running statistics,
            # undo the scale, and let the BatchNorm normalize with the batch's statistics.
            bn = self.bn
            assert bn.running_var is not None
            gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
            factor = gamma / torch.sqrt(bn.running_var + bn.eps)
            shape = [-1] + [1] * (weight.dim() - 1)
            scaled = weight * factor.reshape(shape)
            if "weight" in types:
                scaled = self.quantizer.quantize_weight(scaled, self.config, layer=self)
            out_shape = [1, -1] + [1] * (x.dim() - 2)
            y = self._compute(x, scaled, None) / factor.reshape(out_shape)
            if bias is not None:
                y = y + bias.reshape(out_shape)
            y = bn(y)
        else:
            if self.bn is not None:
                weight, bias = folded_parameters(weight, bias, self.bn)
            if "weight" in types:
                weight = self.quantizer.quantize_weight(weight, self.config, layer=self)
            y = self._compute(x, weight, bias)
        if "output" in types:
            y = self.quantizer.quantize_output(y, self.config, layer=self)
        return y

    def extra_repr(self) -> str:
        bits = ", ".join(f"{kind}={self.bits(kind)}" for kind in self.quant_types)
        name = type(self.quantizer).__name__
        return f"{name}, bits: {bits}" + (", batch norm folded" if self.bn is not None else "")
