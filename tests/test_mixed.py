from __future__ import annotations

import copy

import pytest
import torch
from tiny import OutputDistance, TinyNet
from torch import nn

from greedy_compress import (
    EvalScores,
    InvalidParameterError,
    ScoresMismatchError,
    TargetUnreachableError,
    apply_selection,
    build_eval_scores,
    build_report,
    count_macs,
    select,
)
from greedy_compress.dictionary.mixed import combine_scores
from greedy_compress.pipeline import compress_pipeline
from greedy_compress.selection import GreedySolver, LayerChoice, Selection

SHAPE = (1, 1, 8, 8)


def _scores(model, evaluator, scheme):
    return build_eval_scores(
        model, evaluator, scheme=scheme, candidates=4, input_shape=SHAPE, progress=False
    )


@pytest.fixture(scope="module")
def setting():
    """One tiny model, evaluator and pair of dictionaries for the module (never changed)."""
    torch.manual_seed(0)
    net = TinyNet().eval()
    torch.manual_seed(1)
    evaluator = OutputDistance(net, torch.randn(16, 1, 8, 8))
    both = [_scores(net, evaluator, s) for s in ("spatial_svd", "weight_svd")]
    return net, evaluator, both


@pytest.fixture
def tiny_net(setting):
    return setting[0]


@pytest.fixture
def distance_evaluator(setting):
    return setting[1]


@pytest.fixture
def both(setting):
    return setting[2]


def _layer_scheme(module: nn.Module) -> str:
    """Which SVD built this layer: spatial SVD's first conv is k x 1, weight SVD's k x k (for
    a 1x1 conv the two schemes build the same pair: both names fit)."""
    first = module[0]
    if not isinstance(first, nn.Conv2d):
        return "weight_svd"
    if first.kernel_size == (1, 1) and module[1].kernel_size == (1, 1):
        return "either"
    spatial = first.kernel_size[0] > 1 and first.kernel_size[1] == 1  # weight SVD keeps k x k
    if spatial and module[1].kernel_size[0] == 1:
        return "spatial_svd"
    return "weight_svd"


def test_combined_dictionary_holds_both_schemes_and_round_trips(both, tmp_path):
    mixed = combine_scores(both)
    assert mixed.scheme == "mixed" and mixed.fingerprint["schemes"] == ["spatial_svd", "weight_svd"]
    # the head is linear: only weight SVD can compress it, so it is planned, not skipped
    assert "head" in mixed.planned and "head" not in mixed.skipped
    assert {e.scheme for e in mixed.layers["conv2"].entries} == {"spatial_svd", "weight_svd"}
    assert {e.scheme for e in mixed.layers["head"].entries} == {"weight_svd"}
    assert list(mixed.planned) == [n for n in both[1].planned]  # network order kept
    mixed.save(tmp_path / "mixed.json")
    assert EvalScores.load(tmp_path / "mixed.json") == mixed
    assert "weight_svd asked" in mixed.to_table()


@pytest.mark.parametrize("solver", ["greedy", "knapsack"])
def test_solvers_pick_a_scheme_per_layer_and_apply_builds_each(tiny_net, both, solver, tmp_path):
    mixed = combine_scores(both)
    selection = select(mixed, target=0.5, solver=solver)
    assert selection.scheme == "mixed"
    assert all(c.scheme in ("spatial_svd", "weight_svd") for c in selection.choices.values())
    selection.save(tmp_path / "sel.json")
    assert Selection.load(tmp_path / "sel.json") == selection

    before = copy.deepcopy(tiny_net.state_dict())
    small = apply_selection(tiny_net, selection)
    for name, choice in selection.choices.items():
        assert _layer_scheme(small.get_submodule(name)) in (choice.scheme, "either")
    x = torch.zeros(SHAPE)
    assert count_macs(small, x) / count_macs(tiny_net, x) == pytest.approx(
        selection.predicted_ratio
    )
    assert all(torch.equal(v, before[k]) for k, v in tiny_net.state_dict().items())
    report = build_report(
        tiny_net, small, scores=mixed, selection=selection, example_input=x, final_score=0.0
    )
    assert {r.name: r.scheme for r in report.layers if r.rank is not None} == {
        n: c.scheme for n, c in selection.choices.items()
    }


