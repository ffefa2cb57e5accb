"""Features from different modules used together: pruning with repair, Optuna on pruning."""

from __future__ import annotations

import pytest
import torch

from greedy_compress import (
    InvalidParameterError,
    apply_selection,
    build_eval_scores,
    compress,
    count_macs,
)
from greedy_compress.selection.optuna_search import optuna_search

SHAPE = (1, 1, 8, 8)


def test_pruning_with_max_drop_meets_the_target_as_measured(tiny_net, distance_evaluator):
    compressed, report = compress(
        tiny_net,
        distance_evaluator,
        target=0.6,
        scheme="filter_pruning_l2",
        candidates=4,
        input_shape=SHAPE,
        max_drop=1e-9,
        progress=False,
    )
    x = torch.zeros(SHAPE)
    measured = count_macs(compressed, x) / count_macs(tiny_net, x)
    assert measured <= 0.6 + 1e-9
    assert report.achieved_ratio == pytest.approx(measured)
    assert report.repair is not None  # ran on the pruned models (they need example_input)
    assert not report.repair.success  # a drop of 1e-9 is out of reach, and it says so
    assert report.final_score == pytest.approx(distance_evaluator(compressed))


def test_optuna_search_on_a_pruning_dictionary_keeps_the_target_as_measured(
    tiny_net, distance_evaluator
):
    """Pruned layers compound; the search prices trials exactly, so every selection it
    evaluates (and the one it returns) meets the target on the built model."""
    scores = build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="filter_pruning_l2",
        candidates=4,
        input_shape=SHAPE,
        progress=False,
    )
    result = optuna_search(
        tiny_net, distance_evaluator, scores, target=0.6, n_trials=6, progress=False
    )
    x = torch.zeros(SHAPE)
    measured = count_macs(apply_selection(tiny_net, result.selection), x) / count_macs(tiny_net, x)
    assert measured == pytest.approx(result.selection.predicted_ratio) and measured <= 0.6
    for trial in result.study.trials:
        if trial.user_attrs.get("evaluated"):
            assert trial.user_attrs["ratio"] <= 0.6 + 1e-12


@pytest.mark.parametrize("scheme", ["filter_pruning_l2", "channel_pruning"])
def test_fast_path_equals_plain_path_for_pruning_schemes(tiny_net, scheme):
    from evaluators import NegativeLoss
    from greedy_compress.schemes import ChannelPruning

    generator = torch.Generator().manual_seed(5)
    inputs = torch.randn(32, 1, 8, 8, generator=generator)
    loader = [(inputs[:16], torch.arange(16) % 10), (inputs[16:], torch.arange(16) % 10)]
    evaluator = NegativeLoss(loader)

    def make_scheme():
        if scheme == "channel_pruning":
            return ChannelPruning(data=loader, num_reconstruction_samples=8)
        return scheme

    calls = []
    # The first conv is never replaced when a later layer is: counting its calls shows
    # whether the shared front of the network really ran once per batch (fast path).
    tiny_net.conv1.register_forward_hook(lambda *_: calls.append(1))
    options = dict(candidates=3, input_shape=SHAPE, progress=False)
    fast = build_eval_scores(tiny_net, evaluator, scheme=make_scheme(), fast=True, **options)
    fast_calls, calls[:] = len(calls), []
    plain = build_eval_scores(tiny_net, evaluator, scheme=make_scheme(), fast=False, **options)
    assert fast_calls < len(calls)
    assert fast.planned == plain.planned and fast.planned
    for name in plain.planned:
        for a, b in zip(fast.layers[name].entries, plain.layers[name].entries, strict=True):
            assert a.rank == b.rank
            assert a.score == pytest.approx(b.score, abs=1e-6)


def test_aimet_pipeline_prunes_channels_with_the_given_data(tiny_net, distance_evaluator):
    from greedy_compress import AIMET_PIPELINE, compress_pipeline

    inputs = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    data = [(inputs, torch.zeros(16))]
    small, report = compress_pipeline(
        tiny_net,
        distance_evaluator,
        stages=AIMET_PIPELINE,
        data=data,
        candidates=4,
        input_shape=SHAPE,
        progress=False,
    )
    assert [stage.scheme for stage in report.stages] == ["spatial_svd", "channel_pruning"]
    x = torch.zeros(SHAPE)
    assert count_macs(small, x) / count_macs(tiny_net, x) <= 0.8 * 0.8 + 1e-9


def test_aimet_pipeline_without_data_fails_before_any_evaluation(tiny_net, distance_evaluator):
    from greedy_compress import compress_pipeline

    with pytest.raises(InvalidParameterError, match="'data' parameter of ChannelPruning"):
        compress_pipeline(tiny_net, distance_evaluator, input_shape=SHAPE, progress=False)
    assert distance_evaluator.calls == 0


def test_pruning_scheme_used_before_prepare_says_what_to_do():
    from greedy_compress import GreedyCompressError, get_scheme

    scheme = get_scheme("filter_pruning_l2")
    with pytest.raises(GreedyCompressError, match=r"call prepare\(model, example_input=\.\.\.\)"):
        scheme.selection_cost({"conv1": 2})
