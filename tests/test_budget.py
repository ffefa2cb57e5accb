"""The exact-budget step shared by every solver (``Solver.solve`` -> ``meet_budget``)."""

from __future__ import annotations

import random

import pytest
from dictionaries import make_scores

from greedy_compress.selection import GreedySolver, LayerOption, Solver, layer_options
from greedy_compress.selection.budget import fill_budget, meet_budget


class CheapestSolver(Solver):
    """A deliberately bad solver: every layer at its smallest candidate."""

    name = "cheapest"

    def choose(self, options, *, fixed_cost, budget):
        return {name: opts[0] for name, opts in options.items()}, {}


FLAT = make_scores({f"l{i}": (100, [(10 * k, 1.0) for k in range(1, 10)]) for i in range(4)})


def test_any_solver_lands_within_one_percent_through_the_shared_step():
    selection = CheapestSolver().solve(FLAT, target=0.55)
    assert 0.99 * 0.55 <= selection.predicted_ratio <= 0.55
    assert selection.details["within_tolerance"] is True
    solver = CheapestSolver()
    solver.fill_budget = False  # the step can be turned off; then nothing is filled
    assert solver.solve(FLAT, target=0.55).predicted_ratio == pytest.approx(0.1)


def test_flat_dictionary_spreads_compression_evenly():
    selection = GreedySolver().solve(FLAT, target=0.5)
    assert selection.predicted_ratio == pytest.approx(0.5)
    # ties go to the layer compressed hardest, so no layer is left at 0.1 next to untouched ones
    assert sorted(c.kept_ratio for c in selection.choices.values()) == pytest.approx([0.5] * 4)


def test_pairs_close_a_gap_no_single_upgrade_can():
    # budget 100; greedy fill reaches 90 (a:60 + b:30) and then no single upgrade fits,
    # but a up (60 -> 70) with nothing else, or swapping sizes, lands exactly on 100.
    options = {
        "a": [LayerOption(0.3, 1, 30, 0.9), LayerOption(0.6, 2, 60, 0.99),
              LayerOption(0.7, 3, 70, 0.991), LayerOption(1.0, None, 100, 1.0)],
        "b": [LayerOption(0.3, 1, 30, 0.99), LayerOption(0.4, 2, 40, 0.991),
              LayerOption(1.0, None, 100, 1.0)],
    }  # fmt: skip
    start = {"a": options["a"][0], "b": options["b"][0]}
    chosen, info = meet_budget(options, start, fixed_cost=0, budget=100, tolerance=0.01)
    assert sum(o.cost for o in chosen.values()) == 100
    assert info["within_tolerance"] and info["budget_gap"] == 0


def test_coarse_candidates_are_reported_with_the_reason():
    coarse = make_scores({"a": (100, [(30, 0.9)]), "b": (100, [(30, 0.8)])})
    selection = GreedySolver().solve(coarse, target=0.5)
    assert selection.predicted_ratio == pytest.approx(0.3)  # 0.65 or 1.0 would overshoot
    assert selection.details["within_tolerance"] is False
    assert (
        "smallest step between two candidates of one layer is 70.00%"
        in (selection.details["budget_note"])
    )


@pytest.mark.parametrize("seed", range(15))
def test_random_dictionaries_never_exceed_and_usually_hit_the_budget(seed):
    rng = random.Random(seed)
    layers = {}
    for i in range(rng.randint(2, 8)):
        macs = rng.randint(50, 500)
        costs = sorted(rng.sample(range(1, macs), k=min(8, macs - 1)))
        layers[f"l{i}"] = (macs, [(c, round(rng.uniform(0.3, 1.0), 3)) for c in costs])
    scores = make_scores(layers)
    options = layer_options(scores, "mac")
    total = scores.model_cost.macs
    for target in (0.3, 0.5, 0.7):
        if sum(o[0].cost for o in options.values()) > target * total:
            continue
        selection = CheapestSolver().solve(scores, target=target)
        assert selection.predicted_ratio <= target + 1e-12
        note = selection.details.get("budget_note", "")
        if selection.details["within_tolerance"]:
            assert selection.predicted_ratio >= 0.99 * target
        elif "would lower the predicted score" not in note:
            # then not even a brute force over all combinations gets within 1%
            assert _closest_under(options, target * total) < 0.99 * target * total


def _closest_under(options, budget):
    sums = {0}
    for opts in options.values():
        sums = {s + o.cost for s in sums for o in opts if s + o.cost <= budget}
    return max(sums)


def test_predicted_score_adds_up_single_layer_losses():
    from dictionaries import TWO_LAYERS

    from greedy_compress import predicted_score

    selection = GreedySolver().solve(TWO_LAYERS, target=0.5)  # a at 0.98, b at 0.95
    assert predicted_score(TWO_LAYERS, selection) == pytest.approx(1.0 - 0.02 - 0.05)


def test_landing_closer_is_not_bought_with_a_collapsed_prediction():
    # Within 1% of the budget only by crushing the tiny layer t (score 0.1): the smaller
    # selection with the full prediction is kept, and the note says why.
    scores = make_scores({"a": (1000, [(500, 1.0), (900, 1.0)]), "t": (10, [(5, 0.1)])})
    selection = GreedySolver().solve(scores, target=909 / 1010)
    assert "t" not in selection.choices
    assert selection.details["within_tolerance"] is False
    assert "would lower the predicted score by 0.9" in selection.details["budget_note"]


def test_the_fill_never_moves_to_a_worse_option_of_another_scheme():
    # A mixed dictionary: layer "a" at weight SVD scores 0.99; sparsity's costlier option for
    # it scores 0.5. Costlier is not better across schemes: the fill must stay; within one
    # scheme it still upgrades ("b" moves up to its costlier option).
    svd = LayerOption(0.3, 3, 30, 0.99, scheme="weight_svd")
    sparse = LayerOption(0.5, 5, 50, 0.5, scheme="sparsity")
    options = {
        "a": [svd, sparse, LayerOption(1.0, None, 100, 1.0)],
        "b": [
            LayerOption(0.2, 2, 20, 0.9, scheme="weight_svd"),
            LayerOption(0.4, 4, 40, 0.95, scheme="weight_svd"),
            LayerOption(1.0, None, 100, 1.0),
        ],
    }
    chosen = {"a": svd, "b": options["b"][0]}
    filled, steps = fill_budget(options, chosen, fixed_cost=0, budget=100)
    assert filled["a"] is svd
    assert filled["b"] is options["b"][1] and steps == 1
