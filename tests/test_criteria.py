"""Filter-pruning criteria against hand-computed values, and their registry."""

from __future__ import annotations

import pytest
import torch

from greedy_compress.errors import InvalidParameterError
from greedy_compress.schemes.criteria import (
    ChannelEvidence,
    available_criteria,
    get_criterion,
    register_criterion,
)
from greedy_compress.selection.manual import manual_selection


def test_l2_is_the_norm_of_all_producers_filters_together():
    first, second = torch.tensor([[3.0, 0.0], [0.0, 1.0]]), torch.tensor([[4.0], [0.0]])
    importance = get_criterion("l2", "t")(ChannelEvidence((first, second)))
    torch.testing.assert_close(importance, torch.tensor([5.0, 1.0]))


def test_gm_ranks_the_filter_nearest_the_others_lowest():
    filters = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.1], [5.0, 5.0]])
    importance = get_criterion("gm", "t")(ChannelEvidence((filters,)))
    expected = torch.cdist(filters, filters).sum(dim=1)
    torch.testing.assert_close(importance, expected)
    assert int(importance.argmin()) == 2  # the middle filter is the most replaceable


def test_nuclear_is_the_mean_nuclear_norm_of_each_channels_maps():
    maps = torch.zeros(2, 2, 3, 3)
    maps[0, 0] = torch.diag(torch.tensor([1.0, 2.0, 3.0]))  # nuclear norm 6
    maps[1, 0] = torch.ones(3, 3)  # rank one, nuclear norm 3
    maps[:, 1] = 0.5 * torch.eye(3)  # nuclear norm 1.5 each
    importance = get_criterion("nuclear", "t")(ChannelEvidence((torch.zeros(2, 1),), maps))
    torch.testing.assert_close(importance, torch.tensor([4.5, 1.5]))


def test_unknown_criterion_lists_the_registered_ones():
    with pytest.raises(InvalidParameterError, match=r"'criterion'.*'gm', 'l2', 'nuclear'"):
        get_criterion("l7", "FilterPruning")
    assert {"gm", "l2", "nuclear"} <= set(available_criteria())


def test_a_registered_or_plain_callable_criterion_drives_filter_pruning(tiny_net):
    from greedy_compress.schemes import FilterPruning

    @register_criterion("last_first_test")
    def prefer_last(evidence: ChannelEvidence) -> torch.Tensor:
        return torch.arange(evidence.filters.shape[0], dtype=torch.float32)

    scheme = FilterPruning(criterion="last_first_test")
    assert scheme.name == "filter_pruning_last_first_test"
    example = torch.zeros(1, 1, 8, 8)
    selection = manual_selection(
        tiny_net, {"conv1": 0.5}, scheme=scheme, example_input=example, ratio_of="rank"
    )
    from greedy_compress import apply_selection

    small = apply_selection(tiny_net, selection, scheme=scheme, example_input=example)
    torch.testing.assert_close(small.conv1.weight, tiny_net.conv1.weight[4:])
