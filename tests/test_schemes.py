"""Conformance tests run on every registered scheme, plus scheme-specific checks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from greedy_compress.errors import InvalidParameterError
from greedy_compress.model.cost import measure_cost
from greedy_compress.model.profile import profile_model
from greedy_compress.model.swap import swapped
from greedy_compress.schemes import (
    ChannelPruning,
    FilterPruning,
    IndexPruning,
    Quantize,
    available_schemes,
    get_scheme,
    spatial_svd,
    weight_svd,
)

LAYERS = {
    "conv3x3": (nn.Conv2d(6, 10, 3, padding=1), (2, 6, 12, 13)),
    "conv_strided_rect": (
        nn.Conv2d(6, 10, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=False),
        (2, 6, 12, 13),
    ),
    "conv_same_reflect": (
        nn.Conv2d(6, 10, 3, padding="same", padding_mode="reflect"),
        (1, 6, 9, 9),
    ),
    "conv_valid": (nn.Conv2d(6, 10, 3, stride=2), (1, 6, 11, 11)),
    "conv1x1": (nn.Conv2d(6, 10, 1), (1, 6, 5, 5)),
    "depthwise": (nn.Conv2d(6, 6, 3, padding=1, groups=6), (1, 6, 5, 5)),
    "conv1d": (nn.Conv1d(6, 10, 5, stride=2, padding=1), (2, 6, 20)),
    "linear": (nn.Linear(12, 10), (3, 4, 12)),
    "linear_tiny_output": (nn.Linear(12, 1), (3, 12)),
}


def _layer(key):
    torch.manual_seed(0)
    module, shape = LAYERS[key]
    module = copy.deepcopy(module).eval()
    x = torch.randn(shape)
    info = profile_model(nn.Sequential(module), x).layers["0"]
    return module, x, info


def _supported(scheme_name):
    scheme = get_scheme(scheme_name)
    return [k for k in LAYERS if scheme.unsupported_reason(_layer(k)[2], "mac") is None]


CASES = [(s, k) for s in available_schemes() for k in _supported(s)]


@pytest.mark.parametrize(("scheme_name", "key"), CASES)
def test_full_rank_reproduces_the_layer(scheme_name, key):
    scheme = get_scheme(scheme_name)
    module, x, info = _layer(key)
    compressed = scheme.compress(module, scheme.max_rank(info))
    torch.testing.assert_close(compressed(x), module(x), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize(("scheme_name", "key"), CASES)
def test_analytic_cost_equals_measured_cost_at_every_rank(scheme_name, key):
    scheme = get_scheme(scheme_name)
    module, x, info = _layer(key)
    for rank in sorted({1, 2, scheme.max_rank(info) // 2, scheme.max_rank(info)} - {0}):
        assert measure_cost(scheme.compress(module, rank), x) == scheme.cost(info, rank)


@pytest.mark.parametrize(("scheme_name", "key"), CASES)
def test_compress_never_mutates_its_argument(scheme_name, key):
    scheme = get_scheme(scheme_name)
    module, _, _ = _layer(key)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    scheme.compress(module, 1)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize(("scheme_name", "key"), CASES)
@pytest.mark.parametrize("metric", ["mac", "memory"])
def test_rank_for_ratio_is_the_largest_rank_within_the_ratio(scheme_name, key, metric):
    scheme = get_scheme(scheme_name)
    _, _, info = _layer(key)
    original = info.cost.get(metric)
    for ratio in (0.2, 0.5, 0.9):
        rank = scheme.rank_for_ratio(info, ratio, metric)
        fits = scheme.cost(info, rank).get(metric) <= ratio * original
        assert fits or rank == 1
        if rank < scheme.max_rank(info):
            assert scheme.cost(info, rank + 1).get(metric) > ratio * original


@pytest.mark.parametrize("multiplicity", [4, 8])
def test_rank_rounding_gives_multiples_and_reports_the_real_ratio(multiplicity):
    scheme = get_scheme("weight_svd")
    _, _, info = _layer("linear")  # max rank 10
    for ratio in (0.1, 0.3, 0.6, 0.9):
        plain = scheme.rank_for_ratio(info, ratio, "mac")
        candidate = scheme.candidate(info, ratio, "mac", multiplicity)
        assert candidate.rank == min(max(multiplicity, plain // multiplicity * multiplicity), 10)
        assert candidate.kept_ratio == pytest.approx(
            scheme.cost(info, candidate.rank).macs / info.cost.macs
        )


@pytest.mark.parametrize(
    ("scheme_name", "key", "reason"),
    [
        ("spatial_svd", "depthwise", "groups=6"),
        ("spatial_svd", "conv1d", "2-D convolution"),
        ("spatial_svd", "linear", "2-D convolution"),
        ("weight_svd", "depthwise", "groups=6"),
        ("weight_svd", "linear_tiny_output", "cannot lower"),
    ],
)
def test_layers_a_scheme_cannot_help_are_skipped_with_the_reason(scheme_name, key, reason):
    _, _, info = _layer(key)
    assert reason in get_scheme(scheme_name).unsupported_reason(info, "mac")


def test_spatial_svd_of_a_1x1_conv_is_its_weight_svd():
    module, x, _ = _layer("conv1x1")
    spatial, weight = get_scheme("spatial_svd").compress(module, 3), weight_svd(module, 3)
    assert [tuple(m.kernel_size) for m in spatial] == [(1, 1), (1, 1)]
    torch.testing.assert_close(spatial(x), weight(x), atol=1e-5, rtol=1e-5)
    assert measure_cost(spatial, x) == measure_cost(weight, x)


def test_functional_forms_split_layers_as_documented():
    pair = spatial_svd(nn.Conv2d(8, 16, 3, padding=1), 4)
    assert [tuple(m.kernel_size) for m in pair] == [(3, 1), (1, 3)]
    assert pair[0].out_channels == 4
    linear = weight_svd(nn.Linear(16, 8), 4)
    assert [(m.in_features, m.out_features) for m in linear] == [(16, 4), (4, 8)]


def test_low_rank_error_shrinks_as_rank_grows():
    module, x, info = _layer("conv3x3")
    scheme = get_scheme("spatial_svd")
    errors = [
        (scheme.compress(module, r)(x) - module(x)).norm().item()
        for r in (1, 4, 8, scheme.max_rank(info))
    ]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-3 * errors[0]


def test_unknown_scheme_lists_the_valid_ones():
    with pytest.raises(
        InvalidParameterError, match=r"'scheme'.*'spatial_svd'.*'weight_svd'.*'svd'"
    ):
        get_scheme("svd")


# Model-level conformance: every registered scheme, prepared on a model as the search does.
# Schemes that need constructor arguments (data, indices) get them here; a new scheme that is
# missing from this table fails test_every_scheme_has_a_model_fixture instead of being skipped.

_CONTEXT_INPUTS = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
_DATA = [(_CONTEXT_INPUTS, torch.zeros(16))]

MODEL_FIXTURES = {
    "weight_svd": lambda: get_scheme("weight_svd"),
    "spatial_svd": lambda: get_scheme("spatial_svd"),
    "tucker": lambda: get_scheme("tucker"),
    "cp": lambda: get_scheme("cp"),
    "channel_pruning": lambda: ChannelPruning(data=_DATA, num_reconstruction_samples=8),
    "filter_pruning_l2": lambda: get_scheme("filter_pruning_l2"),
    "filter_pruning_gm": lambda: get_scheme("filter_pruning_gm"),
    "filter_pruning_nuclear": lambda: FilterPruning(criterion="nuclear", data=_DATA, num_samples=8),
    "filter_pruning_index": lambda: IndexPruning(
        indices={"conv1": [0, 3], "conv2": [1], "pointwise": [5, 6, 7]}
    ),
    "quantize": lambda: Quantize(activation_bits=8, data=_DATA, num_samples=8),
    "sparsity": lambda: get_scheme("sparsity"),
}


# Attention-only schemes find nothing in tiny_net: tests/test_architectures.py runs them (full
# rank reproduces the model, exact cost) on the attention reference blocks.
ATTENTION_ONLY = {"head_pruning", "snp"}


def test_every_scheme_has_a_model_fixture():
    assert set(available_schemes()) <= set(MODEL_FIXTURES) | ATTENTION_ONLY


@pytest.mark.parametrize("scheme_name", sorted(MODEL_FIXTURES))
def test_in_model_cost_is_exact_and_full_rank_reproduces_the_model(scheme_name, tiny_net):
    scheme = MODEL_FIXTURES[scheme_name]()
    example = _CONTEXT_INPUTS[:2]
    profile = profile_model(tiny_net, example)
    profile = scheme.prepare(tiny_net, example_input=example, profile=profile) or profile
    # quantization and unstructured sparsity keep the MACs
    metric = "memory" if scheme_name in ("quantize", "sparsity") else "mac"
    planned = {n: i for n, i in profile.layers.items() if not scheme.unsupported_reason(i, metric)}
    assert planned
    with torch.no_grad():
        expected = tiny_net(_CONTEXT_INPUTS)
    for name, info in planned.items():
        factorization = scheme.factorize_in(tiny_net, name)
        full = scheme.max_rank(info)
        for rank in sorted({1, full // 2, full} - {0}):
            with swapped(tiny_net, factorization.replacements(name, rank)), torch.no_grad():
                assert measure_cost(tiny_net, example) == (
                    profile.model_cost - info.cost + scheme.cost(info, rank)
                ), (name, rank)
                if rank == full:
                    torch.testing.assert_close(
                        tiny_net(_CONTEXT_INPUTS), expected, atol=2e-5, rtol=1e-5
                    )
