from __future__ import annotations

import copy

import pytest
import torch
from tiny import OutputDistance, TinyNet
from torch import nn

from greedy_compress import (
    InvalidParameterError,
    TargetUnreachableError,
    apply_selection,
    build_eval_scores,
    count_macs,
    select,
)
from greedy_compress.dictionary.mixed import combine_scores
from greedy_compress.selection.optuna_search import optuna_search

SHAPE = (1, 1, 8, 8)


@pytest.fixture(scope="module")
def setting():
    """One tiny model, evaluator and dictionary for the module: searches never change them."""
    torch.manual_seed(0)
    net = TinyNet().eval()
    torch.manual_seed(1)
    evaluator = OutputDistance(net, torch.randn(16, 1, 8, 8))
    scores = build_eval_scores(
        net, evaluator, scheme="weight_svd", candidates=4, input_shape=SHAPE, progress=False
    )
    return net, evaluator, scores


@pytest.fixture
def tiny_net(setting):
    return setting[0]


@pytest.fixture
def distance_evaluator(setting):
    return setting[1]


@pytest.fixture
def scores(setting):
    return setting[2]


def _module_types(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.modules()]


def test_search_is_never_worse_than_its_seeds_and_meets_the_target(
    tiny_net, distance_evaluator, scores
):
    before_state = copy.deepcopy(tiny_net.state_dict())
    before_types = _module_types(tiny_net)
    result = optuna_search(
        tiny_net, distance_evaluator, scores, target=0.5, n_trials=5, progress=False
    )
    assert result.selection.solver == "optuna"
    assert result.summary["evaluated_this_call"] == 5
    # the real score of the answer is what the search reports...
    small = apply_selection(tiny_net, result.selection)
    assert distance_evaluator(small) == pytest.approx(result.score, rel=1e-6, abs=1e-9)
    # ...at least the greedy and knapsack answers' real scores, within the MAC budget
    for solver in ("greedy", "knapsack"):
        seeded = distance_evaluator(
            apply_selection(tiny_net, select(scores, target=0.5, solver=solver))
        )
        assert result.score >= seeded - 1e-12
        assert result.summary["seed_scores"][solver] == pytest.approx(seeded, abs=1e-9)
    x = torch.zeros(SHAPE)
    assert count_macs(small, x) <= 0.5 * count_macs(tiny_net, x)
    # the user's model is back as it was
    assert _module_types(tiny_net) == before_types
    assert all(torch.equal(v, before_state[k]) for k, v in tiny_net.state_dict().items())


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_stored_study_resumes(tiny_net, distance_evaluator, scores, tmp_path, kind):
    storage = tmp_path / "study.log" if kind == "journal" else f"sqlite:///{tmp_path}/s.db"
    first = optuna_search(
        tiny_net,
        distance_evaluator,
        scores,
        target=0.5,
        n_trials=2,
        storage=storage,
        progress=False,
    )
    second = optuna_search(
        tiny_net,
        distance_evaluator,
        scores,
        target=0.5,
        n_trials=2,
        storage=storage,
        progress=False,
    )
    assert second.summary["study_name"] == first.summary["study_name"]
    assert second.summary["trials_in_study"] == (
        first.summary["trials_in_study"] + second.summary["trials_this_call"]
    )
    assert second.score >= first.score
    evaluated = [t for t in second.study.trials if t.user_attrs.get("evaluated")]
    assert len(evaluated) == 4
    # every evaluated trial was within budget; over-budget ones were never evaluated
    assert all(t.user_attrs["ratio"] <= 0.5 for t in evaluated)
    assert all(t.user_attrs["over_budget"] > 0 for t in second.study.trials if t not in evaluated)


def test_mixed_dictionary_search_builds_each_layer_with_its_scheme(
    tiny_net, distance_evaluator, scores
):
    spatial = build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="spatial_svd",
        candidates=4,
        input_shape=SHAPE,
        progress=False,
    )
    result = optuna_search(
        tiny_net,
        distance_evaluator,
        combine_scores([spatial, scores]),
        target=0.4,
        n_trials=3,
        progress=False,
    )
    assert result.selection.scheme == "mixed"
    assert all(c.scheme is not None for c in result.selection.choices.values())
    small = apply_selection(tiny_net, result.selection)
    assert distance_evaluator(small) == pytest.approx(result.score, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_trials": 0}, InvalidParameterError, r"'n_trials'.*int >= 1.*Got 0"),
        ({"timeout": -1}, InvalidParameterError, r"'timeout'.*None or a float > 0.*Got -1"),
        ({"storage": 123}, InvalidParameterError, r"'storage'.*RDB URL.*Got 123"),
        ({"sampler": "cmaes"}, InvalidParameterError, r"'sampler'.*'tpe'.*Got 'cmaes'"),
        ({"target": 1.2}, InvalidParameterError, r"'target'.*\(0, 1\).*Got 1.2"),
        ({"target": 0.01}, TargetUnreachableError, r"target >= "),
    ],
)
def test_bad_arguments_fail_before_any_evaluation(tiny_net, scores, kwargs, error, match):
    calls = []

    def evaluator(model):
        calls.append(1)
        return 0.0

    arguments = {"target": 0.5, "n_trials": 2, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        optuna_search(tiny_net, evaluator, scores, **arguments)
    assert calls == []
