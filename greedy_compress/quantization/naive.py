"""NNI's Naive quantizer: weights only, symmetric max-abs per output channel."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from greedy_compress.quantization._base import Quantizer, register_quantizer
from greedy_compress.quantization.fake import QuantGrid, fake_quantize, symmetric_weight_grid
from greedy_compress.quantization.layer import QuantizedLayer

__all__ = ["NaiveQuantizer"]


@register_quantizer
class NaiveQuantizer(Quantizer):
    """Weights to ``quant_bits`` (8 in NNI's examples) on a symmetric per-channel grid.

    Post-training: no data, no training; the weights stay float in the model (fake
    quantization) and become integers on export.

    Example:
        >>> import copy
        >>> net = copy.deepcopy(model)
        >>> quantizer = NaiveQuantizer(net, [{"quant_types": ["weight"], "quant_bits": 8,
        ...                                   "op_types": ["default"]}])
        >>> net = quantizer.compress()
        >>> sorted(quantizer.quantized_layers())
        ['classifier', 'features.0', 'features.10', 'features.3', 'features.7']
        >>> round(evaluator(net), 2) >= round(evaluator(model), 2) - 0.02
        True
    """

    name = "naive"
    quant_types: ClassVar[tuple[str, ...]] = ("weight",)

    def quantize_weight(
        self, weight: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        return fake_quantize(weight, int(config["quant_bits"]["weight"]))

    def weight_grid(self, weight: torch.Tensor, config: dict[str, Any]) -> QuantGrid | None:
        return symmetric_weight_grid(weight, int(config["quant_bits"]["weight"]))
