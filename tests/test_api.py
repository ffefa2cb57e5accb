from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from evaluators import TopKAccuracy
from greedy_compress import (
    EvalScores,
    InvalidParameterError,
    NoCompressibleLayerError,
    TargetUnreachableError,
    apply_selection,
    build_eval_scores,
    compress,
    count_macs,
    select,
)


class CountingEvaluator:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: nn.Module) -> float:
        self.calls += 1
        return 1.0


@pytest.mark.parametrize("scheme", ["spatial_svd", "weight_svd"])
def test_demo_model_reaches_the_target_within_two_percent(trained_demo, scheme, tmp_path):
    model, data = trained_demo
    evaluator = TopKAccuracy(data.val_loader())
    example = data.val_images[:1]
    compressed, report = compress(
        model,
        evaluator,
        target=0.5,
        scheme=scheme,
        example_input=example,
        scores_path=tmp_path / "scores.json",
        progress=False,
    )
    measured = count_macs(compressed, example) / count_macs(model, example)
    assert 0.48 <= measured <= 0.5
    assert report.achieved_ratio == pytest.approx(measured)
    assert report.baseline_score > 0.9  # the demo model is really trained
    assert report.final_score == evaluator(compressed)
    assert report.final_score > 0.8
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert saved["fingerprint"]["scheme"] == scheme


def test_phases_separately_reuse_one_dictionary_for_many_targets(trained_demo, tmp_path):
    model, data = trained_demo
    evaluator = TopKAccuracy(data.val_loader())
    path = tmp_path / "scores.json"
    build_eval_scores(
        model, evaluator, example_input=data.val_images[:1], scores_path=path, progress=False
    )
    scores = EvalScores.load(path)
    ratios = []
    for target in (0.7, 0.5, 0.3):
        selection = select(scores, target=target)
        small = apply_selection(model, selection)
        ratios.append(count_macs(small, data.val_images[:1]) / scores.model_cost.macs)
        assert ratios[-1] <= target
    assert ratios == sorted(ratios, reverse=True)


def test_report_table_and_json(trained_demo, tmp_path):
    model, data = trained_demo
    _, report = compress(
        model,
        TopKAccuracy(data.val_loader()),
        target=0.6,
        example_input=data.val_images[:1],
        candidates=4,
        progress=False,
    )
    text = report.to_table()
    assert "features.10" in text and "target 0.6" in text and "classifier: linear layer" in text
    report.save(tmp_path / "report.json")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["selection"]["format"] == "greedy-compress/selection"
    assert set(saved["timings"]) == {"dictionary", "selection", "apply", "final evaluation"}
    assert saved["model_after"]["macs"] < saved["model_before"]["macs"]


def test_memory_metric_targets_parameters(tiny_net):
    compressed, report = compress(
        tiny_net,
        lambda m: 1.0,
        target=0.5,
        scheme="weight_svd",
        cost="memory",
        input_shape=(1, 1, 8, 8),
        progress=False,
    )
    params = sum(p.numel() for p in compressed.parameters())
    assert params / sum(p.numel() for p in tiny_net.parameters()) == report.achieved_ratio
    assert 0.45 < report.achieved_ratio <= 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": 0}, r"'target' parameter of compress must be a float in \(0, 1\). Got 0"),
        ({"target": 1.5}, r"Got 1.5 instead"),
        ({"target": float("nan")}, r"Got nan instead"),
        ({"target": 0.5, "scheme": "svd"}, r"'scheme'.*'spatial_svd'.*'weight_svd'"),
        ({"target": 0.5, "cost": "flops"}, r"'cost'.*'mac', 'memory'"),
        ({"target": 0.5, "ignore": ["conv9"]}, r"'ignore'.*Got 'conv9'"),
        ({"target": 0.5, "multiplicity": 0}, r"'multiplicity'.*int in \[1, 65536\]"),
        ({"target": 0.5, "solver": "simplex"}, r"'solver'.*'greedy'"),
    ],
)
def test_bad_inputs_fail_before_any_evaluation(tiny_net, kwargs, message):
    evaluator = CountingEvaluator()
    with pytest.raises(InvalidParameterError, match=message):
        compress(tiny_net, evaluator, input_shape=(1, 1, 8, 8), progress=False, **kwargs)
    assert evaluator.calls == 0


def test_a_model_with_nothing_to_compress_is_an_error():
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Flatten(), nn.Linear(8, 1))
    with pytest.raises(NoCompressibleLayerError, match="no layer that scheme 'spatial_svd'"):
        compress(model, CountingEvaluator(), target=0.5, input_shape=(1, 2, 2, 2), progress=False)


def test_a_target_out_of_reach_is_refused_before_any_evaluation(tiny_net, tmp_path):
    path, evaluator = tmp_path / "scores.json", CountingEvaluator()
    with pytest.raises(TargetUnreachableError, match=r"out of reach.*target >= 0\.\d{4}"):
        compress(
            tiny_net,
            evaluator,
            target=0.01,
            input_shape=(1, 1, 8, 8),
            scores_path=path,
            progress=False,
        )
    assert evaluator.calls == 0 and not path.exists()


def test_compressed_model_keeps_the_same_interface(trained_demo):
    model, data = trained_demo
    compressed, _ = compress(
        model,
        TopKAccuracy(data.val_loader()),
        target=0.5,
        example_input=data.val_images[:1],
        candidates=4,
        progress=False,
    )
    x = data.val_images[:5]
    with torch.no_grad():
        assert compressed(x).shape == model(x).shape
