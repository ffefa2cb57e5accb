"""Bit widths as candidates: exact costs, shared activation quantizers decided together,
joint (scheme, rank, bits) selection, and clear refusals."""

from __future__ import annotations

import pytest
import torch
from tiny import OutputDistance, TinyNet
from torch import nn

import greedy_compress as gc
from greedy_compress.errors import GreedyCompressError, InvalidParameterError
from greedy_compress.model.cost import measure_cost
from greedy_compress.model.profile import profile_model
from greedy_compress.model.swap import swapped
from greedy_compress.schemes import CompressThenQuantize, Quantize, get_scheme

LAYERS = {
    "conv": (nn.Conv2d(6, 10, 3, padding=1), (2, 6, 7, 7)),
    "conv_nobias": (nn.Conv2d(6, 10, 3, stride=2, bias=False), (1, 6, 9, 9)),
    "depthwise": (nn.Conv2d(6, 6, 3, padding=1, groups=6), (1, 6, 5, 5)),
    "conv1d": (nn.Conv1d(6, 10, 5, padding=1), (2, 6, 20)),
    "linear": (nn.Linear(12, 10), (3, 4, 12)),
}


def _layer(key):
    torch.manual_seed(0)
    module, shape = LAYERS[key]
    x = torch.randn(shape)
    return module.eval(), x, profile_model(nn.Sequential(module), x).layers["0"]


@pytest.mark.parametrize("key", sorted(LAYERS))
@pytest.mark.parametrize("activation_bits", [None, 8])
def test_bit_width_costs_are_exact_in_every_metric(key, activation_bits):
    module, x, info = _layer(key)
    scheme = Quantize(activation_bits=activation_bits, data=[x], num_samples=2)
    model = nn.Sequential(module)
    scheme.prepare(model, example_input=x)
    factorization = scheme.factorize_in(model, "0")
    for bits in (1, 2, 3, 4, 8, 16, 32):
        built = factorization.build(bits)
        assert measure_cost(built, x) == scheme.cost(info, bits), bits
    assert scheme.cost(info, 32) == info.cost
    torch.testing.assert_close(factorization.build(32)(x), module(x))


@pytest.mark.parametrize("base", ["weight_svd", "spatial_svd", "tucker", "cp"])
def test_compress_then_quantize_costs_are_exact(base):
    module, x, info = _layer("conv")
    scheme = get_scheme(f"{base}+w4")
    assert isinstance(scheme, CompressThenQuantize) and scheme.name == f"{base}+w4"
    for rank in (1, 2, scheme.max_rank(info) // 2):
        built = scheme.compress(module, rank)
        assert any(isinstance(m, gc.quantization.QuantizedLayer) for m in built.modules())
        assert measure_cost(built, x) == scheme.cost(info, rank), rank


def test_a_bits_dictionary_has_exact_candidate_costs(tiny_net, distance_evaluator):
    example = torch.zeros(1, 1, 8, 8)
    scores = gc.build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="quantize",
        cost="memory",
        input_shape=(1, 1, 8, 8),
        progress=False,
    )
    assert scores.cost_metric == "memory" and scores.fingerprint["scheme_settings"]["bits"] == [
        2,
        3,
        4,
        6,
        8,
    ]
    scheme = get_scheme("quantize")
    for name, layer in scores.layers.items():
        assert [e.rank for e in layer.entries] == [2, 3, 4, 6, 8]
        for entry in layer.entries:
            new = scheme.factorize_in(tiny_net, name).replacements(name, entry.rank)
            with swapped(tiny_net, new):
                measured = measure_cost(tiny_net, example)
            assert measured == scores.model_cost - layer.info.cost + entry.cost
            assert entry.kept_ratio == entry.cost.bits / layer.info.cost.bits


def test_quantization_offers_nothing_for_macs(tiny_net, distance_evaluator):
    with pytest.raises(gc.NoCompressibleLayerError, match=r"keeps every MAC.*cost='memory'"):
        gc.build_eval_scores(
            tiny_net,
            distance_evaluator,
            scheme="quantize",
            input_shape=(1, 1, 8, 8),
            progress=False,
        )


