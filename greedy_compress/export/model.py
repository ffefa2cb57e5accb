"""``export_model``: weights, masks, quantization parameters and a checked ONNX file.

One function for quantized and pruned models (NNI's ``export_model`` signature). The ONNX
file is checked with ``onnx.checker`` and run in onnxruntime on a seeded random input of
``input_shape``; its outputs must match the torch model's within ``tolerance`` (of the
largest output magnitude, at least 1), else :class:`~greedy_compress.errors.ExportError`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from greedy_compress._util.constraints import Interval, bad_parameter, check
from greedy_compress._util.io import atomic_write_json
from greedy_compress.errors import ExportError
from greedy_compress.export.onnx_qdq import LayerQuantization, build_qdq_onnx
from greedy_compress.export.sparse import save_sparse_state_dict
from greedy_compress.model.mask import bake_parametrizations, model_masks
from greedy_compress.model.profile import make_example_input
from greedy_compress.quantization import QuantizedLayer

__all__ = [
    "DEFAULT_TOLERANCE",
    "QUANTIZATION_FORMAT",
    "ExportResult",
    "export_model",
    "quantization_parameters",
]

QUANTIZATION_FORMAT = "greedy-compress/quantization"
DEFAULT_TOLERANCE = 0.02
"""Largest onnxruntime-vs-torch output difference, as a fraction of the largest output
magnitude (at least 1). Quantized activations can round to the neighbouring level where
torch and onnxruntime sum a convolution in another order, which moves an output by a
fraction of one activation step; float and weight-only exports match to about 1e-6."""

_OWNER = "export_model"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and checked.

    Attributes:
        paths: each written file by kind (``"model"``, ``"mask"``, ``"sparse"``,
            ``"quantization"``, ``"onnx"``).
        sizes: their sizes in bytes.
        max_difference: the largest |onnxruntime - torch| output difference (None without
            ONNX).
        allowed_difference: what the check allowed.
        weight_storage: each quantized layer's ONNX weight type (``"int4"``, ``"int8"``...).
    """

    paths: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    max_difference: float | None = None
    allowed_difference: float | None = None
    weight_storage: dict[str, str] = field(default_factory=dict)


def _grid_dict(grid: Any, bits: int) -> dict[str, Any]:
    scale = grid.scale.detach().cpu().reshape(-1).tolist()
    zero = grid.zero_point.detach().cpu().reshape(-1).round().long().tolist()
    data: dict[str, Any] = {"bits": bits, "qmin": grid.qmin, "qmax": grid.qmax}
    if grid.axis is None:
        data.update(scale=scale[0], zero_point=zero[0])
    else:
        data.update(scale=scale, zero_point=zero, axis=grid.axis)
    return data


def _layer_quantization(name: str, layer: QuantizedLayer) -> LayerQuantization:
    weight_grid = layer.weight_grid()
    integers = None
    if "weight" in layer.quant_types:
        if weight_grid is None:
            raise ExportError(
                f"Layer {name!r}: {type(layer.quantizer).__name__} gives no integer grid for "
                "its weights (weight_grid), so they cannot be stored as integers."
            )
        with torch.no_grad():
            weight = layer.quantized_weight()
            integers = weight_grid.integers(weight)
            shape = [-1] + [1] * (weight.dim() - 1)
            scale = (
                weight_grid.scale if weight_grid.axis is None else weight_grid.scale.reshape(shape)
            )
            back = (
                integers
                - weight_grid.zero_point.reshape(shape if weight_grid.axis is not None else [])
            ) * scale
        if not torch.allclose(back, weight, rtol=1e-5, atol=1e-7):
            raise ExportError(
                f"Layer {name!r}: the quantized weights are not on the integer grid "
                f"{type(layer.quantizer).__name__}.weight_grid returns."
            )
    grids = {}
    for kind in ("input", "output"):
        grid = layer.activation_grid(kind)
        if kind in layer.quant_types and grid is None:
            raise ExportError(
                f"Layer {name!r}: its {kind} activations have no range yet; run the model on "
                "data (calibration or training) before exporting."
            )
        grids[kind] = grid
    return LayerQuantization(
        weight_bits=layer.bits("weight"),
        weight_integers=integers,
        weight_grid=weight_grid,
        input_grid=grids["input"],
        input_bits=layer.bits("input"),
        output_grid=grids["output"],
        output_bits=layer.bits("output"),
    )


def quantization_parameters(model: nn.Module) -> dict[str, Any]:
    """Scale, zero point and bits of every quantized tensor, per layer (plain data).

    Example:
        >>> import copy
        >>> from greedy_compress.quantization import NaiveQuantizer
        >>> net = NaiveQuantizer(copy.deepcopy(model), [{"quant_types": ["weight"],
        ...     "quant_bits": 4, "op_names": ["classifier"]}]).compress()
        >>> params = quantization_parameters(net)["layers"]["classifier"]["weight"]
        >>> params["bits"], params["qmax"], len(params["scale"])
        (4, 7, 10)
    """
    layers: dict[str, Any] = {}
    for name, layer in model.named_modules():
        if not isinstance(layer, QuantizedLayer):
            continue
        info = _layer_quantization(name, layer)
        entry: dict[str, Any] = {}
        if info.weight_grid is not None:
            entry["weight"] = _grid_dict(info.weight_grid, info.weight_bits)
        if info.input_grid is not None:
            entry["input"] = _grid_dict(info.input_grid, info.input_bits)
        if info.output_grid is not None:
            entry["output"] = _grid_dict(info.output_grid, info.output_bits)
        layers[name] = entry
    return {"format": QUANTIZATION_FORMAT, "format_version": 1, "layers": layers}


