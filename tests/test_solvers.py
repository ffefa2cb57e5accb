from __future__ import annotations

import random

import pytest
from dictionaries import TWO_LAYERS, make_scores

from greedy_compress.errors import (
    InvalidParameterError,
    ScoresFormatError,
    TargetUnreachableError,
)
from greedy_compress.selection import (
    GreedySolver,
    Selection,
    available_solvers,
    get_solver,
    layer_options,
)
from greedy_compress.selection.solvers import pick_at_threshold


def test_greedy_finds_the_highest_threshold_meeting_the_target():
    selection = GreedySolver().solve(TWO_LAYERS, target=0.5)
    # thresholds 1.0, .99, .98, .97 cost 200, 180, 160, 130; 0.95 costs 100 = the budget
    assert selection.details["threshold"] == 0.95
    assert {n: c.rank for n, c in selection.choices.items()} == {"a": 3, "b": 1}
    assert selection.predicted_ratio == 0.5
    assert selection.solver == "greedy" and selection.scheme == "weight_svd"


def test_plain_greedy_stops_at_the_threshold_and_filling_spends_the_rest():
    plain = GreedySolver(fill_budget=False).solve(TWO_LAYERS, target=0.6)
    assert {n: c.rank for n, c in plain.choices.items()} == {"a": 3, "b": 1}
    assert plain.predicted_ratio == 0.5

    filled = GreedySolver().solve(TWO_LAYERS, target=0.6)
    assert {n: c.rank for n, c in filled.choices.items()} == {"b": 1}  # a left alone
    assert filled.predicted_ratio == 0.6 and filled.details["fill_steps"] == 1


def test_a_flat_dictionary_no_longer_jumps_to_a_tiny_model():
    flat = make_scores({f"l{i}": (100, [(10 * k, 1.0) for k in range(1, 10)]) for i in range(4)})
    plain = GreedySolver(fill_budget=False).solve(flat, target=0.5)
    filled = GreedySolver().solve(flat, target=0.5)
    assert plain.predicted_ratio == pytest.approx(0.1)  # AIMET's method: every layer at 0.1
    assert filled.predicted_ratio == pytest.approx(0.5)


def test_unreachable_target_states_the_smallest_reachable_ratio():
    with pytest.raises(TargetUnreachableError, match=r"keeps 0\.2000 .*target >= 0\.2000"):
        GreedySolver().solve(TWO_LAYERS, target=0.15)


def test_fixed_costs_count_toward_the_model():
    scores = make_scores({"a": (100, [(10, 0.9)])}, fixed_macs=100)
    with pytest.raises(TargetUnreachableError, match=r"0\.5500"):
        GreedySolver().solve(scores, target=0.5)
    assert GreedySolver().solve(scores, target=0.55).choices["a"].rank == 1


@pytest.mark.parametrize("target", [0, 0.0, 1, 1.5, -0.2, float("nan"), "0.5", None, True])
def test_targets_outside_the_open_unit_interval_are_rejected(target):
    with pytest.raises(InvalidParameterError, match=r"'target'.*\(0, 1\).*Got"):
        GreedySolver().solve(TWO_LAYERS, target=target)


def test_failed_scores_are_never_preferred():
    scores = make_scores({"a": (100, [(10, None), (50, 0.9)]), "b": (100, [(50, 0.95)])})
    options = layer_options(scores, "mac")
    assert options["a"][0].score == float("-inf")
    selection = GreedySolver(fill_budget=False).solve(scores, target=0.5)
    assert selection.choices["a"].rank == 2


def test_incomplete_dictionary_is_refused():
    partial = make_scores({"a": (100, [(10, 0.9)])})
    partial = type(partial)(
        fingerprint=partial.fingerprint,
        baseline=1.0,
        model_cost=partial.model_cost,
        planned=("a", "b"),
        layers=partial.layers,
    )
    with pytest.raises(ScoresFormatError, match="missing b"):
        GreedySolver().solve(partial, target=0.5)


def _brute_force_best_threshold(options, budget):
    thresholds = sorted({o.score for opts in options.values() for o in opts}, reverse=True)
    for t in thresholds:
        if sum(o.cost for o in pick_at_threshold(options, t).values()) <= budget:
            return t
    return None


@pytest.mark.parametrize("seed", range(20))
def test_random_dictionaries_greedy_is_exact_and_never_over_budget(seed):
    rng = random.Random(seed)
    layers = {}
    for i in range(rng.randint(1, 6)):
        macs = rng.randint(50, 500)
        costs = sorted(rng.sample(range(1, macs), k=min(5, macs - 1)))
        layers[f"l{i}"] = (macs, [(c, round(rng.uniform(0.3, 1.0), 3)) for c in costs])
    scores = make_scores(layers, baseline=1.0)
    options = layer_options(scores, "mac")
    cheapest = sum(o[0].cost for o in options.values()) / scores.model_cost.macs
    for target in (0.3, 0.5, 0.7, 0.9):
        if target < cheapest:
            continue
        budget = target * scores.model_cost.macs
        plain = GreedySolver(fill_budget=False).solve(scores, target=target)
        assert plain.details["threshold"] == _brute_force_best_threshold(options, budget)
        filled = GreedySolver().solve(scores, target=target)
        assert plain.predicted_ratio <= filled.predicted_ratio <= target + 1e-12
        # after filling, no single layer upgrade still fits in the budget
        spare = budget - filled.predicted_ratio * scores.model_cost.macs
        chosen_cost = {
            n: next(o.cost for o in options[n] if o.rank == c.rank)
            for n, c in filled.choices.items()
        }
        for name, opts in options.items():
            now = chosen_cost.get(name, opts[-1].cost)
            assert all(o.cost - now > spare or o.cost <= now for o in opts)


def test_selection_round_trips_through_json(tmp_path):
    selection = GreedySolver().solve(TWO_LAYERS, target=0.5)
    selection.save(tmp_path / "sel.json")
    assert Selection.load(tmp_path / "sel.json") == selection


def test_solver_registry_lists_names():
    assert "greedy" in available_solvers()
    with pytest.raises(InvalidParameterError, match=r"'solver'.*'greedy'"):
        get_solver("simplex")


def test_candidates_that_save_nothing_are_not_options():
    scores = make_scores({"a": (100, [(50, 0.9), (120, 1.0)])})
    assert [o.rank for o in layer_options(scores, "mac")["a"]] == [1, None]
