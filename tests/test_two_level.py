"""The two-level dictionary: the proxy against measured scores, what it measures and says,
resuming into the exact build, and the end-to-end check of its selections."""

from __future__ import annotations

import json

import pytest
import torch
from scipy.stats import spearmanr

import greedy_compress as gc
from evaluators import NegativeLoss
from greedy_compress.dictionary.two_level import (
    build_two_level_scores,
    knee_index,
    predict_scores,
)
from greedy_compress.errors import InvalidParameterError
from greedy_compress.model.statistics import Calibration
from greedy_compress.schemes import WeightSVD
from greedy_compress.selection.end_to_end import check_end_to_end
from greedy_compress.selection.refine import refine_two_level

SHAPE = (1, 1, 8, 8)
RATIOS = [0.1, 0.2, 0.35, 0.5, 0.7, 0.9]
SENSITIVE = 0.01  # nats of validation loss at the most compressed candidate


class Counting:
    """A plain callable counting its evaluations (a loss: smooth, no ties)."""

    name = "counting-negative-loss"

    def __init__(self, data) -> None:
        self.inner = NegativeLoss(data.val_loader(), max_batches=2)
        self.calls = 0

    def __call__(self, model: torch.nn.Module) -> float:
        self.calls += 1
        return self.inner(model)


@pytest.fixture(scope="module")
def built(trained_demo):
    """The exact and the two-level dictionary of data-aware weight SVD on the demo model."""
    model, data = trained_demo
    calibration = Calibration(data.train_loader(), num_samples=128)
    scheme = WeightSVD(data_aware=True, data=calibration)
    options = dict(candidates=RATIOS, input_shape=SHAPE, progress=False)
    evaluator = Counting(data)
    exact = gc.build_eval_scores(model, evaluator, scheme=scheme, **options)
    exact_calls = evaluator.calls
    evaluator.calls = 0
    two = build_two_level_scores(model, evaluator, scheme=scheme, probes=2, **options)
    return model, data, scheme, exact, exact_calls, two, evaluator.calls


def test_the_proxy_ranks_each_layers_candidates_like_the_measured_scores(built):
    _, _, _, exact, _, two, _ = built
    sensitive = 0
    for name, layer in exact.layers.items():
        losses = [exact.baseline - e.score for e in layer.entries]
        proxies = [e.proxy for e in two.layers[name].entries]
        if max(losses) < SENSITIVE:
            # features.10 (1.4% of the MACs): every candidate costs < 4e-4 nats and the
            # measured losses are themselves not monotone in the rank (noise): no ranking
            # to match, and no candidate of it can change a selection's score much.
            continue
        sensitive += 1
        rho = spearmanr(proxies, losses).statistic
        assert rho >= 0.9, (name, proxies, losses)
    assert sensitive >= 4  # of the demo's 5 layers


def test_two_level_measures_only_the_probes_and_says_which_scores_are_predicted(built, tmp_path):
    _, _, _, exact, exact_calls, two, two_calls = built
    ranks = {name: {e.rank for e in layer.entries} for name, layer in exact.layers.items()}
    assert exact_calls == 1 + sum(map(len, ranks.values()))  # equal ranks scored once
    # the baseline, then two probes per layer
    assert two_calls == 1 + sum(min(2, len(r)) for r in ranks.values())
    assert two.is_complete
    entries = sum(len(layer.entries) for layer in two.layers.values())
    for name, layer in two.layers.items():
        truth = {e.rank: e.score for e in exact.layers[name].entries}
        measured = [e for e in layer.entries if e.measured]
        assert len({e.rank for e in measured}) == min(2, len(ranks[name]))
        for entry in measured:  # measured entries are the exact scores
            assert entry.score == pytest.approx(truth[entry.rank])
        for entry in layer.entries:
            assert entry.proxy is not None and entry.score is not None
    text = two.to_table()
    assert f"{entries - two.predicted} of {entries} scores measured" in text
    assert two.predicted >= entries // 2
    assert "(predicted)" in text
    path = tmp_path / "two.json"
    two.save(path)
    stored = json.loads(path.read_text())
    assert "two_level" in stored["fingerprint"]
    again = gc.EvalScores.load(path)
    assert again.predicted == two.predicted
    assert [e.proxy for e in again.layers["classifier"].entries] == [
        e.proxy for e in two.layers["classifier"].entries
    ]


def test_the_exact_build_resumes_a_two_level_file_and_evaluates_only_the_predicted(built, tmp_path):
    model, data, scheme, exact, _, _, _ = built
    options = dict(candidates=RATIOS, input_shape=SHAPE, progress=False)
    path = tmp_path / "scores.json"
    evaluator = Counting(data)
    two = build_two_level_scores(model, evaluator, scheme=scheme, scores_path=path, **options)
    evaluator.calls = 0
    full = gc.build_eval_scores(model, evaluator, scheme=scheme, scores_path=path, **options)
    predicted = {(n, e.rank) for n, layer in two.layers.items() for e in layer.entries}
    predicted -= {(n, e.rank) for n, lay in two.layers.items() for e in lay.entries if e.measured}
    assert evaluator.calls == 1 + len(predicted)  # the baseline check, then the predicted
    assert full.predicted == 0
    for name, layer in exact.layers.items():
        assert [e.score for e in full.layers[name].entries] == pytest.approx(
            [e.score for e in layer.entries]
        )


