"""export_model: integer ONNX initializers, QDQ activations, onnxruntime round trips,
quantization parameters, weights-only state dicts and masks, and clear refusals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto
from torch import nn

import greedy_compress as gc
from greedy_compress.errors import ExportError
from greedy_compress.export import DEFAULT_TOLERANCE, export_model
from greedy_compress.model.mask import set_mask
from greedy_compress.quantization import NaiveQuantizer, QATQuantizer, Quantizer

ALL = {"op_types": ["default"]}
SHAPE = (1, 1, 8, 8)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 64, 10),
    ).eval()


def _naive(bits: int) -> nn.Module:
    net = _net()
    NaiveQuantizer(net, [{"quant_types": ["weight"], "quant_bits": bits, **ALL}]).compress()
    return net


def _initializers(path) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in onnx.load(path).graph.initializer}


def _run(path, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def test_weights_become_integer_initializers_and_the_file_shrinks(tmp_path):
    float_size = export_model(_net(), onnx_path=tmp_path / "f.onnx", input_shape=SHAPE).sizes[
        "onnx"
    ]
    sizes = {}
    for bits, kind in ((8, TensorProto.INT8), (4, TensorProto.INT4)):
        path = tmp_path / f"w{bits}.onnx"
        result = export_model(_naive(bits), onnx_path=path, input_shape=SHAPE)
        inits = _initializers(path)
        for layer in ("0", "3", "6"):
            assert f"{layer}.weight" not in inits  # no float copy left
            assert inits[f"{layer}.weight_quantized"].data_type == kind
        assert set(result.weight_storage.values()) == {"int8" if bits == 8 else "int4"}
        sizes[bits] = result.sizes["onnx"]
        assert result.max_difference <= 1e-5  # weight-only: only summation order differs
    assert sizes[8] < 0.3 * float_size and sizes[4] < 0.6 * sizes[8]


def test_the_onnx_model_runs_in_onnxruntime_like_the_fake_quantized_model(tmp_path):
    net = _net()
    quantizer = QATQuantizer(
        net, [{"quant_types": ["weight", "input", "output"], "quant_bits": 8, **ALL}]
    )
    quantizer.compress().train()
    for _ in range(3):
        net(torch.randn(16, 1, 8, 8))
    net.eval()
    path = tmp_path / "qat.onnx"
    result = export_model(net, onnx_path=path, input_shape=SHAPE)
    graph = onnx.load(path).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) == 6  # in and out of 3 layers
    onnx.checker.check_model(onnx.load(path), full_check=True)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        expected = net(x).numpy()
    got = _run(path, x)  # another batch size than the export's
    assert np.abs(got - expected).max() <= DEFAULT_TOLERANCE * max(1, np.abs(expected).max())
    assert result.max_difference <= result.allowed_difference


def test_six_bit_activations_are_clipped_to_their_range(tmp_path):
    net = _net()
    quantizer = QATQuantizer(net, [{"quant_types": ["input"], "quant_bits": 6, **ALL}])
    quantizer.compress().train()
    net(torch.randn(16, 1, 8, 8))
    path = tmp_path / "a6.onnx"
    export_model(net.eval(), onnx_path=path, input_shape=SHAPE)
    clips = [n for n in onnx.load(path).graph.node if n.op_type == "Clip"]
    assert len(clips) == 3
    x = torch.randn(2, 1, 8, 8) * 5  # far outside the calibrated range: the clip matters
    with torch.no_grad():
        expected = net(x).numpy()
    assert np.abs(_run(path, x) - expected).max() <= DEFAULT_TOLERANCE * max(
        1, np.abs(expected).max()
    )


def test_quantization_parameters_and_a_weights_only_state_dict(tmp_path):
    net = _naive(4)
    result = export_model(net, model_path=tmp_path / "m.pt", quantization_path=tmp_path / "q.json")
    params = json.loads((tmp_path / "q.json").read_text())
    assert params["format"] == "greedy-compress/quantization"
    weight = params["layers"]["3"]["weight"]
    grid = net[3].weight_grid()
    assert weight["bits"] == 4 and (weight["qmin"], weight["qmax"]) == (-7, 7)
    assert weight["scale"] == pytest.approx(grid.scale.tolist()) and weight["axis"] == 0
    other = _net()
    NaiveQuantizer(other, [{"quant_types": ["weight"], "quant_bits": 4, **ALL}]).compress()
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(other(x), net(x))
    assert set(result.sizes) == {"model", "quantization"}


def test_masks_are_saved_and_applied_in_the_onnx_file(tmp_path):
    net = _net()
    mask = (torch.rand_like(net[3].weight) > 0.5).float()
    set_mask(net[3], mask)
    export_model(
        net, mask_path=tmp_path / "mask.pt", onnx_path=tmp_path / "m.onnx", input_shape=SHAPE
    )
    saved = torch.load(tmp_path / "mask.pt", weights_only=True)
    assert torch.equal(saved["3.weight"], mask)
    weight = onnx.numpy_helper.to_array(_initializers(tmp_path / "m.onnx")["3.weight"])
    assert (weight[mask.numpy() == 0] == 0).all()


def test_a_selection_from_the_bits_dictionary_exports(tmp_path, tiny_net, distance_evaluator):
    scores = gc.build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="quantize",
        cost="memory",
        input_shape=SHAPE,
        progress=False,
    )
    small = gc.apply_selection(tiny_net, gc.select(scores, target=0.2, solver="knapsack"))
    result = export_model(small, onnx_path=tmp_path / "s.onnx", input_shape=SHAPE)
    assert result.max_difference <= 1e-4 and result.weight_storage


def test_exports_that_would_be_wrong_are_refused(tmp_path):
    class NoGrid(Quantizer):
        name = "no_grid_for_test"
        quant_types = ("weight",)

        def quantize_weight(self, weight, config, *, layer):
            return weight.round()

    net = _net()
    NoGrid(net, [{"quant_types": ["weight"], "quant_bits": 8, "op_names": ["6"]}]).compress()
    with pytest.raises(ExportError, match=r"Layer '6': NoGrid gives no integer grid"):
        export_model(net, onnx_path=tmp_path / "x.onnx", input_shape=SHAPE)
    untracked = _net()
    QATQuantizer(untracked, [{"quant_types": ["input"], "quant_bits": 8, **ALL}]).compress()
    with pytest.raises(ExportError, match=r"Layer '0': its input activations have no range"):
        export_model(untracked, quantization_path=tmp_path / "q.json")
    trained = _net()
    quantizer = QATQuantizer(
        trained, [{"quant_types": ["input", "output"], "quant_bits": 8, **ALL}]
    )
    quantizer.compress().train()(torch.randn(8, 1, 8, 8))
    with pytest.raises(ExportError, match="onnxruntime's outputs differ"):
        export_model(
            trained.eval(), onnx_path=tmp_path / "t.onnx", input_shape=SHAPE, tolerance=1e-12
        )
    with pytest.raises(gc.InvalidParameterError, match="'example_input'"):
        export_model(_net(), onnx_path=tmp_path / "n.onnx")