class _Fork(nn.Module):
    """Two convs read the same tensor (one activation quantizer), then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.left = nn.Conv2d(4, 4, 3, padding=1)
        self.right = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4 * 64, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.head((self.left(x) + self.right(x)).flatten(1))


def test_layers_sharing_an_activation_quantizer_are_decided_together():
    torch.manual_seed(0)
    net = _Fork().eval()
    data = [(torch.randn(8, 1, 8, 8), torch.zeros(8))]
    example = torch.zeros(1, 1, 8, 8)
    scheme = Quantize(activation_bits=8, data=data, num_samples=8)
    evaluator = OutputDistance(net, data[0][0])
    scores = gc.build_eval_scores(
        net, evaluator, scheme=scheme, cost="bops", example_input=example, progress=False
    )
    assert "left" in scores.layers and "right" not in scores.layers
    assert "shares its input quantizer with left" in scores.skipped["right"]
    left = scores.layers["left"]
    plain = profile_model(net, example).layers
    assert left.info.cost == plain["left"].cost + plain["right"].cost
    new = scheme.factorize_in(net, "left").replacements("left", 4)
    assert set(new) == {"left", "right"}
    with swapped(net, new):
        assert (
            measure_cost(net, example) == scores.model_cost - left.info.cost + left.entries[2].cost
        )
        assert new["left"].input_range.tolist() == new["right"].input_range.tolist()
    selection = gc.select(scores, target=0.3, solver="knapsack")
    small = gc.apply_selection(net, selection, scheme=scheme, example_input=example)
    measured = measure_cost(small, example).bops / measure_cost(net, example).bops
    assert measured == pytest.approx(selection.predicted_ratio)
    with pytest.raises(GreedyCompressError, match="made with activation_bits=8"):
        gc.apply_selection(net, selection, example_input=example)
    svd = gc.build_eval_scores(
        net, evaluator, scheme="weight_svd", cost="bops", example_input=example, progress=False
    )
    with pytest.raises(InvalidParameterError, match=r"decides \['right'\] with another layer"):
        gc.combine_scores([scores, svd])


def test_joint_scheme_rank_and_bits_under_one_budget(tiny_net, distance_evaluator):
    example = torch.zeros(1, 1, 8, 8)
    schemes = ("quantize", "weight_svd+w8", "weight_svd+w4")
    dictionaries = [
        gc.build_eval_scores(
            tiny_net,
            distance_evaluator,
            scheme=s,
            cost="memory",
            candidates=4,
            example_input=example,
            progress=False,
        )
        for s in schemes
    ]
    mixed = gc.combine_scores(dictionaries)
    # Below 2-bit weights everywhere (1/16 of the bits): only low rank at low bits gets there.
    selection = gc.select(mixed, target=0.05, solver="knapsack")
    small = gc.apply_selection(tiny_net, selection, example_input=example)
    kept = measure_cost(small, example).bits / measure_cost(tiny_net, example).bits
    assert kept == pytest.approx(selection.predicted_ratio) and kept <= 0.05
    chosen = {c.scheme for c in selection.choices.values()}
    assert chosen <= set(schemes) and chosen & {"weight_svd+w8", "weight_svd+w4"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": [0]}, r"'bits'.*\[1, 31\].*Got 0"),
        ({"bits": [32]}, r"'bits'.*Got 32"),
        ({"bits": [1.5]}, r"'bits'.*Got 1\.5"),
        ({"bits": []}, r"'bits'.*non-empty"),
        ({"activation_bits": 33}, r"'activation_bits'.*Got 33"),
    ],
)
def test_bad_quantize_settings_are_refused(kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        Quantize(**kwargs)


def test_activation_quantization_needs_data_and_composites_need_a_decomposition():
    with pytest.raises(InvalidParameterError, match=r"'data'.*Quantize \(activation_bits"):
        Quantize(activation_bits=8).check_ready()
    with pytest.raises(InvalidParameterError, match=r"'base'.*decomposition scheme"):
        get_scheme("filter_pruning_l2+w4")
    with pytest.raises(InvalidParameterError, match=r"'bits'.*Got 40"):
        get_scheme("weight_svd+w40")
    assert TinyNet  # the tiny net fixture's module is importable for these tests
