from __future__ import annotations

import random

import numpy as np
import pytest
from dictionaries import make_scores
from sklearn.isotonic import IsotonicRegression

from greedy_compress.selection import GreedySolver, layer_options
from greedy_compress.selection.monotone import is_monotone, isotonic
from greedy_compress.selection.options import fit_options, non_monotone


@pytest.mark.parametrize("seed", range(10))
def test_isotonic_matches_scikit_learn(seed):
    rng = random.Random(seed)
    values = [rng.uniform(0, 1) for _ in range(rng.randint(1, 12))]
    weights = [rng.uniform(0.5, 2) for _ in values]
    x = np.arange(len(values))
    expected = IsotonicRegression().fit(x, values, sample_weight=weights).predict(x)
    assert isotonic(values, weights) == pytest.approx(list(expected))
    assert is_monotone(isotonic(values, weights))


def test_failed_scores_stay_failed_and_out_of_the_fit():
    fitted = isotonic([float("-inf"), 0.8, 0.7, 1.0])
    assert fitted[0] == float("-inf") and fitted[1:] == pytest.approx([0.75, 0.75, 1.0])


# "a" is noisy: compressed to 20 it scores the baseline, at 50 it loses.
NOISY = make_scores(
    {
        "a": (100, [(20, 1.0), (50, 0.9), (80, 0.95)]),
        "b": (100, [(20, 0.93), (50, 0.96), (80, 0.99)]),
    }
)


def test_non_monotone_layers_are_named_and_fitted():
    measured = layer_options(NOISY, "mac")
    assert non_monotone(measured) == ["a"]
    fitted = layer_options(NOISY, "mac", monotone=True)
    assert non_monotone(fitted) == []
    assert [o.score for o in fitted["a"]] == pytest.approx([0.95, 0.95, 0.95, 1.0])
    assert fitted["b"] == measured["b"]  # monotone curves are left as they are
    assert fitted["a"][-1].score == NOISY.baseline  # "leave alone" stays the baseline


def test_fit_never_rises_above_the_baseline():
    scores = make_scores({"a": (100, [(20, 0.5), (50, 1.2)])})
    fitted = fit_options(layer_options(scores, "mac")["a"], scores.baseline)
    assert [o.score for o in fitted] == pytest.approx([0.5, 1.0, 1.0])


def test_solvers_report_non_monotone_curves_and_can_solve_on_the_fit():
    plain = GreedySolver(fill_budget=False).solve(NOISY, target=0.6)
    # the threshold search trusts a's noisy 1.0: a at 20 "costs nothing"
    assert plain.choices["a"].rank == 1 and plain.choices["a"].predicted_score == 1.0
    assert plain.details["non_monotone"] == ["a"] and plain.details["monotone_fit"] is False
    fitted = GreedySolver(fill_budget=False).solve(NOISY, target=0.6, monotone=True)
    assert fitted.details["monotone_fit"] is True
    assert fitted.choices["a"].predicted_score == pytest.approx(0.95)


def test_the_report_names_non_monotone_layers_and_the_budget_note():
    from greedy_compress.model.cost import Cost
    from greedy_compress.report.report import CompressionReport

    selection = GreedySolver().solve(NOISY, target=0.6, monotone=True)
    coarse = make_scores({"a": (100, [(30, 0.9)]), "b": (100, [(30, 0.8)])})
    details = {**selection.details, "budget_note": GreedySolver().solve(coarse, target=0.5)
               .details["budget_note"]}  # fmt: skip
    report = CompressionReport(
        scheme="weight_svd",
        solver="greedy",
        cost_metric="mac",
        target=0.6,
        achieved_ratio=0.6,
        predicted_ratio=0.6,
        model_before=Cost(200, 200),
        model_after=Cost(120, 120),
        baseline_score=1.0,
        final_score=0.9,
        layers=[],
        selection=type(selection)(**{**selection.__dict__, "details": details}),
        predicted_score=0.95,
    )
    text = report.to_table()
    assert "score          1.0000 -> 0.9000 (dictionary predicted 0.9500)" in text
    assert "non-monotone   a (score rises as the layer is compressed more; fitted" in text
    assert "budget         the selection uses 60.00% of the budget" in text


def test_mixed_scheme_options_are_fitted_per_scheme():
    from greedy_compress.selection import LayerOption
    from greedy_compress.selection.options import fit_options

    options = [
        LayerOption(0.2, 1, 2, 0.9, scheme="a"),
        LayerOption(0.3, 1, 3, 0.5, scheme="b"),
        LayerOption(0.5, 2, 5, 0.8, scheme="a"),
        LayerOption(0.6, 2, 6, 0.7, scheme="b"),
        LayerOption(1.0, None, 10, 1.0),
    ]
    fitted = [round(o.score, 3) for o in fit_options(options, 1.0)]
    # scheme a (0.9, 0.8) pools to 0.85; scheme b (0.5, 0.7) is already monotone
    assert fitted == [0.85, 0.5, 0.85, 0.7, 1.0]
