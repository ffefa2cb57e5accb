"""Export: state dicts, masks, sparse weights, quantization parameters and ONNX files that
really shrink."""

from __future__ import annotations

from greedy_compress.export.model import (
    DEFAULT_TOLERANCE,
    ExportResult,
    export_model,
    quantization_parameters,
)
from greedy_compress.export.onnx_qdq import OPSET, build_qdq_onnx, storage_type
from greedy_compress.export.sparse import (
    SPARSE_FORMAT,
    csr_bytes,
    dense_state_dict,
    load_sparse_state_dict,
    save_sparse_state_dict,
    sparse_state_dict,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "OPSET",
    "SPARSE_FORMAT",
    "ExportResult",
    "build_qdq_onnx",
    "csr_bytes",
    "dense_state_dict",
    "export_model",
    "load_sparse_state_dict",
    "quantization_parameters",
    "save_sparse_state_dict",
    "sparse_state_dict",
    "storage_type",
]
