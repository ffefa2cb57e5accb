"""Selections that hold up, on a model whose dictionary is flat (issue 7).

A small ResNet trained to 100% on an easy task (digits 0 vs 1) with a small eval set: every
layer alone survives hard compression, so AIMET's threshold search compresses all of them
hard at once and the combined model collapses. Exact budget, the combined check and repair
must fix that.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from evaluators import TopKAccuracy
from greedy_compress import (
    InvalidParameterError,
    MaxDrop,
    apply_selection,
    build_eval_scores,
    compress,
    count_macs,
    predicted_score,
    repair_selection,
)
from greedy_compress.demo.data import load_digits_data
from greedy_compress.demo.models import TinyResNet
from greedy_compress.demo.training import train_classifier
from greedy_compress.selection import GreedySolver


class Counting:
    """Wraps an evaluator and counts its calls."""

    def __init__(self, evaluator) -> None:
        self.evaluator, self.calls = evaluator, 0
        self.name = getattr(evaluator, "name", repr(evaluator))  # same dictionary fingerprint

    def __call__(self, model) -> float:
        self.calls += 1
        return self.evaluator(model)


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """(model, evaluator, example, scores, scores_path): trained in ~3 s, once per module."""
    data = load_digits_data(size=8)

    def zeros_and_ones(images, labels):
        keep = labels < 2
        return images[keep], labels[keep]

    train_x, train_y = zeros_and_ones(data.train_images, data.train_labels)
    val_x, val_y = zeros_and_ones(data.val_images, data.val_labels)
    val_x, val_y = val_x[:64], val_y[:64]  # a small eval set, as in the issue
    torch.manual_seed(0)
    model = TinyResNet(in_channels=1, num_classes=2, width=8, blocks=1)
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(
        TensorDataset(train_x, train_y), batch_size=32, shuffle=True, generator=generator
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: extra threads only fight over a busy machine
    try:
        train_classifier(model, loader, epochs=3)
    finally:
        torch.set_num_threads(threads)
    evaluator = TopKAccuracy(DataLoader(TensorDataset(val_x, val_y), batch_size=64))
    example = val_x[:1]
    path = tmp_path_factory.mktemp("flat") / "scores.json"
    scores = build_eval_scores(
        model,
        evaluator,
        scheme="spatial_svd",
        candidates=5,
        example_input=example,
        scores_path=path,
        progress=False,
    )
    return model, evaluator, example, scores, path


def _measured_ratio(model, compressed, example) -> float:
    return count_macs(compressed, example) / count_macs(model, example)


def test_the_dictionary_is_flat_and_the_plain_method_collapses(flat):
    model, evaluator, example, scores, _ = flat
    assert scores.baseline == 1.0
    entries = [e.score for layer in scores.layers.values() for e in layer.entries]
    assert sum(s >= scores.baseline - 0.02 for s in entries) >= 0.8 * len(entries)

    plain = GreedySolver(fill_budget=False).solve(scores, target=0.5)
    compressed = apply_selection(model, plain)
    assert _measured_ratio(model, compressed, example) < 0.3  # asked for 0.5
    assert predicted_score(scores, plain) >= 0.98  # the dictionary expects no loss...
    assert evaluator(compressed) <= 0.6  # ...but two classes: this is chance level


def test_compress_hits_the_target_and_keeps_the_score_within_max_drop(flat):
    model, evaluator, example, scores, path = flat
    counting = Counting(evaluator)
    compressed, report = compress(
        model,
        counting,
        target=0.5,
        scheme="spatial_svd",
        candidates=5,
        example_input=example,
        max_drop=0.02,
        scores_path=path,  # the fixture's dictionary: reused, not rebuilt
        progress=False,
    )
    measured = _measured_ratio(model, compressed, example)
    assert 0.99 * 0.5 <= measured <= 0.5
    assert report.achieved_ratio == pytest.approx(measured)
    assert report.final_score == evaluator(compressed) >= scores.baseline - 0.02
    assert report.predicted_score == pytest.approx(predicted_score(scores, report.selection))
    assert report.repair is not None and report.repair.success
    text = report.to_table()
    assert "dictionary predicted" in text and "repair: max drop 0.02" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["repair"]["max_drop"] == {"amount": 0.02, "relative": False}
    # the baseline check of the reused dictionary, the combined check, what the repair reports
    assert counting.calls == 2 + report.repair.evaluations


def test_repair_fixes_the_plain_methods_selection(flat):
    model, evaluator, example, scores, _ = flat
    plain = GreedySolver(fill_budget=False).solve(scores, target=0.5)
    counting = Counting(evaluator)
    repaired, result = repair_selection(model, counting, scores, plain, max_drop=0.02)
    assert result.success and result.initial_score <= 0.6
    assert result.evaluations == counting.calls >= 2
    assert result.steps[0].action == "combined check"
    assert any(step.kept and step.action.startswith("back off") for step in result.steps)
    compressed = apply_selection(model, repaired)
    assert evaluator(compressed) == result.final_score >= 0.98
    assert _measured_ratio(model, compressed, example) <= 0.5


def test_repair_says_when_target_and_max_drop_cannot_both_hold(flat):
    model, evaluator, example, scores, _ = flat
    selection = GreedySolver().solve(scores, target=0.22)
    repaired, result = repair_selection(
        model, evaluator, scores, selection, max_drop=MaxDrop(0.0), max_evaluations=6
    )
    assert not result.success
    assert "could not meet both the target and max_drop" in result.message
    assert "best found scores" in result.message
    assert result.final_score >= result.initial_score
    assert result.evaluations <= 6
    compressed = apply_selection(model, repaired)
    assert evaluator(compressed) == result.final_score
    assert _measured_ratio(model, compressed, example) <= 0.22


def test_a_selection_already_within_max_drop_costs_no_extra_evaluation(flat):
    model, evaluator, _, scores, _ = flat
    selection = GreedySolver().solve(scores, target=0.7)
    score = evaluator(apply_selection(model, selection))
    counting = Counting(evaluator)
    same, result = repair_selection(
        model, counting, scores, selection, max_drop=MaxDrop(0.5, relative=True), score=score
    )
    assert result.success and result.evaluations == counting.calls == 0
    assert same.choices == selection.choices
    assert result.threshold == pytest.approx(0.5)  # half of the baseline 1.0


def test_max_drop_forms():
    assert MaxDrop(0.02).allowed(0.5) == 0.02
    assert MaxDrop(0.1, relative=True).allowed(0.5) == pytest.approx(0.05)
    assert MaxDrop(0.1, relative=True).allowed(-2.0) == pytest.approx(0.2)  # losses < 0


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "2%", True, MaxDrop(-1.0)])
def test_bad_max_drop_is_refused_before_any_evaluation(tiny_net, bad):
    counting = Counting(lambda model: 1.0)
    with pytest.raises(InvalidParameterError, match=r"'max_drop' parameter of compress.*Got"):
        compress(tiny_net, counting, target=0.5, input_shape=(1, 1, 8, 8), max_drop=bad)
    assert counting.calls == 0


def test_bad_monotone_is_refused(tiny_net):
    with pytest.raises(InvalidParameterError, match=r"'monotone' parameter of compress"):
        compress(tiny_net, lambda m: 1.0, target=0.5, input_shape=(1, 1, 8, 8), monotone=1)
