"""Features from different modules used together: pruning with repair, Optuna on pruning."""

from __future__ import annotations

import pytest
import torch

from greedy_compress import (
    InvalidParameterError,
    build_eval_scores,
    compress,
    count_macs,
)
from greedy_compress.strategies.optuna_search import optuna_search

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


def test_optuna_search_refuses_pruning_dictionaries_before_evaluating(tiny_net, distance_evaluator):
    scores = build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="filter_pruning_l2",
        candidates=3,
        input_shape=SHAPE,
        progress=False,
    )
    calls = distance_evaluator.calls
    with pytest.raises(InvalidParameterError, match=r"'scores'.*pruning.*filter_pruning_l2"):
        optuna_search(tiny_net, distance_evaluator, scores, target=0.6, n_trials=2, progress=False)
    assert distance_evaluator.calls == calls
