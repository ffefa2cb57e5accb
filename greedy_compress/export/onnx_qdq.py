"""ONNX with QuantizeLinear / DequantizeLinear: integer weight initializers, QDQ activations.

The model is exported once in float, with each quantized layer's fake-quantized weights
(torch's TorchScript exporter keeps parameter names as initializer names, with constant
folding off); then each such weight initializer is replaced by its integers (int4 where the
values fit, else int8, int16 or int32: ONNX QuantizeLinear's types) and a
DequantizeLinear with the per-channel scales, so the file really shrinks. Quantized
activations get QuantizeLinear -> (Clip, when fewer than 8 bits) -> DequantizeLinear on
the layer's input or output, uint8 (QCDQ: the clip keeps a 6-bit range exact). Opset 21,
the first with int4.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from greedy_compress.errors import GreedyCompressError
from greedy_compress.quantization import QuantGrid

__all__ = ["OPSET", "LayerQuantization", "build_qdq_onnx", "storage_type"]

OPSET = 21
_EXPORT_OPSET = 20  # the newest the TorchScript exporter supports; raised to 21 afterwards
_INT_TYPES = (  # (ONNX type, numpy dtype, lowest, highest, name)
    (TensorProto.INT4, np.int8, -8, 7, "int4"),
    (TensorProto.INT8, np.int8, -128, 127, "int8"),
    (TensorProto.INT16, np.int16, -32768, 32767, "int16"),
    (TensorProto.INT32, np.int32, -(2**31), 2**31 - 1, "int32"),
)


@dataclass(frozen=True)
class LayerQuantization:
    """What export needs of one quantized layer: its weight integers and grids."""

    weight_bits: int
    weight_integers: torch.Tensor | None
    weight_grid: QuantGrid | None
    input_grid: QuantGrid | None
    input_bits: int
    output_grid: QuantGrid | None
    output_bits: int


def storage_type(low: int, high: int) -> tuple[int, Any, str]:
    """The smallest ONNX integer type holding ``[low, high]``: (type, numpy dtype, name)."""
    for onnx_type, dtype, lowest, highest, name in _INT_TYPES:
        if lowest <= low and high <= highest:
            return onnx_type, dtype, name
    raise GreedyCompressError(f"integers in [{low}, {high}] fit no ONNX integer type")


def _tensor(name: str, values: np.ndarray, onnx_type: int) -> onnx.TensorProto:
    if onnx_type == TensorProto.INT4:  # two per byte, the first in the low nibble
        nibbles = (values.reshape(-1) & 0x0F).astype(np.uint8)
        if nibbles.size % 2:
            nibbles = np.append(nibbles, np.uint8(0))
        packed = nibbles[0::2] | (nibbles[1::2] << 4)
        return helper.make_tensor(name, onnx_type, values.shape, packed.tobytes(), raw=True)
    return numpy_helper.from_array(values, name)


def _float_export(model: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The torch.export-based exporter needs onnxscript and renames initializers; the
        # TorchScript one keeps parameter names, which the QDQ rewrite relies on.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object is accepted
            dynamo=False,
            opset_version=_EXPORT_OPSET,
            do_constant_folding=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return onnx.load_from_string(buffer.getvalue())


class _Graph:
    def __init__(self, proto: onnx.ModelProto) -> None:
        self.proto = proto
        self.graph = proto.graph
        self.new_nodes: list[onnx.NodeProto] = []

    def consumer_of(self, tensor: str) -> onnx.NodeProto | None:
        return next((n for n in self.graph.node if tensor in n.input), None)

    def add_initializer(self, tensor: onnx.TensorProto) -> None:
        self.graph.initializer.append(tensor)

    def qdq(self, source: str, target: str, grid: QuantGrid, bits: int, prefix: str) -> None:
        """``target = DQ(clip(Q(source)))`` on ``grid`` (unsigned activations)."""
        if bits > 8:
            raise GreedyCompressError(
                f"{prefix}: activations of {bits} bits are not exported (uint8 QDQ holds "
                "at most 8); quantize activations to 8 bits or fewer."
            )
        scale = numpy_helper.from_array(np.array(float(grid.scale), np.float32), f"{prefix}_scale")
        zero = numpy_helper.from_array(np.array(int(grid.zero_point), np.uint8), f"{prefix}_zero")
        self.add_initializer(scale)
        self.add_initializer(zero)
        quantized = f"{prefix}_quantized"
        nodes = [helper.make_node("QuantizeLinear", [source, scale.name, zero.name], [quantized])]
        if grid.qmax < 255:
            low = numpy_helper.from_array(np.array(grid.qmin, np.uint8), f"{prefix}_qmin")
            high = numpy_helper.from_array(np.array(grid.qmax, np.uint8), f"{prefix}_qmax")
            self.add_initializer(low)
            self.add_initializer(high)
            clipped = f"{prefix}_clipped"
            nodes.append(helper.make_node("Clip", [quantized, low.name, high.name], [clipped]))
            quantized = clipped
        nodes.append(
            helper.make_node("DequantizeLinear", [quantized, scale.name, zero.name], [target])
        )
        self.new_nodes += nodes


def build_qdq_onnx(
    model: nn.Module, example: torch.Tensor, layers: dict[str, LayerQuantization]
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The QDQ ONNX of ``model`` (float layers holding the fake-quantized weights), with
    ``layers``' weights stored as integers; also each layer's weight storage type.

    Raises:
        GreedyCompressError: a quantized layer's weight is not an initializer consumed by
            one node (the exporter folded it into something else).
    """
    proto = _float_export(model, example)
    graph = _Graph(proto)
    storages: dict[str, str] = {}
    initializers = {t.name: t for t in proto.graph.initializer}
    for name, info in layers.items():
        weight_name = f"{name}.weight"
        node = graph.consumer_of(weight_name)
        if weight_name not in initializers or node is None:
            raise GreedyCompressError(
                f"Layer {name!r}: its weight is not an ONNX initializer read by one node, so "
                "its integers cannot be stored; export it without quantizing this layer."
            )
        if info.weight_integers is not None and info.weight_grid is not None:
            ints = info.weight_integers.detach().cpu().numpy()
            onnx_type, dtype, storage = storage_type(int(ints.min()), int(ints.max()))
            storages[name] = storage
            proto.graph.initializer.remove(initializers[weight_name])
            quantized = _tensor(f"{name}.weight_quantized", ints.astype(dtype), onnx_type)
            scale = info.weight_grid.scale.detach().cpu().numpy().astype(np.float32)
            scale_tensor = numpy_helper.from_array(scale, f"{name}.weight_scale")
            graph.add_initializer(quantized)
            graph.add_initializer(scale_tensor)
            dequantize = helper.make_node(
                "DequantizeLinear", [quantized.name, scale_tensor.name], [weight_name]
            )
            if scale.ndim:  # per output channel
                dequantize.attribute.append(helper.make_attribute("axis", 0))
            graph.new_nodes.append(dequantize)
        if info.input_grid is not None:
            source = node.input[0]
            target = f"{name}.input_dequantized"
            graph.qdq(source, target, info.input_grid, info.input_bits, f"{name}.input")
            node.input[0] = target
        if info.output_grid is not None:
            # The layer now writes a float tensor; the QDQ writes the name its readers
            # (and the graph's output, if it is one) already use.
            source = node.output[0]
            raw = f"{name}.output_float"
            node.output[0] = raw
            graph.qdq(raw, source, info.output_grid, info.output_bits, f"{name}.output")
    nodes = list(graph.new_nodes) + list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(_topological(nodes, proto))
    del proto.opset_import[:]
    proto.opset_import.extend([helper.make_opsetid("", OPSET)])
    proto.ir_version = max(proto.ir_version, 10)
    return proto, storages


def _topological(nodes: list[onnx.NodeProto], proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    """``nodes`` ordered so every input is produced before it is read (ONNX requires it)."""
    ready = {t.name for t in proto.graph.initializer} | {i.name for i in proto.graph.input}
    ready.add("")
    ordered: list[onnx.NodeProto] = []
    pending = list(nodes)
    while pending:
        progress = False
        for node in list(pending):
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
                pending.remove(node)
                progress = True
        if not progress:
            raise GreedyCompressError("the rewritten ONNX graph has a cycle or a missing input")
    return ordered
