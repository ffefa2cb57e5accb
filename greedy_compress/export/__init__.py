"""Export: state dicts, masks, quantization parameters and ONNX files that really shrink."""

from __future__ import annotations

from greedy_compress.export.model import (
    DEFAULT_TOLERANCE,
    ExportResult,
    export_model,
    quantization_parameters,
)
from greedy_compress.export.onnx_qdq import OPSET, build_qdq_onnx, storage_type

__all__ = [
    "DEFAULT_TOLERANCE",
    "OPSET",
    "ExportResult",
    "build_qdq_onnx",
    "export_model",
    "quantization_parameters",
    "storage_type",
]
