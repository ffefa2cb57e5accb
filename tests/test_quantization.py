"""Quantizers against hand-computed values, straight-through gradients, BN folding, EMA
ranges, config lists and the custom quantizer interface."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from greedy_compress.errors import InvalidParameterError
from greedy_compress.model.cost import Cost, measure_cost
from greedy_compress.quantization import (
    DoReFaQuantizer,
    NaiveQuantizer,
    QATQuantizer,
    Quantizer,
    activation_grid,
    available_quantizers,
    dorefa_weight,
    fake_quantize,
    fold_batch_norm,
    get_quantizer,
    register_quantizer,
    symmetric_weight_grid,
    track_range,
)
from greedy_compress.quantization.qat import EMA_DECAY

ALL = {"op_types": ["default"]}


def _conv_bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
    return net.eval()


def test_symmetric_weights_round_half_to_even_per_channel():
    weight = torch.tensor([[1.0, -0.5, 0.25, 0.1], [4.0, 1.0, -3.0, 0.0]])
    # 3 bits: qmax 3; row scales 1/3 and 4/3; 0.5 * 3 = 1.5 rounds to 2 (half to even).
    expected = torch.tensor([[1.0, -2 / 3, 1 / 3, 0.0], [4.0, 4 / 3, -8 / 3, 0.0]])
    torch.testing.assert_close(fake_quantize(weight, 3), expected)
    grid = symmetric_weight_grid(weight, 3)
    assert grid.integers(weight).tolist() == [[3, -2, 1, 0], [3, 1, -2, 0]]
    torch.testing.assert_close(grid.scale, torch.tensor([1 / 3, 4 / 3]))


def test_activations_clip_to_the_range_and_hold_zero_exactly():
    grid = activation_grid(0.5, 2.5, 3)  # range stretched to [0, 2.5]: scale 2.5 / 7
    assert int(grid.zero_point) == 0 and grid.qmax == 7
    x = torch.tensor([-1.0, 0.0, 1.0, 2.5, 9.0])
    assert grid.integers(x).tolist() == [0, 0, 3, 7, 7]
    torch.testing.assert_close(grid.fake(x), torch.tensor([0.0, 0.0, 3 * 2.5 / 7, 2.5, 2.5]))


def test_straight_through_gradients_pass_inside_the_range_and_stop_outside():
    x = torch.tensor([-2.0, 0.3, 1.2, 5.0], requires_grad=True)
    activation_grid(0.0, 2.0, 4).fake(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    w = torch.tensor([[0.3, -1.0, 0.6]], requires_grad=True)
    (fake_quantize(w, 4) * torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert w.grad.tolist() == [[1.0, 2.0, 3.0]]  # max-abs grid: nothing clips


def test_dorefa_matches_the_paper_formula():
    w = torch.tensor([-1.0, -0.2, 0.05, 0.7])
    t = torch.tanh(w)
    unit = t / (2 * t.abs().max()) + 0.5
    expected = 2 * torch.round(unit * 7) / 7 - 1
    torch.testing.assert_close(dorefa_weight(w, 3), expected)
    levels = torch.unique(dorefa_weight(torch.randn(100), 2) * 3).round()
    assert set(levels.tolist()) <= {-3.0, -1.0, 1.0, 3.0}


def test_one_bit_is_sign_times_mean_absolute_value():
    w = torch.tensor([[0.5, -1.5, 0.0, 2.0]], requires_grad=True)
    q = fake_quantize(w, 1)
    assert q.tolist() == [[1.0, -1.0, 1.0, 1.0]]
    q.sum().backward()
    assert w.grad.tolist() == [[1.0] * 4]


def test_batch_norm_folding_equals_the_unfolded_model_in_eval_mode():
    net = _conv_bn_net()
    x = torch.randn(5, 2, 4, 4)
    folded = fold_batch_norm(net[0], net[1])
    torch.testing.assert_close(folded(x), net[1](net[0](x)), atol=1e-5, rtol=1e-5)
    # QAT folds it too; with quantization not started, eval outputs are the model's.
    quantized = copy.deepcopy(net)
    QATQuantizer(
        quantized, [{"quant_types": ["weight"], "quant_bits": 8, "quant_start_step": 5, **ALL}]
    ).compress()
    assert isinstance(quantized[1], nn.Identity) and quantized[0].bn is not None
    torch.testing.assert_close(quantized(x), net(x), atol=1e-5, rtol=1e-5)


def test_qat_training_normalizes_with_batch_statistics_like_the_unfolded_model():
    net = _conv_bn_net()
    quantized = copy.deepcopy(net)
    QATQuantizer(
        quantized, [{"quant_types": ["weight"], "quant_bits": 8, "quant_start_step": 5, **ALL}]
    ).compress()
    x = torch.randn(6, 2, 4, 4)
    torch.testing.assert_close(quantized.train()(x), net.train()(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(quantized[0].bn.running_mean, net[1].running_mean)


def test_ema_ranges_start_at_the_first_batch_then_average():
    net = _conv_bn_net()
    quantizer = QATQuantizer(net, [{"quant_types": ["input"], "quant_bits": 8, **ALL}])
    quantizer.compress()
    layer = net[0]
    layer.train()
    first = torch.full((1, 2, 4, 4), 2.0)
    first[0, 0, 0, 0] = -1.0
    layer(first)
    assert layer.input_range.tolist() == [-1.0, 2.0]
    layer(torch.zeros(1, 2, 4, 4) + 4.0)
    expected = [EMA_DECAY * -1.0 + (1 - EMA_DECAY) * 4.0, EMA_DECAY * 2.0 + (1 - EMA_DECAY) * 4.0]
    torch.testing.assert_close(layer.input_range, torch.tensor(expected))
    other = copy.deepcopy(layer)
    track_range(other, "input", torch.tensor([-5.0, 1.0]), decay=None)  # calibration: min/max
    assert other.input_range.tolist()[0] == -5.0


def test_qat_trains_in_a_loop_and_quantizes_after_the_start_step():
    net = _conv_bn_net()
    quantizer = QATQuantizer(
        net,
        [
            {
                "quant_types": ["weight", "input", "output"],
                "quant_bits": 4,
                "quant_start_step": 2,
                **ALL,
            }
        ],
    )
    net = quantizer.compress().train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.randn(8, 2, 4, 4), torch.randint(0, 3, (8,))
    for _ in range(3):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        quantizer.step()
    assert quantizer.steps == 3 and net[0].layer.weight.grad is not None
    net.eval()
    out = net[0](x)  # output quantized to 16 levels of its tracked range
    assert len(torch.unique(out)) <= 16


def test_naive_quantization_costs_are_measured_in_bits_and_bops():
    net = _conv_bn_net()
    x = torch.zeros(1, 2, 4, 4)
    before = measure_cost(net, x)
    NaiveQuantizer(net, [{"quant_types": ["weight"], "quant_bits": 4, **ALL}]).compress()
    after = measure_cost(net, x)
    conv_w, conv_b, bn, lin_w, lin_b = 4 * 2 * 9, 4, 8, 64 * 3, 3
    conv_macs, lin_macs = 16 * 4 * 2 * 9, 64 * 3
    assert after == Cost(
        before.macs,
        before.params,
        bits=(conv_w + lin_w) * 4 + (conv_b + bn + lin_b) * 32,
        bops=(conv_macs + lin_macs) * 4 * 32,
    )


def test_naive_integers_reproduce_the_fake_quantized_weights():
    net = _conv_bn_net()
    NaiveQuantizer(net, [{"quant_types": ["weight"], "quant_bits": 5, **ALL}]).compress()
    layer = net[0]
    grid = layer.weight_grid()
    q = layer.quantized_weight()
    ints = grid.integers(q)
    assert ints.abs().max() <= 15
    torch.testing.assert_close(ints * grid.scale.reshape(-1, 1, 1, 1), q)


def test_dorefa_quantizes_only_weights():
    net = _conv_bn_net()
    DoReFaQuantizer(
        net, [{"quant_types": ["weight"], "quant_bits": 2, "op_types": ["Conv2d"]}]
    ).compress()
    values = set(net[0].quantized_weight().flatten().tolist())
    assert len(values) <= 4 and max(values) == 1.0
    with pytest.raises(InvalidParameterError, match=r"'quant_types'.*'weight'.*\['input'\]"):
        DoReFaQuantizer(_conv_bn_net(), [{"quant_types": ["input"], "quant_bits": 2, **ALL}])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"quant_types": ["weight"], "quant_bits": 0, **ALL}, r"'quant_bits'.*\[1, 32\].*Got 0 "),
        ({"quant_types": ["weight"], "quant_bits": 1.5, **ALL}, r"'quant_bits'.*Got 1\.5 "),
        ({"quant_types": ["weight"], "quant_bits": 33, **ALL}, r"'quant_bits'.*Got 33 "),
        (
            {"quant_types": ["weight"], "quant_bits": 8, "op_names": ["conv"]},
            r"names of modules.*'conv'",
        ),
        (
            {"quant_types": ["weight", "input"], "quant_bits": {"weight": 8}, **ALL},
            r"missing input",
        ),
        ({"quant_types": ["bias"], "quant_bits": 8, **ALL}, r"'quant_types'"),
    ],
)
def test_bad_config_entries_are_refused_with_one_clear_error(entry, message):
    with pytest.raises(InvalidParameterError, match=message):
        QATQuantizer(_conv_bn_net(), [entry])


def test_per_type_bits_and_override_order():
    net = _conv_bn_net()
    quantizer = QATQuantizer(
        net,
        [
            {"quant_types": ["weight", "input"], "quant_bits": {"weight": 4, "input": 8}, **ALL},
            {"quant_types": ["weight"], "quant_bits": 2, "op_names": ["4"]},
        ],
    )
    assert quantizer.configs["0"]["quant_bits"] == {"weight": 4, "input": 8}
    assert quantizer.configs["4"]["quant_bits"] == {"weight": 2}
    quantizer.compress()
    assert (net[0].weight_bits, net[0].activation_bits) == (4, 8)
    assert (net[4].weight_bits, net[4].activation_bits) == (2, 32)


def test_a_custom_quantizer_is_one_class_and_one_registry_line():
    calls: list[str] = []

    class Halving(Quantizer):
        name = "halving_for_test"
        quant_types = ("weight",)

        def quantize_weight(self, weight: torch.Tensor, config: dict[str, Any], *, layer):
            calls.append("weight")
            return weight / 2

        def update_epoch(self, epoch: int) -> None:
            calls.append(f"epoch {epoch}")

    register_quantizer(Halving)
    assert "halving_for_test" in available_quantizers()
    net = _conv_bn_net()
    reference = copy.deepcopy(net)
    quantizer = get_quantizer("halving_for_test")(
        net, [{"quant_types": ["weight"], "quant_bits": 8, "op_names": ["4"]}]
    )
    quantizer.compress()
    quantizer.update_epoch(1)
    x = torch.randn(2, 2, 4, 4)
    features = reference[:4](x)
    torch.testing.assert_close(
        net(x), nn.functional.linear(features, reference[4].weight / 2, reference[4].bias)
    )
    assert calls == ["epoch 1", "weight"]
    assert net[4].weight_grid() is None  # no integer grid declared: export refuses it


def test_quantized_state_dicts_load_weights_only(tmp_path):
    net = _conv_bn_net()
    QATQuantizer(net, [{"quant_types": ["weight", "input"], "quant_bits": 8, **ALL}]).compress()
    net.train()(torch.randn(4, 2, 4, 4))
    torch.save(net.state_dict(), tmp_path / "q.pt")
    other = _conv_bn_net()
    QATQuantizer(other, [{"quant_types": ["weight", "input"], "quant_bits": 8, **ALL}]).compress()
    other.load_state_dict(torch.load(tmp_path / "q.pt", weights_only=True))
    assert torch.equal(other[0].input_range, net[0].input_range)
