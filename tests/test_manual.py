"""Manual mode: listing the layers and validating hand-chosen values, for every scheme."""

from __future__ import annotations

import math

import pytest
import torch

from greedy_compress import apply_selection, count_macs
from greedy_compress.errors import InvalidParameterError
from greedy_compress.selection import Selection
from greedy_compress.selection.manual import available_layers, manual_selection
from tests.pruning_models import make_inputs, make_model, single_thread

pytestmark = pytest.mark.usefixtures(single_thread.__name__)

EXAMPLE = torch.zeros(1, 1, 8, 8)


def test_listing_gives_channel_counts_accepted_values_and_skip_reasons(tiny_net):
    listing = available_layers(tiny_net, scheme="filter_pruning_l2", example_input=EXAMPLE)
    assert list(listing.layers) == ["conv1", "conv2", "pointwise"]
    assert listing.layers["conv2"].size == 16
    assert listing.layers["conv2"].knob == "output channels"
    assert "ratio in (0, 1]" in listing.layers["conv2"].accepts
    assert listing.skipped["head"] == "its output channels cannot change: the model's output"
    table = listing.to_table()
    assert "conv2" in table and "skipped: its output channels cannot change" in table
    index = available_layers(tiny_net, scheme="filter_pruning_index", example_input=EXAMPLE)
    assert "indices in [0, 16)" in index.layers["conv2"].accepts
    svd = available_layers(tiny_net, scheme="weight_svd", input_shape=(1, 1, 8, 8))
    assert svd.layers["head"].knob == "rank" and "depthwise" in svd.skipped


def test_svd_manual_selection_costs_what_it_predicts(tiny_net):
    selection = manual_selection(
        tiny_net, {"conv2": 0.5, "head": 0.3}, scheme="weight_svd", example_input=EXAMPLE
    )
    small = apply_selection(tiny_net, selection)
    measured = count_macs(small, EXAMPLE) / count_macs(tiny_net, EXAMPLE)
    assert measured == pytest.approx(selection.predicted_ratio)
    assert set(selection.choices) == {"conv2", "head"}
    assert all(
        c.kept_ratio <= r for c, r in zip(selection.choices.values(), (0.5, 0.3), strict=True)
    )


def test_ratio_of_rank_keeps_that_fraction_of_channels_rounded_to_the_multiplicity(tiny_net):
    selection = manual_selection(
        tiny_net,
        {"conv2": 0.4, "conv1": 1.0},
        scheme="filter_pruning_l2",
        example_input=EXAMPLE,
        ratio_of="rank",
        multiplicity=4,
    )
    assert selection.choices["conv2"].rank == 4  # floor(0.4 * 16) = 6 -> multiple of 4
    assert "conv1" not in selection.choices  # ratio 1 leaves the layer alone
    small = apply_selection(tiny_net, selection)
    assert small.conv2.out_channels == 4 and small.depthwise.groups == 4


def test_index_pruning_removes_exactly_the_named_channels(tiny_net):
    selection = manual_selection(
        tiny_net, {"conv2": [0, 5, 15]}, scheme="filter_pruning_index", example_input=EXAMPLE
    )
    selection = Selection.from_dict(selection.to_dict())  # survives JSON
    small = apply_selection(tiny_net, selection)  # a fresh scheme reads the indices back
    kept = [c for c in range(16) if c not in (0, 5, 15)]
    torch.testing.assert_close(small.conv2.weight, tiny_net.conv2.weight[kept])
    torch.testing.assert_close(small.depthwise.weight, tiny_net.depthwise.weight[kept])
    torch.testing.assert_close(small.pointwise.weight, tiny_net.pointwise.weight[:, kept])
    assert small(EXAMPLE).shape == (1, 10)


@pytest.mark.parametrize(
    ("scheme", "values", "message"),
    [
        ("filter_pruning_l2", {"conv2": 0.0}, r"values\['conv2'\].*float in \(0, 1\]. Got 0.0"),
        ("filter_pruning_l2", {"conv2": 1.5}, r"float in \(0, 1\]. Got 1.5"),
        ("weight_svd", {"conv2": math.nan}, r"float in \(0, 1\]. Got nan"),
        ("filter_pruning_l2", {"conv2": [1, 2]}, r"float in \(0, 1\]. Got \[1, 2\]"),
        ("filter_pruning_l2", {"conv9": 0.5}, r"names of layers such as conv1.*Got 'conv9'"),
        (
            "filter_pruning_l2",
            {"head": 0.5},
            r"'head': its output channels cannot change: the model",
        ),
        ("filter_pruning_index", {"conv2": [3, 16]}, r"indices in \[0, 16\).*Got \[3, 16\]"),
        ("filter_pruning_index", {"conv2": [3, 3]}, r"distinct channel indices"),
        ("filter_pruning_index", {"conv1": list(range(8))}, r"leaving at least one of the 8"),
        ("filter_pruning_index", {"conv1": 0.5}, r"list of distinct channel indices"),
        ("filter_pruning_l2", {}, r"non-empty dict"),
    ],
)
def test_bad_values_get_one_clear_error(tiny_net, scheme, values, message):
    with pytest.raises(InvalidParameterError, match=message):
        manual_selection(tiny_net, values, scheme=scheme, example_input=EXAMPLE)


def test_bad_settings_are_rejected_before_any_work(tiny_net):
    with pytest.raises(InvalidParameterError, match=r"'ratio_of'.*'cost', 'rank'"):
        manual_selection(
            tiny_net, {"conv2": 0.5}, scheme="weight_svd", example_input=EXAMPLE, ratio_of="x"
        )


def test_channel_pruning_manual_mode_on_a_residual_model():
    from greedy_compress.schemes import ChannelPruning

    model = make_model("resnet")
    scheme = ChannelPruning(data=[(make_inputs(8), None)], num_reconstruction_samples=8)
    listing = available_layers(model, scheme=scheme, example_input=make_inputs(1))
    assert listing.layers["layer1.0.conv2"].knob == "input channels"
    assert "pruned (and every reader refit) with that layer" in listing.skipped["layer2.0.conv1"]
    selection = manual_selection(
        model, {"layer2.0.conv2": 0.5}, scheme=scheme, example_input=make_inputs(1)
    )
    small = apply_selection(model, selection, scheme=scheme)  # input shape from the selection
    assert small.layer2[0].conv2.in_channels == selection.choices["layer2.0.conv2"].rank
    assert count_macs(small, make_inputs(1)) / count_macs(model, make_inputs(1)) == (
        pytest.approx(selection.predicted_ratio)
    )
