"""Manual mode with NetsPresso's values: two ranks for Tucker, one rank for CP and the SVD
schemes, built exactly, priced exactly, listed with their ranges and refused out of range."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import TinyNet

from greedy_compress import apply_selection, count_macs
from greedy_compress.errors import InvalidParameterError, SelectionMismatchError
from greedy_compress.selection import Selection
from greedy_compress.selection.manual import available_layers, manual_selection

EXAMPLE = torch.zeros(1, 1, 8, 8)


@pytest.fixture
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_costs(net, values, scheme):
    """Built at the given ranks, the model costs what the selection predicts, MACs and
    parameters alike."""
    by_macs = manual_selection(net, values, scheme=scheme, example_input=EXAMPLE)
    small = apply_selection(net, by_macs)
    assert count_macs(small, EXAMPLE) / count_macs(net, EXAMPLE) == pytest.approx(
        by_macs.predicted_ratio, rel=1e-12
    )
    by_params = manual_selection(net, values, scheme=scheme, example_input=EXAMPLE, cost="memory")
    assert _params(apply_selection(net, by_params)) / _params(net) == pytest.approx(
        by_params.predicted_ratio, rel=1e-12
    )
    return by_macs, small


def test_tucker_takes_an_in_rank_and_an_out_rank_and_builds_exactly_those(net, tmp_path):
    selection, small = _check_costs(net, {"conv2": (3, 5), "pointwise": (6, 2)}, "tucker")
    assert [(c.in_channels, c.out_channels) for c in small.conv2] == [(8, 3), (3, 5), (5, 16)]
    assert [(c.in_channels, c.out_channels) for c in small.pointwise] == [
        (16, 6),
        (6, 2),
        (2, 16),
    ]
    assert selection.choices["conv2"].ranks == (3, 5) and selection.choices["conv2"].rank == 5
    # The selection file carries both ranks (format 3) and rebuilds the same model.
    path = tmp_path / "selection.json"
    selection.save(path)
    assert json.loads(path.read_text())["choices"]["conv2"]["ranks"] == [3, 5]
    loaded = Selection.load(path)
    assert loaded == selection
    again = apply_selection(net, loaded)
    assert [c.out_channels for c in again.conv2] == [3, 5, 16]


def test_one_rank_for_cp_and_for_the_svd_schemes_is_built_exactly(net):
    _, cp = _check_costs(net, {"conv2": 6}, "cp")
    assert [c.out_channels for c in cp.conv2] == [6, 6, 6, 16]
    _, weight = _check_costs(net, {"conv2": 4, "head": 3}, "weight_svd")
    assert weight.conv2[0].out_channels == 4 and weight.head[0].out_features == 3
    _, spatial = _check_costs(net, {"conv2": 5}, "spatial_svd")
    assert spatial.conv2[0].out_channels == 5


def test_a_float_stays_a_ratio_for_the_rank_schemes(net):
    as_ratio = manual_selection(net, {"conv2": 0.5}, scheme="tucker", example_input=EXAMPLE)
    assert as_ratio.choices["conv2"].ranks is None  # the scheme's one-rank mapping
    assert as_ratio.choices["conv2"].kept_ratio <= 0.5


def test_every_listed_layer_shows_its_allowed_range(net):
    tucker = available_layers(net, scheme="tucker", example_input=EXAMPLE)
    assert tucker.layers["conv2"].ranks == (8, 16)
    assert "in rank in [1, 8], out rank in [1, 16]" in tucker.layers["conv2"].accepts
    assert "out rank in [1, 16]" in tucker.to_table()
    cp = available_layers(net, scheme="cp", example_input=EXAMPLE)
    assert cp.layers["conv2"].ranks == (72,) and "a rank in [1, 72]" in cp.to_table()
    svd = available_layers(net, scheme="weight_svd", example_input=EXAMPLE)
    assert "a rank in [1, 10]" in svd.layers["head"].accepts
    pruning = available_layers(net, scheme="filter_pruning_l2", example_input=EXAMPLE)
    assert "a ratio in (0, 1]" in pruning.layers["conv2"].accepts


@pytest.mark.parametrize(
    ("scheme", "value", "message"),
    [
        ("tucker", (9, 4), r"'conv2' two ranks \(in rank in \[1, 8\], out rank in \[1, 16\]\)"),
        ("tucker", (3, 17), r"out rank in \[1, 16\].*Got \(3, 17\)"),
        ("tucker", (0, 4), r"Got \(0, 4\) instead"),
        ("tucker", 3, r"two ranks.*Got 3 instead"),
        ("tucker", (3,), r"two ranks.*Got \(3,\) instead"),
        ("tucker", (3.0, 4), r"two ranks.*Got \(3.0, 4\) instead"),
        ("tucker", (True, 4), r"two ranks.*Got \(True, 4\) instead"),
        ("cp", 73, r"for layer 'conv2' a rank in \[1, 72\].*Got 73 instead"),
        ("cp", 0, r"a rank in \[1, 72\].*Got 0 instead"),
        ("cp", (3, 4), r"a rank in \[1, 72\].*Got \(3, 4\) instead"),
        ("weight_svd", 17, r"for layer 'conv2' a rank in \[1, 16\].*Got 17 instead"),
        ("spatial_svd", 25, r"a rank in \[1, 24\].*Got 25 instead"),
        ("weight_svd", 1.5, r"must be a float in \(0, 1\]. Got 1.5"),
        ("filter_pruning_l2", 3, r"must be a float in \(0, 1\]. Got 3"),
        ("tucker", (8, 16), r"a value whose rank compresses the layer \(ranks \[8, 16\]"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_layer_the_value_and_the_range(
    net, scheme, value, message
):
    with pytest.raises(InvalidParameterError, match=message):
        manual_selection(net, {"conv2": value}, scheme=scheme, example_input=EXAMPLE)


def test_an_edited_selection_with_ranks_out_of_range_is_refused_before_building(net):
    selection = manual_selection(net, {"conv2": (3, 5)}, scheme="tucker", example_input=EXAMPLE)
    data = selection.to_dict()
    for bad in ([9, 5], [3, 5, 1], [3]):
        data["choices"]["conv2"]["ranks"] = bad
        with pytest.raises(SelectionMismatchError, match=r"ranks for layer 'conv2' must be 2"):
            apply_selection(net, Selection.from_dict(data))


def test_selection_files_of_version_2_still_load(net):
    selection = manual_selection(net, {"conv2": 4}, scheme="weight_svd", example_input=EXAMPLE)
    data = {**selection.to_dict(), "format_version": 2}
    assert Selection.from_dict(data) == selection
    assert apply_selection(net, Selection.from_dict(data)).conv2[0].out_channels == 4
