from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from greedy_compress.dictionary.build import build_eval_scores
from greedy_compress.errors import (
    GreedyCompressError,
    NoCompressibleLayerError,
    ScoresMismatchError,
)

SHAPE = (1, 1, 8, 8)


def test_every_planned_layer_is_scored_at_every_candidate(tiny_net, distance_evaluator):
    scores = build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="spatial_svd",
        candidates=[0.25, 0.5, 0.75],
        input_shape=SHAPE,
        progress=False,
    )
    assert scores.planned == ("conv1", "conv2")
    assert set(scores.skipped) == {"depthwise", "pointwise", "head"}
    assert scores.baseline == 0.0
    for layer in scores.layers.values():
        assert [e.asked_ratio for e in layer.entries] == [0.25, 0.5, 0.75]
        assert all(e.score <= 0.0 for e in layer.entries)
    # candidates that round to the same rank are evaluated once
    distinct = sum(len({e.rank for e in layer.entries}) for layer in scores.layers.values())
    assert distance_evaluator.calls == 1 + distinct


def test_the_model_is_restored_and_never_deep_copied(tiny_net, distance_evaluator, monkeypatch):
    before = copy.deepcopy(tiny_net.state_dict())
    modules_before = dict(tiny_net.named_modules())

    def forbidden(*_args, **_kwargs):
        raise AssertionError("the search must not deep-copy the model")

    monkeypatch.setattr(copy, "deepcopy", forbidden)
    build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="weight_svd",
        candidates=3,
        input_shape=SHAPE,
        progress=False,
    )
    monkeypatch.undo()
    assert dict(tiny_net.named_modules()) == modules_before
    for key, value in tiny_net.state_dict().items():
        assert torch.equal(value, before[key])


def test_scores_reflect_how_much_each_layer_is_compressed(tiny_net, distance_evaluator):
    scores = build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="weight_svd",
        candidates=5,
        input_shape=SHAPE,
        progress=False,
    )
    for layer in scores.layers.values():
        ranks_scores = sorted((e.rank, e.score) for e in layer.entries)
        scores_by_rank = [s for _, s in ranks_scores]
        assert scores_by_rank == sorted(scores_by_rank)  # more rank, closer outputs


class Interrupting:
    """Wraps an evaluator and raises KeyboardInterrupt on call number ``stop_at``."""

    def __init__(self, inner, stop_at: int) -> None:
        self.inner, self.stop_at, self.calls = inner, stop_at, 0
        self.name = inner.name

    def __call__(self, model: nn.Module) -> float:
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.inner(model)


def test_an_interrupted_build_resumes_to_the_same_dictionary(
    tiny_net, distance_evaluator, tmp_path
):
    options = dict(scheme="weight_svd", candidates=[0.3, 0.6], input_shape=SHAPE, progress=False)
    reference = build_eval_scores(tiny_net, distance_evaluator, **options)

    path = tmp_path / "scores.json"
    interrupting = Interrupting(distance_evaluator, stop_at=6)  # baseline + 2 layers, then stop
    with pytest.raises(KeyboardInterrupt):
        build_eval_scores(tiny_net, interrupting, scores_path=path, **options)
    partial = json.loads(path.read_text())
    assert list(partial["layers"]) == ["conv1", "conv2"]  # finished layers are on disk

    distance_evaluator.calls = 0
    resumed = build_eval_scores(tiny_net, distance_evaluator, scores_path=path, **options)
    assert distance_evaluator.calls == 1 + 2 * 2  # the baseline check, then the two missing layers
    assert resumed.to_dict() == reference.to_dict()
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary files


def test_a_finished_file_is_reused_with_only_the_baseline_check(
    tiny_net, distance_evaluator, tmp_path
):
    path = tmp_path / "scores.json"
    options = dict(scheme="weight_svd", candidates=3, input_shape=SHAPE, progress=False)
    first = build_eval_scores(tiny_net, distance_evaluator, scores_path=path, **options)
    distance_evaluator.calls = 0
    again = build_eval_scores(tiny_net, distance_evaluator, scores_path=path, **options)
    # one evaluation: the baseline, which must match the file's (same evaluator and data)
    assert distance_evaluator.calls == 1 and again == first


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (dict(scheme="spatial_svd"), "'scheme'"),
        (dict(candidates=4), "'candidates'"),
        (dict(multiplicity=2), "'multiplicity'"),
        (dict(cost="memory"), "'cost'"),
        (dict(input_shape=(2, 1, 8, 8)), "'input_shape'"),
    ],
)
def test_a_file_for_other_settings_is_refused_naming_the_field(
    tiny_net, distance_evaluator, tmp_path, change, field
):
    path = tmp_path / "scores.json"
    options = dict(scheme="weight_svd", candidates=3, input_shape=SHAPE, progress=False)
    build_eval_scores(tiny_net, distance_evaluator, scores_path=path, **options)
    saved = path.read_bytes()
    with pytest.raises(ScoresMismatchError, match=field):
        build_eval_scores(tiny_net, distance_evaluator, scores_path=path, **{**options, **change})
    assert path.read_bytes() == saved  # nothing already computed is lost


def test_a_file_for_other_weights_is_refused(tiny_net, distance_evaluator, tmp_path):
    path = tmp_path / "scores.json"
    options = dict(scheme="weight_svd", candidates=3, input_shape=SHAPE, progress=False)
    build_eval_scores(tiny_net, distance_evaluator, scores_path=path, **options)
    with torch.no_grad():
        tiny_net.conv1.weight.add_(1.0)
    with pytest.raises(ScoresMismatchError, match=r"'weights' \(file: '[0-9a-f]+', now"):
        build_eval_scores(tiny_net, distance_evaluator, scores_path=path, **options)


def test_a_model_without_compressible_layers_is_an_error():
    model = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.ReLU())
    with pytest.raises(NoCompressibleLayerError, match=r"'spatial_svd'.*1 x grouped conv.*\(0\)"):
        build_eval_scores(model, lambda m: 1.0, input_shape=(1, 3, 8, 8), progress=False)


def test_non_finite_candidate_scores_are_recorded_as_failures(tiny_net):
    calls = []

    def evaluator(model: nn.Module) -> float:
        calls.append(1)
        return 1.0 if len(calls) == 1 else float("nan")

    scores = build_eval_scores(
        tiny_net, evaluator, scheme="spatial_svd", candidates=2, input_shape=SHAPE, progress=False
    )
    assert all(e.score is None for layer in scores.layers.values() for e in layer.entries)


@pytest.mark.parametrize("result", [float("nan"), "high", None])
def test_a_bad_baseline_score_is_an_error(tiny_net, result):
    with pytest.raises(GreedyCompressError, match="evaluator"):
        build_eval_scores(tiny_net, lambda m: result, input_shape=SHAPE, progress=False)


def test_passes_are_planned_from_the_time_per_score():
    from greedy_compress.dictionary.scoring import next_pass

    pending = [("a", [1, 2]), ("b", [1, 2, 3]), ("c", [1]), ("d", [1, 2])]
    assert next_pass(pending, None, 10.0) == pending[:1]  # nothing timed yet: one layer
    assert next_pass(pending, 1.0, 6.0) == pending[:3]  # 2 + 3 + 1 scores of 1 s
    assert next_pass(pending, 1.0, 0.0) == pending[:1]  # always at least one layer
    assert next_pass(pending, 0.001, 10.0) == pending
