"""NNI's DoReFa quantizer: tanh-normalised k-bit weights (Zhou et al. 2016)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from greedy_compress.quantization._base import Quantizer, register_quantizer
from greedy_compress.quantization.fake import (
    QuantGrid,
    dorefa_grid,
    dorefa_weight,
)
from greedy_compress.quantization.layer import QuantizedLayer

__all__ = ["DoReFaQuantizer"]


@register_quantizer
class DoReFaQuantizer(Quantizer):
    """Weights become ``2 round((2^k - 1) w') / (2^k - 1) - 1`` with ``w'`` the weights
    squashed by tanh into [0, 1]; gradients pass straight through the rounding.

    DoReFa's weights lie in [-1, 1] whatever the float weights' scale, so it is meant for
    training (the BatchNorm after each layer absorbs the scale), not for a trained model
    as it is.

    Example:
        >>> import copy
        >>> net = copy.deepcopy(model)
        >>> _ = DoReFaQuantizer(net, [{"quant_types": ["weight"], "quant_bits": 4,
        ...                            "op_types": ["Conv2d"]}]).compress()
        >>> sorted(set(net.features[0].quantized_weight().flatten().tolist()))[:3]
        [-1.0, -0.8666666746139526, -0.7333333492279053]
    """

    name = "dorefa"
    quant_types: ClassVar[tuple[str, ...]] = ("weight",)

    def quantize_weight(
        self, weight: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        return dorefa_weight(weight, int(config["quant_bits"]["weight"]))

    def weight_grid(self, weight: torch.Tensor, config: dict[str, Any]) -> QuantGrid | None:
        bits = int(config["quant_bits"]["weight"])
        if bits == 1:
            scale = weight.detach().abs().mean()
            return QuantGrid(scale, torch.zeros_like(scale), -1, 1)
        return dorefa_grid(bits)
