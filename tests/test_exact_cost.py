"""Selections on dictionaries whose layer costs interact are priced and solved exactly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from greedy_compress import apply_selection, build_eval_scores, count_macs, select
from greedy_compress.dictionary import EvalScores, LayerScores, ScoreEntry
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.graph import ChannelCosts, ModuleUse, Segment
from greedy_compress.model.cost import Cost
from greedy_compress.model.profile import LayerInfo
from greedy_compress.selection import GreedySolver, KnapsackSolver, selection_ratio
from greedy_compress.selection.exact_cost import reachable_ratio

SHAPE = (1, 1, 8, 8)


def _chain() -> EvalScores:
    """Planted truth: producer ``pa`` (1 -> 10 channels, group 0), the layer ``m`` between
    (group 0 -> group 1) and the reader ``cb`` (group 1 -> 1), one position each. Layer
    "a" prunes group 0, layer "b" group 1; ``m`` belongs to both, so keeping ka and kb
    channels costs exactly ka + ka * kb + kb MACs, where adding the two layers' savings
    says 11 ka + 11 kb - 100."""
    uses = {
        "pa": ModuleUse("pa", "conv", (Segment(9, 1),), (Segment(0, 10),), 1),
        "m": ModuleUse("m", "conv", (Segment(0, 10),), (Segment(1, 10),), 1),
        "cb": ModuleUse("cb", "conv", (Segment(1, 10),), (Segment(8, 1),), 1),
    }
    costs = ChannelCosts({"a": 0, "b": 1}, {0: 10, 1: 10}, uses)
    layers = {}
    for name, score in (("a", 0.9), ("b", 0.88)):
        info = LayerInfo(
            name, "linear", 10, 10, (), (), (), (), 1, False, (1, 10), (1, 10), Cost(110, 110)
        )
        entries = tuple(
            ScoreEntry(k / 10, k, Cost(11 * k, 11 * k), k / 10, score + k / 100) for k in (2, 5, 8)
        )
        layers[name] = LayerScores(info, entries)
    return EvalScores(
        fingerprint={"scheme": "filter_pruning_l2", "cost": "mac"},
        baseline=1.0,
        model_cost=Cost(120, 120),
        planned=("a", "b"),
        layers=layers,
        exact_costs=costs,
    )


def _exact(selection) -> float:
    ranks = {name: c.rank for name, c in selection.choices.items()}
    ka, kb = ranks.get("a", 10), ranks.get("b", 10)
    return (ka + ka * kb + kb) / 120


@pytest.mark.parametrize(
    "solver", [GreedySolver(fill_budget=False), GreedySolver(), KnapsackSolver()]
)
def test_solvers_meet_the_target_by_the_exact_cost(solver):
    scores = _chain()
    additive = dataclasses.replace(scores, exact_costs=None)  # what the solvers saw before
    for target in (0.15, 0.25, 0.4, 0.7):
        selection = solver.solve(scores, target=target)
        assert selection.predicted_ratio == pytest.approx(_exact(selection))
        assert selection.predicted_ratio <= target
        assert selection_ratio(scores, selection) == pytest.approx(_exact(selection))
    # the guard: adding savings up picks selections whose exact cost is over the target
    assert any(_exact(solver.solve(additive, target=t)) > t + 1e-9 for t in (0.15, 0.25, 0.4))


def test_an_exactly_unreachable_target_is_refused_with_the_reachable_ratio():
    scores = _chain()
    assert reachable_ratio(scores) == pytest.approx((2 + 4 + 2) / 120)
    with pytest.raises(TargetUnreachableError, match=r"compound.*smallest reachable is 0\.0667"):
        select(scores, target=0.05)


def test_exact_costs_survive_the_json_round_trip():
    scores = _chain()
    again = EvalScores.from_dict(scores.to_dict())
    assert again.exact_costs == scores.exact_costs
    assert select(again, target=0.5) == select(scores, target=0.5)


@pytest.mark.parametrize("scheme", ["filter_pruning_l2", "channel_pruning"])
@pytest.mark.parametrize("solver", ["greedy", "knapsack"])
def test_select_on_a_pruning_dictionary_predicts_the_built_model(trained_demo, scheme, solver):
    """gc.select (not only compress) prices pruned layers exactly: the predicted ratio is
    the pruned model's measured MAC ratio, at or below the target, and within 1% of it
    unless the selection says why not."""
    from evaluators import TopKAccuracy
    from greedy_compress.schemes import scheme_with_data

    model, data = trained_demo
    built_scheme = scheme_with_data(scheme, data.train_loader())
    scores = build_eval_scores(
        model,
        TopKAccuracy(data.val_loader()),
        scheme=built_scheme,
        input_shape=SHAPE,
        progress=False,
    )
    x = torch.zeros(SHAPE)
    for target in (0.4, 0.5, 0.7):
        selection = select(scores, target=target, solver=solver)
        small = apply_selection(model, selection, scheme=built_scheme)
        measured = count_macs(small, x) / count_macs(model, x)
        assert measured == pytest.approx(selection.predicted_ratio, abs=1e-12)
        assert measured <= target
        assert measured >= 0.99 * target or "budget_note" in selection.details
