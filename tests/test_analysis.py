from __future__ import annotations

import dataclasses
import math

import pytest

from greedy_compress import (
    GreedySolver,
    InvalidParameterError,
    ScoresMismatchError,
    Selection,
    available_solvers,
)
from greedy_compress.report.analysis import (
    MeasuredPoint,
    selection_data,
    sensitivity,
    tradeoff_curve,
)
from greedy_compress.report.comparison import compare_selections, selections_by_solver
from greedy_compress.selection import LayerChoice, predicted_score, reachable_ratio
from tests.dictionaries import TWO_LAYERS, make_scores

# A third of the model is not scored; layer "b" has a failed candidate.
WITH_FIXED = make_scores(
    {
        "a": (100, [(20, 0.5), (50, 0.9), (80, 0.98)]),
        "b": (200, [(40, None), (100, 0.97), (160, 0.99)]),
    },
    baseline=1.0,
    fixed_macs=300,
)


def hand_selection(**choices: tuple[float, int, float]) -> Selection:
    return Selection(
        scheme="weight_svd",
        solver="hand",
        cost_metric="mac",
        target=0.5,
        predicted_ratio=0.35,
        choices={name: LayerChoice(*choice) for name, choice in choices.items()},
    )


def test_sensitivity_curves_end_at_the_baseline_and_rank_layers():
    data = sensitivity(TWO_LAYERS)
    a, b = data.curves
    assert a.name == "a" and a.ratios == (0.2, 0.5, 0.8, 1.0)
    assert a.scores == (0.5, 0.9, 0.98, 1.0)
    assert a.cost_share == 0.5 and a.failed == 0
    assert a.mean_drop == pytest.approx((0.5 + 0.1 + 0.02) / 3)
    assert b.mean_drop == pytest.approx((0.05 + 0.03 + 0.01) / 3)
    assert data.most_sensitive() == ["a", "b"] and data.most_sensitive(1) == ["a"]
    assert data.baseline == 1.0 and data.cost_metric == "mac" and data.scheme == "weight_svd"


def test_sensitivity_counts_failed_candidates_first_and_shares_include_fixed_cost():
    data = sensitivity(WITH_FIXED)
    a, b = data.curves
    assert a.cost_share == pytest.approx(100 / 600) and b.cost_share == pytest.approx(200 / 600)
    assert b.scores == (None, 0.97, 0.99, 1.0) and b.failed == 1
    assert b.mean_drop == pytest.approx((0.03 + 0.01) / 2)  # failed ones are not averaged
    # b's mean drop is smaller than a's, but a failure makes it the most sensitive
    assert data.most_sensitive() == ["b", "a"]


def test_sensitivity_shows_each_rank_once():
    layer = TWO_LAYERS.layers["a"]
    first = layer.entries[0]
    # two candidates that rounded to the same rank, as the search records them
    duplicate = dataclasses.replace(first, asked_ratio=0.25)
    scores = TWO_LAYERS.with_layer("a", dataclasses.replace(layer, entries=(first, duplicate)))
    assert sensitivity(scores).curves[0].ratios == (0.2, 1.0)


def test_sensitivity_of_a_partial_dictionary_follows_network_order():
    partial = dataclasses.replace(WITH_FIXED, layers={"b": WITH_FIXED.layers["b"]})
    assert [c.name for c in sensitivity(partial).curves] == ["b"]


def test_predicted_score_is_the_additive_model():
    selection = hand_selection(a=(0.5, 2, 0.9), b=(0.2, 1, 0.95))
    assert predicted_score(TWO_LAYERS, selection) == pytest.approx(1.0 - 0.1 - 0.05)
    assert predicted_score(TWO_LAYERS, hand_selection()) == 1.0
    failed = hand_selection(b=(0.2, 1, -math.inf))
    assert predicted_score(WITH_FIXED, failed) == -math.inf


def test_selection_data_lists_every_layer_in_network_order():
    selection = hand_selection(b=(0.5, 2, 0.97))
    data = selection_data(WITH_FIXED, selection, measured_score=0.96)
    a, b = data.layers
    assert (a.name, a.kept_ratio, a.rank, a.predicted_score) == ("a", 1.0, None, 1.0)
    assert a.cost_share == a.kept_share == pytest.approx(100 / 600)
    assert (b.name, b.kept_ratio, b.rank, b.predicted_score) == ("b", 0.5, 2, 0.97)
    assert b.cost_share == pytest.approx(200 / 600) and b.kept_share == pytest.approx(100 / 600)
    assert data.predicted_score == pytest.approx(0.97) and data.measured_score == 0.96
    assert data.label == "hand @ 0.5" and data.predicted_ratio == 0.35
    assert selection_data(WITH_FIXED, selection, label="mine").label == "mine"


