"""Post-training quantization of single layers, for the dictionary's bit-width candidates.

:func:`quantize_layer` wraps a Conv/Linear with symmetric per-channel weights and,
optionally, activations on a range calibrated from sample inputs (:func:`calibrate`); the
:class:`CalibratedQuantizer` behind them belongs to no model and needs no config list.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from greedy_compress.model.modes import eval_mode
from greedy_compress.quantization._base import Quantizer, track_range
from greedy_compress.quantization.fake import QuantGrid, fake_quantize, symmetric_weight_grid
from greedy_compress.quantization.layer import QuantizedLayer

__all__ = ["CalibratedQuantizer", "calibrate", "quantize_layer", "quantize_modules"]

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


class CalibratedQuantizer(Quantizer):
    """Symmetric per-channel weights; inputs on the range calibrated so far (min and max of
    every calibration batch), unquantized while :attr:`calibrating`."""

    name = "calibrated"

    def __init__(self) -> None:  # belongs to no model: no config list to resolve
        self.calibrating = False
        self.epoch = self.steps = 0
        self.compressed = True
        self.configs = {}

    def quantize_weight(
        self, weight: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        return fake_quantize(weight, int(config["quant_bits"]["weight"]))

    def weight_grid(self, weight: torch.Tensor, config: dict[str, Any]) -> QuantGrid | None:
        return symmetric_weight_grid(weight, int(config["quant_bits"]["weight"]))

    def quantize_input(
        self, inputs: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        if self.calibrating:
            track_range(layer, "input", inputs, decay=None)
            return inputs
        grid = self.activation_grid(layer, "input", config)
        return inputs if grid is None else grid.fake(inputs)


def quantize_layer(
    module: nn.Module, *, weight_bits: int, activation_bits: int | None = None
) -> QuantizedLayer:
    """A copy of ``module`` with ``weight_bits`` weights (and ``activation_bits`` inputs,
    uncalibrated until :func:`calibrate` runs).

    Example:
        >>> layer = quantize_layer(nn.Linear(4, 2), weight_bits=4)
        >>> layer.weight_bits, layer.activation_bits
        (4, 32)
    """
    types = ["weight"] if activation_bits is None else ["weight", "input"]
    bits = {"weight": weight_bits} | ({} if activation_bits is None else {"input": activation_bits})
    return QuantizedLayer(
        copy.deepcopy(module),
        quantizer=CalibratedQuantizer(),
        config={"quant_types": types, "quant_bits": bits},
    )


def quantize_modules(
    module: nn.Module, *, weight_bits: int, activation_bits: int | None = None
) -> nn.Module:
    """``module`` (a layer, or a small network of them: a compressed layer) with every
    Conv/Linear inside quantized; a new module, ``module`` is not modified."""
    if isinstance(module, _LAYERS):
        return quantize_layer(module, weight_bits=weight_bits, activation_bits=activation_bits)
    result = copy.deepcopy(module)
    for name, child in list(result.named_modules()):
        if name and isinstance(child, _LAYERS):
            result.set_submodule(
                name,
                quantize_layer(child, weight_bits=weight_bits, activation_bits=activation_bits),
            )
    return result


def calibrate(module: nn.Module, samples: torch.Tensor) -> nn.Module:
    """Set the input ranges of ``module``'s calibrated layers from ``samples`` (their min
    and max over every sample); returns ``module``."""
    layers = [m for m in module.modules() if isinstance(m, QuantizedLayer)]
    quantizers = {id(m.quantizer): m.quantizer for m in layers}
    calibrated = [q for q in quantizers.values() if isinstance(q, CalibratedQuantizer)]
    for quantizer in calibrated:
        quantizer.calibrating = True
    try:
        with eval_mode(module), torch.no_grad():
            module(samples)
    finally:
        for quantizer in calibrated:
            quantizer.calibrating = False
    return module
