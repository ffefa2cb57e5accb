"""Every scheme on every reference block (ConvNeXt, ViT with torch's and hand-written
attention, Swin, MaxViT, MBConv with SE, ShuffleNet, Inception, DenseNet, RegNet X and Y,
ResNeXt, Wide-ResNet, VGG-11-BN, AlexNet, SqueezeNet, GoogLeNet, Inception-v3, MobileNetV3,
MnasNet): it compresses (full rank reproduces the output; measured MACs fall and equal the
analytic cost; the model runs in eval mode and on torch's fast path) or refuses with a
reason, never a wrong model."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from greedy_compress import apply_selection, count_macs, manual_selection
from greedy_compress.demo.models import REFERENCE_BLOCKS
from greedy_compress.errors import NoCompressibleLayerError
from greedy_compress.model.cost import measure_cost
from greedy_compress.model.profile import profile_model
from greedy_compress.model.swap import swapped
from greedy_compress.schemes import available_schemes, get_scheme

SHAPE = (1, 1, 16, 16)
DATA = [(torch.randn(16, *SHAPE[1:], generator=torch.Generator().manual_seed(2)), None)]
SCHEMES = [s for s in available_schemes() if s != "filter_pruning_index"]  # manual only
ATTENTION = ("vit", "vit_hand", "swin")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# (block, scheme) pairs known to stop with a RuntimeError (a crash, never a wrong model),
# marked strict xfail so the suite fails once they work. None now: MobileNetV3's first
# block crashed channel pruning's refit until that layer was refused (the test below).
KNOWN_FAILURES: set[tuple[str, str]] = set()


def _cases(keys, schemes) -> list:
    return [
        pytest.param(
            key,
            scheme,
            marks=[pytest.mark.xfail(strict=True, raises=RuntimeError)]
            if (key, scheme) in KNOWN_FAILURES
            else [],
            id=f"{key}-{scheme}",
        )
        for key in keys
        for scheme in schemes
    ]


def _model(key: str) -> nn.Module:
    torch.manual_seed(0)
    model = REFERENCE_BLOCKS[key]()
    for module in model.modules():  # statistics that make a wrong slice show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _prepared(key: str, scheme_name: str):
    model = _model(key)
    scheme = get_scheme(scheme_name).with_data(DATA)
    example = torch.zeros(SHAPE)
    profile = profile_model(model, example)
    profile = scheme.prepare(model, example_input=example, profile=profile) or profile
    reasons = {n: scheme.unsupported_reason(i, "mac") for n, i in profile.layers.items()}
    return model, scheme, example, profile, reasons


def _checked(layers: dict, count: int = 2) -> list[str]:
    names = list(layers)
    return list(dict.fromkeys([*names[:1], *names[-(count - 1) :]])) if names else []


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("key", "scheme_name"), _cases(REFERENCE_BLOCKS, SCHEMES))
def test_every_scheme_compresses_every_block_correctly_or_says_why_not(key, scheme_name):
    model, scheme, example, profile, reasons = _prepared(key, scheme_name)
    planned = {n: profile.layers[n] for n, r in reasons.items() if r is None}
    for name, reason in reasons.items():  # every refusal names its reason
        assert reason is None or len(reason) > 10, (name, reason)
    inputs = torch.randn(3, *SHAPE[1:], generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = model(inputs)
    for name in _checked(planned):
        info = planned[name]
        factorization = scheme.factorize_in(model, name)
        top = scheme.max_rank(info)
        for rank in sorted({scheme.rank_for_ratio(info, 0.5, "mac"), top}):
            with swapped(model, factorization.replacements(name, rank)):
                measured = measure_cost(model, example)
                with torch.no_grad():
                    eval_out = model(inputs)
                with torch.inference_mode():  # torch's fused fast paths, where they apply
                    fast_out = model(inputs)
            assert measured == profile.model_cost - info.cost + scheme.cost(info, rank), name
            torch.testing.assert_close(fast_out, eval_out, atol=1e-5, rtol=1e-5)
            assert torch.isfinite(eval_out).all()
            if rank == top and scheme_name not in ("cp",):  # CP fits below its top rank
                torch.testing.assert_close(eval_out, expected, atol=2e-5, rtol=1e-4)
            elif rank < top:
                assert measured.macs < profile.model_cost.macs


@pytest.mark.parametrize(
    ("key", "scheme_name"), _cases(REFERENCE_BLOCKS, ["channel_pruning", "filter_pruning_l2"])
)
def test_both_pruning_schemes_prune_every_block_and_price_selections_exactly(key, scheme_name):
    model, scheme, example, _profile, reasons = _prepared(key, scheme_name)
    planned = [n for n, r in reasons.items() if r is None]
    assert planned, reasons
    selection = manual_selection(
        model,
        {name: 0.5 for name in planned},
        scheme=scheme,
        example_input=example,
        ratio_of="rank",
    )
    small = apply_selection(model, selection, scheme=scheme, example_input=example)
    measured = count_macs(small, example) / count_macs(model, example)
    assert measured == pytest.approx(selection.predicted_ratio, abs=1e-12)
    assert measured < 1
    with torch.inference_mode():
        out = small(torch.randn(2, *SHAPE[1:]))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("key", ATTENTION)
@pytest.mark.parametrize("scheme_name", ["head_pruning", "snp"])
def test_attention_blocks_prune_by_heads_and_by_snp(key, scheme_name):
    model, scheme, example, profile, reasons = _prepared(key, scheme_name)
    planned = [n for n, r in reasons.items() if r is None]
    assert planned and all(profile.layers[n].kind == "attention" for n in planned)
    selection = manual_selection(
        model, {n: 0.5 for n in planned}, scheme=scheme, example_input=example, ratio_of="rank"
    )
    small = apply_selection(model, selection, scheme=scheme, example_input=example)
    measured = count_macs(small, example) / count_macs(model, example)
    assert measured == pytest.approx(selection.predicted_ratio, abs=1e-12) and measured < 1


def test_schemes_that_find_nothing_say_why_for_every_layer():
    model = _model("convnext")
    from greedy_compress import build_eval_scores

    with pytest.raises(NoCompressibleLayerError, match=r"not an attention module") as caught:
        build_eval_scores(
            model, lambda m: 0.0, scheme="head_pruning", input_shape=SHAPE, progress=False
        )
    assert "not an attention module" in caught.value.skipped["features.2.pwconv1"]


@pytest.mark.parametrize("key", ["swin", "vit"])
def test_suffix_only_dictionaries_equal_whole_model_ones_on_attention_blocks(key):
    from evaluators import TopKAccuracy
    from greedy_compress import build_eval_scores

    model = _model(key)
    inputs = torch.randn(32, *SHAPE[1:], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        labels = model(inputs).argmax(dim=1)
    evaluator = TopKAccuracy([(inputs[:16], labels[:16]), (inputs[16:], labels[16:])])
    for scheme in ("filter_pruning_l2", "head_pruning"):
        built = {}
        for fast in (True, False):
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # no fallback to whole models
                scores = build_eval_scores(
                    model,
                    evaluator,
                    scheme=scheme,
                    candidates=[0.5],
                    input_shape=SHAPE,
                    fast=fast,
                    progress=False,
                )
            built[fast] = {n: [e.score for e in s.entries] for n, s in scores.layers.items()}
        assert built[True] == built[False]


def test_data_criteria_rank_channels_only_attention_reads_by_the_producers_output():
    model, scheme, example, _profile, reasons = _prepared("vit_hand", "filter_pruning_nuclear")
    assert reasons["blocks.0.self_attention.q"] is None  # q and k: read by the matmul only
    selection = manual_selection(
        model,
        {"blocks.0.self_attention.q": 0.5},
        scheme=scheme,
        example_input=example,
        ratio_of="rank",
    )
    small = apply_selection(model, selection, scheme=scheme, example_input=example)
    attention = small.blocks[0].self_attention
    assert attention.q.out_features == attention.k.out_features == 8  # k pruned with q
    measured = count_macs(small, example) / count_macs(model, example)
    assert measured == pytest.approx(selection.predicted_ratio, abs=1e-12) and measured < 1


def test_maxvit_block_and_grid_attention_prune_down_to_one_token_windows():
    """The last block's 2x2 map has 1x1 grid windows (size-1 dims in the partition reshapes,
    as MaxViT-T's 7x7 last stage): its attention and MLP Linears prune like the first's."""
    reasons = _prepared("maxvit", "filter_pruning_l2")[4]
    blocked = {n: r for n, r in reasons.items() if r and "cannot change" in r}
    assert blocked == {"head": "its output channels cannot change: the model's output"}
    for name in ("blocks.1.block_attention.fc1", "blocks.1.grid_attention.fc1"):
        assert reasons[name] is None
    model, scheme, example, _profile, reasons = _prepared("maxvit", "channel_pruning")
    assert reasons["blocks.1.grid_attention.attn.merge"] is None
    selection = manual_selection(
        model,
        {"blocks.1.grid_attention.attn.merge": 0.5, "blocks.1.block_attention.fc2": 0.5},
        scheme=scheme,
        example_input=example,
        ratio_of="rank",
    )
    small = apply_selection(model, selection, scheme=scheme, example_input=example)
    assert small.blocks[1].grid_attention.attn.merge.in_features == 8
    assert small.blocks[1].grid_attention.attn.relative_position_bias_table.shape[1] == 4
    measured = count_macs(small, example) / count_macs(model, example)
    assert measured == pytest.approx(selection.predicted_ratio, abs=1e-12) and measured < 1


def test_channel_pruning_refuses_a_layer_whose_outputs_are_tied_to_its_own_inputs():
    # MobileNetV3's first block has no expansion: the residual add ties the projection's
    # output channels, through the depthwise conv, to its own input channels. Refitting its
    # outputs while pruning its inputs crashed; it is refused by name and the rest prunes.
    from greedy_compress import available_layers

    model = _model("mobilenet_v3").eval()
    scheme = get_scheme("channel_pruning").with_data(DATA)
    listing = available_layers(model, scheme=scheme, input_shape=SHAPE)
    tied = [n for n, why in listing.skipped.items() if "tied to its own input" in why]
    assert tied and listing.layers