def test_a_selection_from_another_dictionary_is_refused():
    with pytest.raises(ScoresMismatchError, match="'c' are not in the dictionary"):
        selection_data(TWO_LAYERS, hand_selection(c=(0.5, 2, 0.9)))
    other_scheme = dataclasses.replace(hand_selection(), scheme="spatial_svd")
    with pytest.raises(ScoresMismatchError, match="scheme 'spatial_svd'"):
        predicted_score(TWO_LAYERS, other_scheme)


def test_reachable_ratio_takes_every_layer_at_its_cheapest_candidate():
    assert reachable_ratio(TWO_LAYERS) == pytest.approx(0.2)
    assert reachable_ratio(WITH_FIXED) == pytest.approx((300 + 20 + 40) / 600)


def test_tradeoff_curve_resolves_each_target_without_evaluating():
    curve = tradeoff_curve(TWO_LAYERS, targets=[0.05, 0.2, 0.6, 0.9], measured=[(0.5, 0.4)])
    assert curve.unreachable == (0.05,) and curve.min_ratio == pytest.approx(0.2)
    assert [p.target for p in curve.points] == [0.2, 0.6, 0.9]
    # at the smallest reachable ratio every layer takes its cheapest candidate
    assert curve.points[0].predicted_ratio == pytest.approx(0.2)
    assert curve.points[0].predicted_score == pytest.approx(1.0 - 0.5 - 0.05)
    solver = GreedySolver()
    for point in curve.points:
        selection = solver.solve(TWO_LAYERS, target=point.target)
        assert point.predicted_ratio == selection.predicted_ratio <= point.target
        assert point.predicted_score == predicted_score(TWO_LAYERS, selection)
    assert curve.measured == (MeasuredPoint(0.5, 0.4),)
    assert curve.lowest_score == 0.4  # the measured point is below every dictionary score
    assert curve.solver == "greedy" and curve.cost_metric == "mac" and curve.baseline == 1.0


def test_tradeoff_curve_default_targets_span_the_reachable_range():
    curve = tradeoff_curve(WITH_FIXED, solver=GreedySolver(fill_budget=False))
    targets = [p.target for p in curve.points]
    assert len(targets) == 25 and not curve.unreachable
    assert targets[0] == pytest.approx(0.6) and targets[-1] == pytest.approx(0.95)
    assert all(p.predicted_ratio <= p.target + 1e-12 for p in curve.points)
    assert curve.lowest_score == 0.5  # failed candidates (None) are not scores


@pytest.mark.parametrize("targets", [[], [1.5], "0.5", [0.5, 0.0]])
def test_tradeoff_curve_rejects_bad_targets(targets):
    with pytest.raises(InvalidParameterError, match="'targets' parameter of tradeoff_curve"):
        tradeoff_curve(TWO_LAYERS, targets=targets)


def test_selections_by_solver_covers_every_registered_solver_and_plain_greedy():
    strategies = selections_by_solver(TWO_LAYERS, target=0.6)
    assert list(strategies) == [*available_solvers(), "greedy (no fill)"]
    plain = GreedySolver(fill_budget=False).solve(TWO_LAYERS, target=0.6)
    assert strategies["greedy (no fill)"] == plain
    assert strategies["greedy"] == GreedySolver().solve(TWO_LAYERS, target=0.6)
    twice = selections_by_solver(TWO_LAYERS, target=0.6, solvers=[GreedySolver(), "greedy"])
    assert list(twice) == ["greedy", "greedy (2)"]
    with pytest.raises(InvalidParameterError, match="'target' parameter of selections_by_solver"):
        selections_by_solver(TWO_LAYERS, target=1.0)


def test_compare_selections_labels_and_picks_the_best():
    fill, plain = GreedySolver(), GreedySolver(fill_budget=False)
    selections = [fill.solve(TWO_LAYERS, target=0.6), plain.solve(TWO_LAYERS, target=0.6)]
    comparison = compare_selections(TWO_LAYERS, selections)
    assert comparison.layers == ("a", "b")
    assert [s.label for s in comparison.strategies] == ["greedy @ 0.6", "greedy @ 0.6 (2)"]
    by_prediction = max(comparison.strategies, key=lambda s: s.predicted_score)
    assert comparison.best() is by_prediction
    labelled = compare_selections(
        TWO_LAYERS, {"fill": selections[0], "plain": selections[1]}, measured={"plain": 0.99}
    )
    assert labelled.best().label == "plain"  # a measured score beats any prediction
    assert labelled.strategies[0].measured_score is None
    with pytest.raises(InvalidParameterError, match="'measured' parameter"):
        compare_selections(TWO_LAYERS, selections, measured={"nope": 1.0})
    with pytest.raises(InvalidParameterError, match="'selections' parameter"):
        compare_selections(TWO_LAYERS, [])