def test_a_two_level_selection_checked_end_to_end_scores_what_it_says(built):
    model, data, scheme, _, _, two, _ = built
    evaluator = Counting(data)
    selection, check = check_end_to_end(
        model, evaluator, two, target=0.5, top=2, max_evaluations=4, scheme=scheme
    )
    assert check.refinement is not None and check.trusted
    assert check.evaluations + len(check.refinement.measured) == evaluator.calls
    assert check.evaluations <= 4
    assert check.final_score == max(t.score for t in check.tried)
    assert all(t.predicted_ratio <= 0.5 + 1e-9 for t in check.tried)
    optimum = gc.select(two, target=0.5)
    first = check.tried[0]
    assert first.label.endswith("optimum")
    assert first.predicted_ratio == pytest.approx(optimum.predicted_ratio)
    assert check.final_score >= first.score
    # the returned selection, built on its own, scores what the check measured
    small = gc.apply_selection(model, selection, scheme=scheme)
    assert evaluator.inner(small) == pytest.approx(check.final_score)
    assert selection.details["end_to_end"]["evaluations"] == check.evaluations


def test_predicted_scores_interpolate_the_measured_losses_and_keep_the_order():
    errors = {1: 0.8, 2: 0.4, 3: 0.2, 4: 0.1, 5: 0.02}
    predicted = predict_scores(errors, {2: 0.7, 4: 0.95}, baseline=1.0, floor=0.1)
    assert predicted[2] == 0.7 and predicted[4] == 0.95  # measured ones kept
    assert predicted[3] == pytest.approx(1.0 - (0.05 + 0.25 * (0.2 - 0.1) / 0.3))
    assert predicted[5] == pytest.approx(1.0 - 0.05 * 0.02 / 0.1)  # through no loss at no error
    assert predicted[1] == pytest.approx(max(0.1, 1.0 - (0.3 + 0.25 / 0.3 * 0.4)))
    ordered = [predicted[r] for r in sorted(errors, key=errors.get)]
    assert ordered == sorted(ordered, reverse=True)  # more output error, never a higher score
    # a planted knee: flat, then steep
    assert knee_index([0.2, 0.4, 0.6, 0.8], [0.9, 0.3, 0.05, 0.01]) == 2


def test_two_level_needs_calibration_data_before_any_evaluation(trained_demo):
    model, _ = trained_demo
    calls = []
    with pytest.raises(InvalidParameterError, match="'data' parameter of build_two_level"):
        build_two_level_scores(
            model, lambda m: calls.append(1) or 1.0, scheme="weight_svd", input_shape=SHAPE
        )
    assert calls == []


def _real(model, scheme, evaluator, selection):
    return evaluator.inner(gc.apply_selection(model, selection, scheme=scheme))


def test_refining_at_an_aggressive_target_lands_near_the_exact_dictionarys_selection(built):
    model, data, scheme, exact, _, two, _ = built
    evaluator = Counting(data)
    refined, how = refine_two_level(model, evaluator, two, target=0.3, scheme=scheme)
    assert how.converged and evaluator.calls == len(how.measured) > 0
    optimum = gc.select(refined, target=0.3)
    for name, choice in optimum.choices.items():  # the optimum rests on measured scores
        entry = next(e for e in refined.layers[name].entries if e.rank == choice.rank)
        truth = next(e for e in exact.layers[name].entries if e.rank == choice.rank)
        assert entry.measured and entry.score == pytest.approx(truth.score)
    assert refined.predicted == two.predicted - len(set(how.measured))
    exact_score = _real(model, scheme, evaluator, gc.select(exact, target=0.3))
    refined_score = _real(model, scheme, evaluator, optimum)
    # validation loss (nats): within 0.05 of what the exact dictionary's optimum reaches
    assert refined_score >= exact_score - 0.05, (refined_score, exact_score)


def test_a_refinement_out_of_budget_is_flagged_not_trusted(built):
    model, data, scheme, _, _, two, _ = built
    evaluator = Counting(data)
    _, how = refine_two_level(model, evaluator, two, target=0.3, scheme=scheme, max_measurements=1)
    assert not how.converged and len(how.measured) == 1
    with pytest.warns(RuntimeWarning, match="still rests on predicted scores"):
        _, check = check_end_to_end(
            model,
            evaluator,
            two,
            target=0.3,
            top=1,
            max_evaluations=1,
            max_measurements=1,
            scheme=scheme,
        )
    assert not check.trusted and check.to_dict()["trusted"] is False
    assert "NOT converged" in check.to_text()


def test_refining_with_the_plain_scheme_is_refused_before_any_evaluation(built):
    model, data, _, _, _, two, _ = built
    evaluator = Counting(data)
    with pytest.raises(InvalidParameterError, match="the data-aware scheme the dictionary"):
        refine_two_level(model, evaluator, two, target=0.3)
    assert evaluator.calls == 0
