"""torch's attention and transformer modules: the drop-in Attention, weight SVD of their
projections, and compressed TransformerEncoderLayers that stay correct on the fused fast path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from greedy_compress import apply_selection, count_macs, manual_selection
from greedy_compress.model.attention import Attention
from greedy_compress.model.cost import measure_cost
from greedy_compress.model.profile import profile_model
from greedy_compress.model.swap import replace_modules, swapped
from greedy_compress.model.transformer import traceable_equivalent
from greedy_compress.schemes import WeightSVD, get_scheme

pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")


def _encoder(norm_first: bool = False, batch_first: bool = True) -> nn.TransformerEncoder:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        16, 4, 32, dropout=0.0, batch_first=batch_first, norm_first=norm_first
    )
    return nn.TransformerEncoder(layer, 2).eval()


MASKS = {
    "none": {},
    "no weights": {"need_weights": False},
    "per head weights": {"average_attn_weights": False},
    "padding": {"key_padding_mask": torch.tensor([[False] * 7] * 2 + [[False] * 4 + [True] * 3])},
    "float mask": {"attn_mask": torch.randn(5, 7, generator=torch.Generator().manual_seed(1))},
    "bool mask, no weights": {
        "attn_mask": torch.rand(5, 7, generator=torch.Generator().manual_seed(2)) > 0.8,
        "need_weights": False,
    },
    "per head mask": {
        "attn_mask": torch.randn(6, 5, 7, generator=torch.Generator().manual_seed(3))
    },
}


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("case", list(MASKS))
def test_attention_reproduces_multihead_attention(batch_first, case):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first).eval()
    attention = Attention.from_multihead(mha)
    query, memory = torch.randn(3, 5, 8), torch.randn(3, 7, 8)
    if not batch_first:
        query, memory = query.transpose(0, 1), memory.transpose(0, 1)
    expected, expected_weights = mha(query, memory, memory, **MASKS[case])
    got, weights = attention(query, memory, memory, **MASKS[case])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert (weights is None) == (expected_weights is None)
    if weights is not None:
        torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)


def test_attention_from_separate_projection_weights():
    mha = nn.MultiheadAttention(8, 2, kdim=6, vdim=4, batch_first=True).eval()
    query, key, value = torch.randn(2, 5, 8), torch.randn(2, 3, 6), torch.randn(2, 3, 4)
    got = Attention.from_multihead(mha)(query, key, value)[0]
    torch.testing.assert_close(got, mha(query, key, value)[0], atol=1e-6, rtol=1e-5)


def test_profile_lists_multihead_attention_apart_and_not_its_projections():
    profile = profile_model(_encoder(), torch.zeros(2, 6, 16))
    assert "layers.0.self_attn" in profile.attention
    assert "layers.0.self_attn" not in profile.layers  # only schemes that compress it add it
    assert not any("out_proj" in name for name in (*profile.layers, *profile.unusable))
    info = profile.attention["layers.0.self_attn"]
    assert (info.kind, info.groups, info.input_shape, info.key_shape) == (
        "attention",
        4,
        (2, 6, 16),
        (2, 6, 16),
    )


@pytest.mark.parametrize("batch_first", [True, False])
def test_weight_svd_of_every_projection_is_exact_at_full_rank_and_priced_exactly(batch_first):
    model = _encoder(batch_first=batch_first)
    shape = (2, 6, 16) if batch_first else (6, 2, 16)
    x = torch.randn(shape)
    scheme = get_scheme("weight_svd")
    profile = scheme.prepare(model, example_input=x, profile=profile_model(model, x))
    assert "layers.0.self_attn" in profile.layers
    with torch.inference_mode():
        expected = model(x)
    for name, info in profile.layers.items():
        factorization = scheme.factorize_in(model, name)
        top = scheme.max_rank(info)
        for rank in (1, top // 2, top):
            with swapped(model, factorization.replacements(name, rank)):
                assert measure_cost(model, x) == profile.model_cost - info.cost + scheme.cost(
                    info, rank
                ), (name, rank)
                if rank == top:
                    with torch.inference_mode():  # the fused fast path, where it still applies
                        torch.testing.assert_close(model(x), expected, atol=2e-5, rtol=1e-5)


def test_a_compressed_encoder_layer_runs_correctly_in_eval_mode_on_the_fast_path():
    model = _encoder()
    x = torch.randn(2, 6, 16)
    selection = manual_selection(
        model,
        {"layers.0.linear1": 1.0, "layers.0.linear2": 0.5, "layers.1.self_attn": 0.5},
        scheme="weight_svd",
        example_input=x,
        ratio_of="rank",
    )
    small = apply_selection(model, selection, example_input=x)
    assert isinstance(small.layers[0].linear2, nn.Sequential)
    assert isinstance(small.layers[1].self_attn, Attention)
    with torch.inference_mode():  # eval mode, no grad: the conditions of torch's fast path
        fast = small(x)
    with torch.no_grad():
        regular = small.train()(x)  # dropout is 0: the same function
    torch.testing.assert_close(fast, regular, atol=1e-5, rtol=1e-5)
    assert count_macs(small, x) / count_macs(model, x) == pytest.approx(selection.predicted_ratio)
    assert model.layers[0].activation_relu_or_gelu  # the original keeps its fast path


def test_without_the_fast_path_guard_the_encoder_layer_fails_in_eval_mode():
    # The guard's test: a low-rank pair put in place of linear1 by hand breaks torch's layer.
    model = _encoder()
    x = torch.randn(2, 6, 16)
    pair = nn.Sequential(nn.Linear(16, 4), nn.Linear(4, 32))
    model.layers[0].linear1 = pair
    with torch.inference_mode(), pytest.raises(AttributeError, match="weight"):
        model(x)
    fixed = _encoder()
    replace_modules(fixed, {"layers.0.linear1": pair})
    with torch.inference_mode():
        assert fixed(x).shape == x.shape


@pytest.mark.parametrize("norm_first", [False, True])
def test_traceable_equivalents_compute_the_same_as_torchs_modules(norm_first):
    model = _encoder(norm_first=norm_first)
    twin = traceable_equivalent(model)
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), atol=1e-6, rtol=1e-5)
    assert [n for n, _ in twin.named_modules() if n.endswith("linear1")] == [
        "layers.0.linear1",
        "layers.1.linear1",
    ]


def test_data_aware_weight_svd_leaves_attention_to_the_plain_scheme():
    """The calibration pass collects no inputs of nn.MultiheadAttention's packed projections,
    so the data-aware option skips the module with that reason and compresses the rest."""
    model, x = _encoder(), torch.randn(2, 6, 16)
    scheme = WeightSVD(data_aware=True, data=[x])
    profile = scheme.prepare(model, example_input=x, profile=profile_model(model, x))
    reason = scheme.skip_reason(profile.layers["layers.0.self_attn"])
    assert reason is not None and "plain weight SVD" in reason
    assert scheme.skip_reason(profile.layers["layers.0.linear1"]) is None
    factorization = scheme.factorize_in(model, "layers.0.linear1")
    with swapped(model, factorization.replacements("layers.0.linear1", 16)), torch.inference_mode():
        assert model(x).shape == x.shape
