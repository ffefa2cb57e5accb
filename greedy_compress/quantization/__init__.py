"""Quantization on plain torch ops: NNI's quantizers, fake-quantized layers, BN folding.

Adding a quantizer: subclass :class:`Quantizer` (override ``quantize_weight`` and, if it
quantizes activations, ``quantize_input`` / ``quantize_output``; ``weight_grid`` lets export
store its integers) and decorate it with :func:`register_quantizer` (one line).
"""

from __future__ import annotations

from greedy_compress.quantization._base import (
    Quantizer,
    available_quantizers,
    get_quantizer,
    register_quantizer,
    track_range,
)
from greedy_compress.quantization.bn_fold import batch_norm_pairs, fold_batch_norm
from greedy_compress.quantization.calibrated import (
    CalibratedQuantizer,
    calibrate,
    quantize_layer,
    quantize_modules,
)
from greedy_compress.quantization.dorefa import DoReFaQuantizer
from greedy_compress.quantization.fake import (
    QuantGrid,
    activation_grid,
    dorefa_weight,
    fake_quantize,
    round_ste,
    symmetric_weight_grid,
)
from greedy_compress.quantization.layer import QUANT_TYPES, QuantizedLayer
from greedy_compress.quantization.naive import NaiveQuantizer
from greedy_compress.quantization.qat import QATQuantizer

__all__ = [
    "QUANT_TYPES",
    "CalibratedQuantizer",
    "DoReFaQuantizer",
    "NaiveQuantizer",
    "QATQuantizer",
    "QuantGrid",
    "QuantizedLayer",
    "Quantizer",
    "activation_grid",
    "available_quantizers",
    "batch_norm_pairs",
    "calibrate",
    "dorefa_weight",
    "fake_quantize",
    "fold_batch_norm",
    "get_quantizer",
    "quantize_layer",
    "quantize_modules",
    "register_quantizer",
    "round_ste",
    "symmetric_weight_grid",
    "track_range",
]
