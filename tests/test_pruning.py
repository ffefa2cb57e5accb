"""Pruning schemes on ResNet-, VGG-, MobileNetV2- and DenseNet-style models: the pruned
model is a smaller dense model that runs, its measured cost equals the analytic one,
pruning nothing changes nothing, and reconstruction helps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from greedy_compress import apply_selection, compress, count_macs, load_compressed
from greedy_compress.errors import GreedyCompressError, InvalidParameterError
from greedy_compress.model.cost import measure_cost
from greedy_compress.model.profile import profile_model
from greedy_compress.model.swap import swapped
from greedy_compress.schemes import ChannelPruning, FilterPruning
from greedy_compress.selection.manual import manual_selection
from tests.pruning_models import FACTORIES, make_inputs, make_model, single_thread

DATA = [(make_inputs(16, seed=2), torch.zeros(16))]

pytestmark = pytest.mark.usefixtures(single_thread.__name__)


def _schemes():
    return {
        "channel_pruning": lambda: ChannelPruning(data=DATA, num_reconstruction_samples=16),
        "l2": lambda: FilterPruning(criterion="l2"),
        "gm": lambda: FilterPruning(criterion="gm"),
        "nuclear": lambda: FilterPruning(criterion="nuclear", data=DATA, num_samples=8),
    }


CASES = [(model, scheme) for model in FACTORIES for scheme in _schemes()]


def _prepared(model_key, scheme_key):
    model, scheme = make_model(model_key), _schemes()[scheme_key]()
    example = make_inputs(2)
    profile = scheme.prepare(model, example_input=example, profile=profile_model(model, example))
    layers = {
        n: i for n, i in profile.layers.items() if scheme.unsupported_reason(i, "mac") is None
    }
    return model, scheme, example, profile, layers


@pytest.mark.parametrize(("model_key", "scheme_key"), CASES)
def test_measured_cost_equals_analytic_and_full_rank_changes_nothing(model_key, scheme_key):
    model, scheme, example, profile, layers = _prepared(model_key, scheme_key)
    assert layers, "the scheme found nothing to prune"
    inputs = make_inputs(4, seed=3)
    with torch.no_grad():
        expected = model(inputs)
    for name, info in layers.items():
        factorization = scheme.factorize_in(model, name)
        full = scheme.max_rank(info)
        for rank in sorted({1, full // 2, full} - {0}):
            with swapped(model, factorization.replacements(name, rank)), torch.no_grad():
                measured = measure_cost(model, example)
                outputs = model(inputs)
            assert measured == profile.model_cost - info.cost + scheme.cost(info, rank), name
            if rank == full:
                assert torch.equal(outputs, expected), name


def test_channel_pruning_refits_readers_of_a_concatenation_and_skips_its_own_readers():
    _, scheme, _, _, layers = _prepared("densenet", "channel_pruning")
    # the stem's channels feed block1.0.conv directly and later layers through the dense
    # concatenations: pruned under the first reader, every reader refit
    assert "block1.0.conv" in layers
    skipped = scheme.skipped_layers()
    assert "concatenation of several channel groups" in skipped["block1.1.conv"]


@pytest.mark.parametrize("model_key", list(FACTORIES))
def test_pruned_model_is_a_smaller_dense_model_that_runs(model_key):
    model = make_model(model_key)
    example = make_inputs(2)
    scheme = FilterPruning(criterion="l2")
    selection = manual_selection(
        model,
        {name: 0.5 for name in _prepared(model_key, "l2")[4]},
        scheme=scheme,
        example_input=example,
        ratio_of="rank",
    )
    small = apply_selection(model, selection, example_input=example)
    out = small(make_inputs(3))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert count_macs(small, example) < count_macs(model, example)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    for name, choice in selection.choices.items():
        assert small.get_submodule(name).weight.shape[0] == choice.rank  # really fewer filters
    # adjacent layers lose channels on both sides; the combined cost is still exact
    measured = measure_cost(small, example)
    assert scheme.selection_cost({n: c.rank for n, c in selection.choices.items()}) == measured
    assert selection.predicted_ratio == measured.macs / count_macs(model, example)
    for module in small.modules():  # no masks, no zeroed weights left behind
        assert not any("mask" in key for key in module._buffers)


@pytest.mark.parametrize(
    ("model_key", "layer"),
    [
        ("vgg", "features.10"),  # one reader
        ("resnet", "layer1.0.conv1"),  # residual channels: three readers, all refit
        ("mobilenet_v2", "features.3.block.6"),  # through a depthwise conv
    ],
)
def test_reconstruction_lowers_the_output_error(model_key, layer):
    model = make_model(model_key)
    example = make_inputs(2)
    data = [(make_inputs(64, seed=5), None)]
    held_out = make_inputs(32, seed=6)
    with torch.no_grad():
        expected = model(held_out)
    errors = {}
    for reconstruct in (False, True):
        scheme = ChannelPruning(data=data, num_reconstruction_samples=64, reconstruct=reconstruct)
        selection = manual_selection(
            model, {layer: 0.25}, scheme=scheme, example_input=example, ratio_of="rank"
        )
        small = apply_selection(model, selection, scheme=scheme, example_input=example)
        with torch.no_grad():
            error = (small(held_out) - expected).pow(2).mean() / expected.var()
            errors[reconstruct] = error.item()  # relative to the output's spread
    assert errors[False] > 1e-8, errors  # pruning changed the outputs: the test can fail
    assert errors[True] < 0.5 * errors[False], errors


def test_channel_pruning_keeps_the_channels_that_contribute_most():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        model[2].weight.mul_(torch.tensor([0.01, 1.0, 0.01, 1.0]).view(1, 4, 1, 1))
    scheme = ChannelPruning(data=DATA, num_reconstruction_samples=8, reconstruct=False)
    selection = manual_selection(
        model, {"2": 0.5}, scheme=scheme, example_input=make_inputs(1), ratio_of="rank"
    )
    small = apply_selection(model, selection, scheme=scheme, example_input=make_inputs(1))
    torch.testing.assert_close(small[0].weight, model[0].weight[[1, 3]])


def test_schemes_needing_data_say_what_to_pass():
    model = make_model("vgg")
    with pytest.raises(
        InvalidParameterError, match=r"'data' parameter of ChannelPruning.*DataLoader"
    ):
        ChannelPruning().prepare(model, example_input=make_inputs(1))
    with pytest.raises(InvalidParameterError, match=r"'data' parameter of FilterPruning.*nuclear"):
        FilterPruning(criterion="nuclear").prepare(model, example_input=make_inputs(1))
    with pytest.raises(InvalidParameterError, match=r"'example_input' parameter"):
        FilterPruning().prepare(model)
    with pytest.raises(GreedyCompressError, match="needs the model"):
        FilterPruning().factorize(model.features[0])


def test_compress_end_to_end_and_reload(tmp_path):
    model = make_model("resnet")
    inputs = make_inputs(8, seed=4)
    with torch.no_grad():
        reference = model(inputs)

    def evaluator(net: nn.Module) -> float:
        with torch.no_grad():
            return -float((net(inputs) - reference).pow(2).mean())

    scheme = ChannelPruning(data=DATA, num_reconstruction_samples=16)
    small, report = compress(
        model,
        evaluator,
        target=0.7,
        scheme=scheme,
        candidates=[0.25, 0.5, 0.75, 0.9],
        example_input=inputs[:1],
        progress=False,
    )
    assert report.model_after.macs == count_macs(small, inputs[:1]) < report.model_before.macs
    assert report.selection.choices
    # pruned layers compound; the selection is priced exactly, so the target holds
    assert report.achieved_ratio <= 0.7
    assert report.achieved_ratio == pytest.approx(report.predicted_ratio, abs=1e-12)
    torch.save(small.state_dict(), tmp_path / "small.pt")
    reloaded = load_compressed(
        model, report.selection, tmp_path / "small.pt", example_input=inputs[:1], scheme=scheme
    )
    with torch.no_grad():
        torch.testing.assert_close(reloaded(inputs), small(inputs))


def test_scheme_with_data_gives_data_only_to_schemes_that_use_it():
    from greedy_compress.schemes import WeightSVD, scheme_with_data

    channel = scheme_with_data("channel_pruning", DATA)
    assert isinstance(channel, ChannelPruning) and channel.data is DATA
    nuclear = scheme_with_data("filter_pruning_nuclear", DATA)
    assert nuclear.uses_data and nuclear.data is DATA
    assert isinstance(scheme_with_data("weight_svd", DATA), WeightSVD)
    with pytest.raises(InvalidParameterError, match=r"'scheme' parameter of demo.*'svd'"):
        scheme_with_data("svd", DATA, "demo")


def test_scores_made_with_other_scheme_settings_are_not_reused(tmp_path):
    from greedy_compress import build_eval_scores
    from greedy_compress.errors import ScoresMismatchError

    model = make_model("vgg")
    inputs = make_inputs(4, seed=4)

    def evaluator(net: nn.Module) -> float:
        with torch.no_grad():
            return float(net(inputs).mean())

    settings = {"candidates": [0.5], "example_input": inputs[:1], "progress": False}
    path = tmp_path / "scores.json"
    scores = build_eval_scores(
        model,
        evaluator,
        scheme=ChannelPruning(data=DATA, num_reconstruction_samples=8),
        scores_path=path,
        **settings,
    )
    assert scores.fingerprint["scheme_settings"]["reconstruct"] is True
    with pytest.raises(ScoresMismatchError, match="scheme_settings"):
        build_eval_scores(
            model,
            evaluator,
            scheme=ChannelPruning(data=DATA, num_reconstruction_samples=8, reconstruct=False),
            scores_path=path,
            **settings,
        )


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=False),
        nn.Conv2d(3, 4, 3, padding="same", padding_mode="reflect"),
        nn.Conv1d(3, 4, 5, stride=2, padding=1),
        nn.Linear(3, 4),
    ],
    ids=["conv3x3", "strided_dilated", "same_reflect", "conv1d", "linear"],
)
def test_design_matrix_reproduces_the_layer(layer):
    from greedy_compress.schemes.channel_pruning import _targets, design_matrix

    torch.manual_seed(0)
    shape = {nn.Conv2d: (2, 3, 9, 10), nn.Conv1d: (2, 3, 17), nn.Linear: (5, 3)}[type(layer)]
    x = torch.randn(shape)
    with torch.no_grad():
        rows = design_matrix(layer, x) @ layer.weight.reshape(layer.weight.shape[0], -1).T
        torch.testing.assert_close(rows, _targets(layer, layer(x)), atol=1e-5, rtol=1e-5)


class _Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 6, 3, padding=1)
        self.norm = nn.BatchNorm1d(6)
        self.conv2 = nn.Conv1d(6, 4, 3, stride=2)
        self.head = nn.Linear(4 * 7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv2(torch.relu(self.norm(self.conv1(x))))).flatten(1))


@pytest.mark.parametrize(
    "scheme",
    [
        lambda: ChannelPruning(data=[torch.randn(8, 2, 16)], num_reconstruction_samples=8),
        lambda: FilterPruning(criterion="nuclear", data=[torch.randn(8, 2, 16)]),
    ],
    ids=["channel", "nuclear"],
)
def test_conv1d_models_prune_exactly(scheme):
    torch.manual_seed(0)
    model, scheme, example = _Conv1dNet().eval(), scheme(), torch.randn(2, 2, 16)
    profile = scheme.prepare(model, example_input=example, profile=profile_model(model, example))
    planned = [n for n, i in profile.layers.items() if not scheme.unsupported_reason(i, "mac")]
    assert planned
    for name in planned:
        info = profile.layers[name]
        with swapped(model, scheme.factorize_in(model, name).replacements(name, 2)):
            assert measure_cost(model, example) == (
                profile.model_cost - info.cost + scheme.cost(info, 2)
            )
            assert model(example).shape == (2, 3)


@pytest.mark.parametrize(("model_key", "scheme_key"), CASES)
def test_pruning_every_layer_at_once_builds_a_working_model_of_the_exact_cost(
    model_key, scheme_key
):
    model, scheme, example, _, layers = _prepared(model_key, scheme_key)
    selection = manual_selection(
        model, dict.fromkeys(layers, 0.5), scheme=scheme, example_input=example, ratio_of="rank"
    )
    small = apply_selection(model, selection, scheme=scheme, example_input=example)
    assert small(make_inputs(3)).shape == (3, 10)
    ranks = {name: choice.rank for name, choice in selection.choices.items()}
    assert measure_cost(small, example) == scheme.selection_cost(ranks)


def test_sampled_rows_are_the_full_design_rows_drawn_and_each_batch_stops_early():
    from greedy_compress.model.sampling import capture
    from greedy_compress.schemes.channel_pruning import design_matrix, sampled_rows

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 1))
    samples = torch.randn(10, 2, 4, 4)
    after: list[int] = []
    net[2].register_forward_hook(lambda *_: after.append(1))
    rows = sampled_rows(
        net, {"0": lambda m, x, y: design_matrix(m, x)}, samples, max_rows=50, batch_size=3
    )
    assert not after  # every batch stopped once conv 0 had run
    full = design_matrix(net[0], capture(net, ["0"], samples)["0"][0])  # 160 rows
    generator = torch.Generator().manual_seed(0)
    chosen = torch.randperm(160, generator=generator)[:50].sort().values
    torch.testing.assert_close(rows["0"], full[chosen])  # across batch boundaries too
