"""NNI's QAT quantizer (Jacob et al. 2018): fake-quantized weights and activations inside
the user's own training loop, activation ranges tracked by exponential moving averages,
batch norms folded into the convs before them, straight-through gradients."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from greedy_compress._util.constraints import Constraint, Interval
from greedy_compress.quantization._base import Quantizer, register_quantizer, track_range
from greedy_compress.quantization.fake import QuantGrid, fake_quantize, symmetric_weight_grid
from greedy_compress.quantization.layer import QuantizedLayer

__all__ = ["EMA_DECAY", "QATQuantizer"]

EMA_DECAY = 0.99  # NNI's and the paper's weight on the old range


@register_quantizer
class QATQuantizer(Quantizer):
    """Training-aware quantization; call :meth:`step` after each batch.

    Weights: symmetric per output channel (after folding the following BatchNorm, whose
    batch statistics still normalize during training). Inputs and outputs: asymmetric per
    tensor, unsigned, over the range tracked in training mode (the batch's min and max
    first, then an exponential moving average with weight 0.99 on the old range). Config key
    ``quant_start_step``: batches trained in float (ranges tracked) before quantizing.

    Example:
        >>> import copy
        >>> net = copy.deepcopy(model)
        >>> quantizer = QATQuantizer(net, [{"quant_types": ["weight", "input", "output"],
        ...                                 "quant_bits": 8, "op_types": ["default"]}])
        >>> net = quantizer.compress().train()
        >>> optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
        >>> for inputs, targets in train_loader:
        ...     optimizer.zero_grad()
        ...     nn.functional.cross_entropy(net(inputs), targets).backward()
        ...     optimizer.step(); quantizer.step()
        >>> round(evaluator(net.eval()), 2) >= round(evaluator(model), 2) - 0.05
        True
    """

    name = "qat"
    fold_batch_norm = True
    extra_keys: ClassVar[dict[str, tuple[Constraint, Any]]] = {
        "quant_start_step": (Interval(int, 0, None), 0)
    }

    def _active(self, config: dict[str, Any]) -> bool:
        return self.steps >= int(config["quant_start_step"])

    def quantize_weight(
        self, weight: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        if not self._active(config):
            return weight
        return fake_quantize(weight, int(config["quant_bits"]["weight"]))

    def weight_grid(self, weight: torch.Tensor, config: dict[str, Any]) -> QuantGrid | None:
        return symmetric_weight_grid(weight, int(config["quant_bits"]["weight"]))

    def _activation(
        self, x: torch.Tensor, kind: str, config: dict[str, Any], layer
    ) -> torch.Tensor:
        if layer.training:
            track_range(layer, kind, x, decay=EMA_DECAY)
        grid = self.activation_grid(layer, kind, config)
        if grid is None or not self._active(config):
            return x
        return grid.fake(x)

    def quantize_input(
        self, inputs: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        return self._activation(inputs, "input", config, layer)

    def quantize_output(
        self, output: torch.Tensor, config: dict[str, Any], *, layer: QuantizedLayer
    ) -> torch.Tensor:
        return self._activation(output, "output", config, layer)