def test_mixed_is_never_predicted_worse_than_either_scheme(both):
    mixed = combine_scores(both)
    for target in (0.3, 0.5, 0.7):
        gains = {}
        for name, scores in (("mixed", mixed), *((s.scheme, s) for s in both)):
            try:
                gains[name] = select(scores, target=target, solver="knapsack").details[
                    "predicted_gain"
                ]
            except TargetUnreachableError:  # a single scheme may not reach the target
                continue
        assert all(gains["mixed"] >= g - 1e-12 for g in gains.values())


def test_single_scheme_selections_keep_their_old_json():
    choice = LayerChoice(0.5, 2, 0.9)
    assert "scheme" not in choice.to_dict()
    old = {
        "format": "greedy-compress/selection",
        "format_version": 1,
        "scheme": "weight_svd",
        "solver": "greedy",
        "metric": "mac",
        "target": 0.5,
        "predicted_ratio": 0.5,
        "choices": {"a": {"ratio": 0.5, "rank": 2, "predicted_score": 0.9}},
    }
    assert Selection.from_dict(old).choices["a"] == choice


def test_combining_refuses_other_models_and_repeated_schemes(tiny_net, distance_evaluator, both):
    other = copy.deepcopy(tiny_net)
    with torch.no_grad():
        other.conv1.weight.add_(1.0)
    wsvd_other = _scores(other, distance_evaluator, "weight_svd")
    with pytest.raises(ScoresMismatchError, match=r"'weights'"):
        combine_scores([both[0], wsvd_other])
    with pytest.raises(InvalidParameterError, match=r"'scores'.*distinct single schemes"):
        combine_scores([both[0], both[0]])
    with pytest.raises(InvalidParameterError, match=r"'scores'.*at least two"):
        combine_scores([both[0]])


def test_a_mixed_choice_without_a_scheme_fails_clearly(tiny_net, both):
    selection = GreedySolver().solve(combine_scores(both), target=0.5)
    broken = Selection(
        scheme="mixed",
        solver="greedy",
        cost_metric="mac",
        target=0.5,
        predicted_ratio=selection.predicted_ratio,
        choices={"conv2": LayerChoice(0.5, 2, 0.9)},
    )
    with pytest.raises(InvalidParameterError, match=r"'scheme'.*'weight_svd'.*Got 'mixed'"):
        apply_selection(tiny_net, broken)


def test_pipeline_runs_each_stage_on_the_previous_output(tiny_net, distance_evaluator, tmp_path):
    before = copy.deepcopy(tiny_net.state_dict())
    small, report = compress_pipeline(
        tiny_net,
        distance_evaluator,
        stages=[("spatial_svd", 0.8), ("weight_svd", 0.8)],
        candidates=4,
        input_shape=SHAPE,
        scores_dir=tmp_path,
        progress=False,
    )
    assert [s.scheme for s in report.stages] == ["spatial_svd", "weight_svd"]
    x = torch.zeros(SHAPE)
    first, second = report.stages
    assert first.achieved_ratio <= 0.8 and second.achieved_ratio <= 0.8
    assert report.model_after.macs == count_macs(small, x)
    assert report.achieved_ratio == pytest.approx(count_macs(small, x) / count_macs(tiny_net, x))
    assert report.achieved_ratio == pytest.approx(first.achieved_ratio * second.achieved_ratio)
    # stage 2 scored the layers stage 1 created (e.g. the two halves of a split conv)
    stage2 = EvalScores.load(tmp_path / "stage2-weight_svd.json")
    assert any("." in name for name in stage2.planned)
    assert (tmp_path / "stage1-spatial_svd.json").exists()
    assert all(torch.equal(v, before[k]) for k, v in tiny_net.state_dict().items())
    assert "stage 2: weight_svd" in report.to_table()


@pytest.mark.parametrize(
    ("stages", "match"),
    [
        ([], r"'stages'.*non-empty"),
        ([("spatial_svd", 1.5)], r"'target'.*\(0, 1\).*Got 1.5"),
        ([("tucker9", 0.5)], r"'scheme'.*Got 'tucker9'"),
        (["spatial_svd"], r"'stages'.*pairs"),
    ],
)
def test_pipeline_checks_stages_before_any_work(tiny_net, stages, match):
    def evaluator(model):
        raise AssertionError("evaluated before the stages were checked")

    with pytest.raises(InvalidParameterError, match=match):
        compress_pipeline(tiny_net, evaluator, stages=stages, input_shape=SHAPE)