def _plain_copy(model: nn.Module) -> tuple[nn.Module, dict[str, LayerQuantization]]:
    """A float copy holding the fake-quantized weights (masks applied), and what the QDQ
    rewrite needs per quantized layer."""
    plain = copy.deepcopy(model).eval()
    layers = {}
    for name, layer in list(plain.named_modules()):
        if isinstance(layer, QuantizedLayer):
            layers[name] = _layer_quantization(name, layer)
            with torch.no_grad():
                weight = layer.quantized_weight().detach()
                _, bias = layer.effective_parameters()
            inner = layer.layer
            bake_parametrizations(inner)
            inner.weight = nn.Parameter(weight.clone())
            if bias is not None:
                inner.bias = nn.Parameter(bias.detach().clone())
            plain.set_submodule(name, inner)
    for module in list(plain.modules()):
        bake_parametrizations(module)
    return plain, layers


def export_model(
    model: nn.Module,
    *,
    model_path: str | os.PathLike[str] | None = None,
    mask_path: str | os.PathLike[str] | None = None,
    sparse_path: str | os.PathLike[str] | None = None,
    onnx_path: str | os.PathLike[str] | None = None,
    quantization_path: str | os.PathLike[str] | None = None,
    input_shape: Sequence[int] | None = None,
    example_input: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Write the model's state dict, masks, quantization parameters and ONNX file.

    Args:
        model: a model, possibly with quantized layers (:mod:`greedy_compress.quantization`)
            and weight masks (:mod:`greedy_compress.model.mask`); it is not modified.
        model_path: its ``state_dict`` (loadable with ``torch.load(..., weights_only=True)``
            into the same quantized or masked model).
        mask_path: ``{parameter name: mask}`` of every masked weight (weights-only file).
        sparse_path: the state dict with every masked weight in CSR form and no masks
            (:mod:`greedy_compress.export.sparse`: the format, and the loader).
        onnx_path: ONNX (opset 21): quantized weights as integer initializers with
            DequantizeLinear, quantized activations as QDQ; checked and run in onnxruntime.
        quantization_path: JSON of scale, zero point and bits per quantized tensor.
        input_shape: the input shape for ONNX (batch included); or give ``example_input``.
        tolerance: the allowed output difference (see :data:`DEFAULT_TOLERANCE`).

    Returns:
        An :class:`ExportResult` with the paths, sizes and the measured difference.

    Raises:
        ExportError: a layer cannot be stored as integers, or onnxruntime's outputs differ
            from the model's by more than the tolerance.

    Example:
        >>> import copy, tempfile, pathlib
        >>> from greedy_compress.quantization import NaiveQuantizer
        >>> net = NaiveQuantizer(copy.deepcopy(model), [{"quant_types": ["weight"],
        ...     "quant_bits": 8, "op_types": ["default"]}]).compress()
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> result = export_model(net, onnx_path=out / "q.onnx", input_shape=(1, 1, 8, 8))
        >>> float_size = export_model(model, onnx_path=out / "f.onnx",
        ...                           input_shape=(1, 1, 8, 8)).sizes["onnx"]
        >>> result.sizes["onnx"] < 0.3 * float_size, result.max_difference < 1e-4
        (True, True)
    """
    if not isinstance(model, nn.Module):
        raise bad_parameter("model", _OWNER, "an nn.Module", model)
    tolerance = check(tolerance, Interval(float, 0, None, closed="neither"), "tolerance", _OWNER)
    example = None
    if onnx_path is not None:
        example = make_example_input(example_input, input_shape, _OWNER, like=model)
    result = ExportResult()
    if model_path is not None:
        torch.save(model.state_dict(), model_path)
        result.paths["model"] = os.fspath(model_path)
    if mask_path is not None:
        torch.save(model_masks(model), mask_path)
        result.paths["mask"] = os.fspath(mask_path)
    if sparse_path is not None:
        save_sparse_state_dict(model, sparse_path)
        result.paths["sparse"] = os.fspath(sparse_path)
    if quantization_path is not None:
        atomic_write_json(quantization_path, quantization_parameters(model))
        result.paths["quantization"] = os.fspath(quantization_path)
    if onnx_path is not None:
        assert example is not None
        difference, allowed, storage = _write_onnx(model, example, onnx_path, tolerance)
        result.paths["onnx"] = os.fspath(onnx_path)
        result = ExportResult(
            paths=result.paths,
            max_difference=difference,
            allowed_difference=allowed,
            weight_storage=storage,
        )
    result.sizes.update({kind: Path(p).stat().st_size for kind, p in result.paths.items()})
    return result


def _write_onnx(
    model: nn.Module, example: torch.Tensor, path: str | os.PathLike[str], tolerance: float
) -> tuple[float, float, dict[str, str]]:
    plain, layers = _plain_copy(model)
    proto, storage = build_qdq_onnx(plain, example, layers)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    Path(path).write_bytes(data)
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(example.shape, generator=generator, dtype=example.dtype)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": probe.cpu().numpy()})[0]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(probe).detach().cpu().numpy()
    finally:
        model.train(was)
    difference = float(np.abs(got - expected).max())
    allowed = tolerance * max(1.0, float(np.abs(expected).max()))
    if difference > allowed:
        raise ExportError(
            f"onnxruntime's outputs differ from the torch model's by {difference:.3g} "
            f"(allowed {allowed:.3g}): the ONNX file {os.fspath(path)} does not reproduce "
            "the model."
        )
    return difference, allowed, storage
