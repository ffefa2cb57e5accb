"""VBMF and SLAMP recommendations: ground truth on planted ranks, formulas, invariants."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from greedy_compress.apply import apply_selection
from greedy_compress.errors import InvalidParameterError, TargetUnreachableError
from greedy_compress.model.cost import Cost, count_macs
from greedy_compress.model.profile import profile_model
from greedy_compress.schemes import Scheme, WeightSVD, get_scheme
from greedy_compress.selection import Selection
from greedy_compress.selection.recommend import (
    calibrate_rank,
    evbmf,
    lamp_scores,
    recommend_slamp,
    recommend_vbmf,
)

# --- VBMF -------------------------------------------------------------------------------


def _planted(rows: int, cols: int, rank: int, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    signal = torch.randn(rows, rank, generator=g) @ torch.randn(rank, cols, generator=g)
    return signal + noise * torch.randn(rows, cols, generator=g)


@pytest.mark.parametrize(
    ("rows", "cols", "rank", "noise"),
    [(30, 50, 5, 1.0), (50, 30, 3, 2.0), (64, 576, 10, 0.1), (100, 100, 20, 1.0)],
)
def test_evbmf_recovers_a_planted_rank_and_the_noise_level(rows, cols, rank, noise):
    result = evbmf(_planted(rows, cols, rank, noise, seed=rows + cols))
    assert result.rank == rank
    assert result.sigma2 == pytest.approx(noise**2, rel=0.25)
    singular = sorted(result.singular_values, reverse=True)
    assert singular[rank - 1] > result.threshold > singular[rank]


def test_evbmf_on_pure_noise_zero_and_noiseless_matrices():
    assert evbmf(_planted(40, 60, 1, 1.0, seed=3) * 0 + torch.randn(40, 60)).rank == 0
    assert evbmf(torch.zeros(5, 7)).rank == 0
    assert evbmf(_planted(20, 30, 4, 0.0, seed=4)).rank == 4


@pytest.mark.parametrize(
    ("rank", "top", "c", "expected"),
    [
        (4, 10, 0.0, 4),
        (4, 10, 1.0, 10),
        (4, 10, 0.5, 7),  # 4 + trunc(3.0)
        (4, 10, 0.55, 7),  # 4 + trunc(3.3)
        (5, 10, -0.5, 3),  # 5 + trunc(-2.5)
        (5, 10, -1.0, 1),  # 0, clamped to 1
        (0, 10, 0.0, 1),  # VBMF found nothing: still rank 1
        (0, 10, 0.25, 2),  # 0 + trunc(2.5)
        (10, 10, 0.7, 10),
        (10, 10, -0.01, 10),  # 10 + trunc(-0.1)
    ],
)
def test_calibration_formula(rank, top, c, expected):
    assert calibrate_rank(rank, max_rank=top, calibration=c) == expected


@pytest.mark.parametrize("bad", [1.5, -1.01, float("nan"), True, "0.5", None])
def test_calibration_outside_the_range_is_a_clear_error(bad):
    with pytest.raises(InvalidParameterError, match=r"'calibration'.*\[-1, 1\]. Got"):
        calibrate_rank(3, max_rank=5, calibration=bad)
    with pytest.raises(InvalidParameterError, match=r"'calibration' parameter of recommend_vbmf"):
        recommend_vbmf(nn.Conv2d(2, 2, 3), calibration=bad, input_shape=(1, 2, 5, 5))


class PlantedNet(nn.Module):
    """Two convs with kernels of known channel ranks (plus a little noise) and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(12, 24, 3, padding=1)
        self.conv2 = nn.Conv2d(24, 32, 3, padding=1)
        self.head = nn.Linear(32 * 6 * 6, 10)
        g = torch.Generator().manual_seed(0)
        for conv, (r_out, r_in) in ((self.conv1, (4, 3)), (self.conv2, (5, 6))):
            out_ch, in_ch = conv.weight.shape[:2]
            core = torch.randn(r_out, r_in, 3, 3, generator=g)
            u_out = torch.randn(out_ch, r_out, generator=g)
            u_in = torch.randn(in_ch, r_in, generator=g)
            kernel = torch.einsum("abij,oa,cb->ocij", core, u_out, u_in)
            noise = 0.01 * kernel.std() * torch.randn(kernel.shape, generator=g)
            conv.weight.data.copy_(kernel + noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        return self.head(torch.relu(self.conv2(x)).flatten(1))


def test_recommend_vbmf_tucker_finds_planted_ranks_and_applies_without_evaluation(tmp_path):
    model = PlantedNet().eval()
    x = torch.randn(2, 12, 6, 6)
    selection = recommend_vbmf(model, scheme="tucker", example_input=x)
    layers = selection.details["layers"]
    assert (layers["conv1"]["r_in"], layers["conv1"]["r_out"]) == (3, 4)
    assert (layers["conv2"]["r_in"], layers["conv2"]["r_out"]) == (6, 5)
    assert selection.solver == "vbmf" and set(selection.choices) == {"conv1", "conv2"}
    assert "head" in selection.details["skipped"]
    tucker = get_scheme("tucker")
    profile = profile_model(model, x)
    for name, choice in selection.choices.items():
        r_in, r_out = tucker.core_ranks(profile.layers[name], choice.rank)
        assert r_in >= layers[name]["r_in"] and r_out >= layers[name]["r_out"]
        assert choice.predicted_score is None
    small = apply_selection(model, selection)
    assert count_macs(small, x) / count_macs(model, x) == pytest.approx(selection.predicted_ratio)
    assert selection.predicted_ratio < 0.5
    with torch.no_grad():
        error = (small(x) - model(x)).norm() / model(x).norm()
    assert error < 0.05  # the discarded part is the planted 1% noise
    selection.save(tmp_path / "selection.json")
    assert Selection.load(tmp_path / "selection.json") == selection


def test_recommend_vbmf_calibration_moves_ranks_between_one_and_full():
    model = PlantedNet().eval()
    x = torch.randn(1, 12, 6, 6)
    plain = recommend_vbmf(model, scheme="weight_svd", example_input=x)
    more = recommend_vbmf(model, scheme="weight_svd", example_input=x, calibration=0.5)
    less = recommend_vbmf(model, scheme="weight_svd", example_input=x, calibration=-1.0)
    assert plain.details["layers"]["conv1"]["vbmf_rank"] == 4  # rank of the (out, in*9) unfolding
    for name, layer in plain.details["layers"].items():
        raw, top = layer["vbmf_rank"], layer["max_rank"]
        assert more.details["layers"][name]["rank"] == raw + math.trunc(0.5 * (top - raw))
        assert less.details["layers"][name]["rank"] == 1
    assert less.predicted_ratio < plain.predicted_ratio < more.predicted_ratio
    full = recommend_vbmf(model, scheme="weight_svd", example_input=x, calibration=1.0)
    assert not full.choices and set(full.details["left_alone"]) == {"conv1", "conv2", "head"}


def test_recommend_vbmf_on_a_planted_linear_and_spatial_and_cp_schemes():
    model = nn.Sequential(nn.Linear(40, 60), nn.ReLU(), nn.Linear(60, 5))
    model[0].weight.data.copy_(_planted(60, 40, 7, 0.01, seed=9))
    selection = recommend_vbmf(model, scheme="weight_svd", input_shape=(3, 40))
    assert selection.choices["0"].rank == 7
    conv_net = PlantedNet().eval()
    for scheme in ("spatial_svd", "cp"):
        result = recommend_vbmf(conv_net, scheme=scheme, input_shape=(1, 12, 6, 6))
        assert set(result.details["layers"]) == {"conv1", "conv2"}
    cp = recommend_vbmf(conv_net, scheme="cp", input_shape=(1, 12, 6, 6))
    assert cp.details["layers"]["conv2"]["vbmf_rank"] == 6  # max(r_in, r_out)


def test_recommend_vbmf_rejects_schemes_without_an_unfolding():
    class Other(WeightSVD):
        name = "other"

    with pytest.raises(InvalidParameterError, match=r"'scheme'.*'cp', 'spatial_svd', 'tucker'"):
        recommend_vbmf(PlantedNet(), scheme=Other(), input_shape=(1, 12, 6, 6))


# --- SLAMP ------------------------------------------------------------------------------


def test_lamp_scores_formula_and_scale_invariance():
    weight = torch.tensor([[3.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
    # squared norms 9, 1, 4, 4; sorted 1, 4, 4, 9 with suffix sums 18, 17, 13, 9
    expected = torch.tensor([1.0, 1 / 18, 4 / 17, 4 / 13])
    torch.testing.assert_close(lamp_scores(weight), expected)
    torch.testing.assert_close(lamp_scores(weight * 7.5), expected)
    assert lamp_scores(torch.zeros(3, 2)).tolist() == [0.0, 0.0, 1.0]


class PruneNet(nn.Module):
    """Three convs of very different weight scales, and a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 16, 3)
        self.conv2 = nn.Conv2d(16, 24, 3)
        self.conv3 = nn.Conv2d(24, 8, 1, bias=False)
        self.head = nn.Linear(8, 4)
        self.conv2.weight.data *= 1e-3  # tiny: a global magnitude threshold would empty it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))
        return self.head(x.mean((2, 3)))


def _scores(model: nn.Module, names: list[str]) -> dict[str, list[float]]:
    return {n: lamp_scores(model.get_submodule(n).weight).tolist() for n in names}


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_slamp_meets_the_ratio_with_one_global_threshold_and_empties_no_layer(ratio):
    model = PruneNet()
    rec = recommend_slamp(model, ratio=ratio)
    names = ["conv1", "conv2", "conv3"]
    assert list(rec.layers) == names  # default: the groups=1 convs, never the head
    total = 16 + 24 + 8
    kept = sum(layer.keep for layer in rec.layers.values())
    assert (total - kept) / total == pytest.approx(rec.pruned_fraction)
    assert rec.pruned_fraction >= ratio
    assert (total - kept - 1) / total < ratio  # the smallest number of removals that meets it
    scores = _scores(model, names)
    kept = {n: set(rec.layers[n].kept_indices) for n in names}
    pruned = [s for n in names for i, s in enumerate(scores[n]) if i not in kept[n]]
    kept_scores = [s for n in names for i, s in enumerate(scores[n]) if i in kept[n]]
    assert max(pruned) <= rec.threshold <= min(kept_scores)
    for name, layer in rec.layers.items():
        assert layer.keep >= 1 and layer.keep == len(layer.kept_indices)
        norms = model.get_submodule(name).weight.flatten(1).norm(dim=1)
        kept_norms = norms[list(layer.kept_indices)]
        dropped = [norms[i] for i in range(layer.filters) if i not in layer.kept_indices]
        assert all(kept_norms.min() >= d for d in dropped)  # the largest filters survive


def test_slamp_counted_by_params_weighs_filters_by_their_size():
    model = PruneNet()
    rec = recommend_slamp(model, ratio=0.4, count="params")
    per_filter = {"conv1": 3 * 9 + 1, "conv2": 16 * 9 + 1, "conv3": 24}
    total = sum(per_filter[n] * layer.filters for n, layer in rec.layers.items())
    removed = sum(per_filter[n] * (layer.filters - layer.keep) for n, layer in rec.layers.items())
    assert removed / total == pytest.approx(rec.pruned_fraction) and removed / total >= 0.4


def test_slamp_unreachable_and_bad_parameters_are_clear_errors():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3))
    with pytest.raises(TargetUnreachableError, match=r"removes at most 0.5000 of the filters"):
        recommend_slamp(model, ratio=0.6)
    with pytest.raises(InvalidParameterError, match=r"'ratio' parameter of recommend_slamp"):
        recommend_slamp(model, ratio=1.0)
    with pytest.raises(InvalidParameterError, match=r"'layers'.*e\.g\. 0, 1\. Got '2'"):
        recommend_slamp(model, ratio=0.2, layers=["2"])
    with pytest.raises(InvalidParameterError, match=r"'count'.*'filters', 'params'"):
        recommend_slamp(model, ratio=0.2, count="weights")


class KeepFilters(Scheme):
    """Test-only: rank = kept output filters, cost proportional (the real schemes are issue 3's)."""

    name = "keep_filters"

    def skip_reason(self, layer):
        return None

    def max_rank(self, layer):
        return layer.out_channels

    def cost(self, layer, rank):
        return Cost(layer.cost.macs * rank // layer.out_channels, layer.cost.params)

    def factorize(self, module):
        raise NotImplementedError


def test_slamp_to_selection_uses_kept_counts_as_ranks():
    model = PruneNet()
    x = torch.zeros(1, 3, 10, 10)
    rec = recommend_slamp(model, ratio=0.3, layers=["conv1", "conv2"])
    selection = rec.to_selection(model, scheme=KeepFilters(), example_input=x)
    assert selection.solver == "slamp" and selection.scheme == "keep_filters"
    pruned = {n for n, layer in rec.layers.items() if layer.keep < layer.filters}
    assert set(selection.choices) == pruned
    for name, choice in selection.choices.items():
        assert choice.rank == rec.layers[name].keep
        assert choice.kept_ratio == pytest.approx(rec.layers[name].keep_ratio, abs=1e-6)
    assert Selection.from_dict(selection.to_dict()) == selection
    with pytest.raises(InvalidParameterError, match=r"rank counts kept filters"):
        rec.to_selection(model, scheme="spatial_svd", example_input=x)  # conv1: rank 9, not 16


def test_slamp_to_a_real_pruning_scheme_predicts_the_measured_ratio():
    """The README's recipe: SLAMP's counts with filter pruning, whose pruned layers
    compound; the predicted ratio is the built model's, measured."""
    model = PruneNet()
    x = torch.zeros(1, 3, 10, 10)
    rec = recommend_slamp(model, ratio=0.4, layers=["conv1", "conv2"])
    selection = rec.to_selection(model, scheme="filter_pruning_l2", input_shape=(1, 3, 10, 10))
    assert len(selection.choices) == 2  # both layers pruned: their costs compound
    small = apply_selection(model, selection)
    measured = count_macs(small, x) / count_macs(model, x)
    assert measured == pytest.approx(selection.predicted_ratio, abs=1e-12)
