"""``config_list`` in the greedy workflow: which layers every entry point compresses, the
bounds and fixed ratios every solver honours, the dictionary cache, and the bad entries
refused before any evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import OutputDistance, TinyNet

from greedy_compress import (
    EvalScores,
    available_solvers,
    build_eval_scores,
    compress,
    select,
)
from greedy_compress.dictionary.bounds import LEAVE_ALONE, LayerBounds
from greedy_compress.errors import InvalidParameterError, ScoresMismatchError
from greedy_compress.model.profile import profile_model
from greedy_compress.pipeline import compress_pipeline
from greedy_compress.schemes import get_scheme
from greedy_compress.selection.manual import available_layers, manual_selection

SHAPE = (1, 1, 8, 8)
EXAMPLE = torch.zeros(SHAPE)
SCHEME = "weight_svd"  # compresses TinyNet's convs and its linear head; fast
ALL = ["conv1", "conv2", "pointwise", "head"]  # what weight_svd can compress (not depthwise)
SETTINGS = {"input_shape": SHAPE, "progress": False, "candidates": 4}
OPTIONS = {"scheme": SCHEME, **SETTINGS}


@pytest.fixture
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def evaluator(net) -> OutputDistance:
    torch.manual_seed(1)
    return OutputDistance(net, torch.randn(16, 1, 8, 8))


def _never_called(model):
    raise AssertionError("the evaluator must not run for a bad config_list")


def _bounds(chosen: dict[str, tuple[float, float]]) -> dict[str, LayerBounds]:
    return {name: LayerBounds(low, high) for name, (low, high) in chosen.items()}


DEFAULT = {"op_types": ["default"]}

# (config_list, the layers compressed, their bounds): NNI's order, case by case.
CASES = {
    "default chooses every layer the scheme can compress": ([DEFAULT], ALL, {}),
    "op_types choose by class name": ([{"op_types": ["Linear"]}], ["head"], {}),
    "op_types and op_names together: both must match": (
        [{"op_types": ["Conv2d"], "op_names": ["conv2", "head"]}],
        ["conv2"],
        {},
    ),
    "a later entry replaces an earlier one's bound": (
        [{**DEFAULT, "max_ratio": 0.8}, {"op_names": ["conv2"], "max_ratio": 0.5}],
        ALL,
        _bounds({n: (0.0, 0.5 if n == "conv2" else 0.8) for n in ALL}),
    ),
    "replaced, not merged: a later entry without bounds frees the layer": (
        [{**DEFAULT, "min_ratio": 0.2, "max_ratio": 0.8}, {"op_names": ["conv2"]}],
        ALL,
        _bounds({n: (0.2, 0.8) for n in ALL if n != "conv2"}),
    ),
    "a later min_ratio does not keep the earlier max_ratio": (
        [{**DEFAULT, "max_ratio": 0.8}, {"op_names": ["head"], "min_ratio": 0.3}],
        ALL,
        {**_bounds({n: (0.0, 0.8) for n in ALL if n != "head"}), "head": LayerBounds(0.3, 1.0)},
    ),
    "exclude removes layers chosen before it": (
        [DEFAULT, {"op_names": ["head"], "exclude": True}],
        ["conv1", "conv2", "pointwise"],
        {},
    ),
    "an entry after an exclude chooses the layer again": (
        [
            DEFAULT,
            {"op_names": ["head"], "exclude": True},
            {"op_names": ["head"], "max_ratio": 0.5},
        ],
        ALL,
        _bounds({"head": (0.0, 0.5)}),
    ),
    "an exclude before any choice leaves nothing to remove": (
        [{"op_names": ["head"], "exclude": True}, {"op_types": ["Linear"]}],
        ["head"],
        {},
    ),
    "a fixed ratio of 1 leaves the layer alone": (
        [DEFAULT, {"op_names": ["conv1"], "ratio": 1.0}],
        ["conv2", "pointwise", "head"],
        {},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_override_order_case_by_case_in_every_entry_point(net, evaluator, case, tmp_path):
    config_list, layers, bounds = CASES[case]
    path = tmp_path / f"stage1-{SCHEME}.json"  # the pipeline's first stage reuses it too
    scores = build_eval_scores(net, evaluator, config_list=config_list, scores_path=path, **OPTIONS)
    assert list(scores.planned) == layers
    assert scores.bounds == bounds
    listing = available_layers(net, scheme=SCHEME, input_shape=SHAPE, config_list=config_list)
    assert list(listing.layers) == layers
    for name in set(ALL) - set(layers):
        assert name not in scores.layers and listing.skipped[name] == scores.skipped[name]
    # compress, select on the dictionary and a one-stage pipeline: the same selection.
    target = 0.97  # reachable with the head alone
    _, report = compress(
        net, evaluator, target=target, config_list=config_list, scores_path=path, **OPTIONS
    )
    _, pipeline = compress_pipeline(
        net,
        evaluator,
        stages=[(SCHEME, target)],
        config_list=config_list,
        scores_dir=tmp_path,
        **SETTINGS,
    )
    assert report.selection is not None and pipeline.stages[0].selection is not None
    chosen = {n: c.rank for n, c in report.selection.choices.items()}
    assert chosen == {n: c.rank for n, c in select(scores, target=target).choices.items()}
    assert chosen == {n: c.rank for n, c in pipeline.stages[0].selection.choices.items()}
    assert set(chosen) <= set(layers)


BOUNDED = [{**DEFAULT, "min_ratio": 0.3, "max_ratio": 0.7}, {"op_names": ["conv2"], "ratio": 0.37}]


@pytest.fixture(scope="module")
def bounded_and_free() -> tuple[TinyNet, EvalScores, EvalScores]:
    """One net's dictionaries (10 candidates) with the bounds and without."""
    torch.manual_seed(0)
    net = TinyNet().eval()
    torch.manual_seed(1)
    evaluator = OutputDistance(net, torch.randn(16, 1, 8, 8))
    options = {**OPTIONS, "candidates": 10}
    bounded = build_eval_scores(net, evaluator, config_list=BOUNDED, **options)
    return net, bounded, build_eval_scores(net, evaluator, **options)


@pytest.mark.parametrize("solver", available_solvers())
@pytest.mark.parametrize("monotone", [False, True])
def test_every_solver_honours_the_bounds_and_the_fixed_ratio(bounded_and_free, solver, monotone):
    net, scores, free = bounded_and_free
    info = profile_model(net, EXAMPLE).layers["conv2"]
    fixed = get_scheme(SCHEME).rank_for_ratio(info, 0.37, "mac")
    manual = manual_selection(net, {"conv2": 0.37}, scheme=SCHEME, input_shape=SHAPE)
    assert manual.choices["conv2"].rank == fixed
    for target in (0.4, 0.55, 0.7):
        selection = select(scores, target=target, solver=solver, monotone=monotone)
        assert set(selection.choices) == set(ALL)  # max_ratio < 1: every layer compressed
        assert selection.choices["conv2"].rank == fixed
        for name, choice in selection.choices.items():
            if name != "conv2":
                assert 0.3 - 1e-9 <= choice.kept_ratio <= 0.7 + 1e-9, (name, choice)
        assert selection.predicted_ratio <= target + 0.01
    # The bounds mattered: unbounded, the same solver leaves some layer outside them.
    unbounded = select(free, target=0.55, solver=solver, monotone=monotone)
    outside = [
        n
        for n in ALL
        if n not in unbounded.choices or not 0.3 <= unbounded.choices[n].kept_ratio <= 0.7
    ]
    assert outside


def test_compress_builds_the_fixed_rank_and_keeps_within_the_bounds(net, evaluator):
    small, report = compress(net, evaluator, target=0.55, config_list=BOUNDED, **OPTIONS)
    assert report.selection is not None
    rank = report.selection.choices["conv2"].rank
    assert small.conv2[0].out_channels == rank  # weight SVD: in -> rank -> out
    manual = manual_selection(net, {"conv2": 0.37}, scheme=SCHEME, input_shape=SHAPE)
    assert rank == manual.choices["conv2"].rank
    assert abs(report.achieved_ratio - report.selection.predicted_ratio) < 1e-9


def test_a_dictionary_for_all_layers_serves_any_config_list_without_scoring_again(
    net, evaluator, tmp_path
):
    path = tmp_path / "scores.json"
    full = build_eval_scores(net, evaluator, scores_path=path, **OPTIONS)
    calls = evaluator.calls
    chosen = [{"op_names": ["conv2", "head"], "max_ratio": 0.6}]
    subset = build_eval_scores(net, evaluator, scores_path=path, config_list=chosen, **OPTIONS)
    assert evaluator.calls == calls + 1  # the baseline only
    assert list(subset.planned) == ["conv2", "head"] and set(subset.layers) == set(ALL)
    assert subset.bounds["conv1"] == LEAVE_ALONE and subset.bounds["head"].max_ratio == 0.6
    selection = select(subset, target=0.8)
    assert set(selection.choices) == {"conv2", "head"}
    assert all(c.kept_ratio <= 0.6 + 1e-9 for c in selection.choices.values())
    # The file keeps every layer (and records the bounds it was last built for).
    saved = EvalScores.load(path)
    assert set(saved.layers) == set(ALL) and saved.bounds == subset.bounds
    assert {n: c.rank for n, c in select(saved, target=0.8).choices.items()} == {
        n: c.rank for n, c in selection.choices.items()
    }
    again = build_eval_scores(net, evaluator, scores_path=path, **OPTIONS)
    assert again == full and evaluator.calls == calls + 2


def test_a_dictionary_for_some_layers_is_completed_for_more(net, evaluator, tmp_path):
    path = tmp_path / "scores.json"
    first = build_eval_scores(
        net, evaluator, scores_path=path, config_list=[{"op_names": ["head"]}], **OPTIONS
    )
    assert list(first.layers) == ["head"]
    calls = evaluator.calls
    build_eval_scores(net, evaluator, scores_path=path, **OPTIONS)
    fresh = OutputDistance(net, evaluator.inputs)
    build_eval_scores(net, fresh, **OPTIONS)
    # Completing scored every layer but the head: one baseline fewer than a fresh build.
    head_ranks = {e.rank for e in first.layers["head"].entries}
    assert evaluator.calls - calls == fresh.calls - len(head_ranks)


def test_a_fixed_ratio_off_the_grid_adds_one_candidate_recorded_in_the_fingerprint(
    net, evaluator, tmp_path
):
    path = tmp_path / "scores.json"
    fixed = [DEFAULT, {"op_names": ["conv2"], "ratio": 0.37}]
    scores = build_eval_scores(net, evaluator, scores_path=path, config_list=fixed, **OPTIONS)
    assert scores.fingerprint["extra_candidates"] == {"conv2": [0.37]}
    assert 0.37 in [e.asked_ratio for e in scores.layers["conv2"].entries]
    # The same config list reuses it; another one is refused, never silently mixed up.
    calls = evaluator.calls
    build_eval_scores(net, evaluator, scores_path=path, config_list=fixed, **OPTIONS)
    assert evaluator.calls == calls + 1
    with pytest.raises(ScoresMismatchError, match="fixed config_list ratios"):
        build_eval_scores(net, evaluator, scores_path=path, **OPTIONS)
    # On the grid, a fixed ratio changes nothing in the dictionary.
    on_grid = build_eval_scores(
        net, evaluator, config_list=[DEFAULT, {"op_names": ["conv2"], "ratio": 0.5}], **OPTIONS
    )
    assert "extra_candidates" not in on_grid.fingerprint


def test_bounds_are_saved_in_a_version_3_file_and_version_2_files_still_load(net, evaluator):
    scores = build_eval_scores(net, evaluator, config_list=BOUNDED, **OPTIONS)
    data = json.loads(json.dumps(scores.to_dict()))
    assert data["format_version"] == 3 and "bounds" in data
    assert EvalScores.from_dict(data) == scores
    old = {k: v for k, v in data.items() if k != "bounds"}
    old["format_version"] = 2
    loaded = EvalScores.from_dict(old, accept_edits=True)  # no bounds: every layer is free
    assert loaded.bounds == {} and loaded.layers == scores.layers


BAD = {
    "unknown op type": ([{"op_types": ["Conv3d"]}], r"config_list\[0\]\['op_types'\].*Conv3d"),
    "op type it does not handle": (
        [{"op_types": ["BatchNorm2d"]}],
        r"op types it handles.*'BatchNorm2d'",
    ),
    "unknown op name": ([{"op_names": ["conv9"]}], r"names of modules of the model.*conv9"),
    "ratio above 1": ([{**DEFAULT, "ratio": 1.2}], r"config_list\[0\]\['ratio'\].*\(0, 1\]"),
    "max_ratio of 0": ([{**DEFAULT, "max_ratio": 0}], r"config_list\[0\]\['max_ratio'\]"),
    "min above max": (
        [DEFAULT, {"op_names": ["conv2"], "min_ratio": 0.8, "max_ratio": 0.5}],
        r"config_list\[1\].*'min_ratio' <= 'max_ratio'",
    ),
    "fixed ratio with bounds": (
        [{**DEFAULT, "ratio": 0.5, "max_ratio": 0.8}],
        r"either a fixed 'ratio' or 'min_ratio' / 'max_ratio' bounds",
    ),
    "unknown key": ([{**DEFAULT, "sparsity": 0.5}], r"keys among.*key 'sparsity'"),
    "an entry choosing nothing": ([{"max_ratio": 0.5}], r"an entry with 'op_types' or"),
    "not a list": ({"op_types": ["default"]}, r"'config_list' parameter.*list of dicts"),
}
# Only a model and a scheme tell these apart (the listing does not check them).
BAD_FOR_THE_BUILD = {
    "bounds no candidate meets": (
        [{"op_names": ["conv2"], "min_ratio": 0.95, "max_ratio": 0.97}],
        r"bounds some candidate meets \(layer 'conv2', kept ratio in \[0.95, 0.97\]",
    ),
    "a named layer the scheme cannot compress": (
        [{"op_names": ["depthwise"], "max_ratio": 0.5}],
        r"whose named layers weight_svd can compress \('depthwise': grouped conv",
    ),
    "every chosen layer left alone": (
        [{**DEFAULT, "ratio": 1.0}],
        r"entries that choose at least one layer to compress",
    ),
}


@pytest.mark.parametrize(
    ("owner", "case"),
    [
        *(
            (owner, case)
            for owner in ("compress", "build_eval_scores", "available_layers")
            for case in BAD
        ),
        *(
            (owner, case)
            for owner in ("compress", "build_eval_scores")
            for case in BAD_FOR_THE_BUILD
        ),  # a listing shows what it is given
    ],
)
def test_bad_entries_are_refused_with_one_clear_error_before_any_evaluation(net, case, owner):
    config_list, message = {**BAD, **BAD_FOR_THE_BUILD}[case]
    if owner == "available_layers":
        with pytest.raises(InvalidParameterError, match=message):
            available_layers(net, scheme=SCHEME, input_shape=SHAPE, config_list=config_list)
        return
    call = {
        "compress": lambda: compress(
            net, _never_called, target=0.5, config_list=config_list, **OPTIONS
        ),
        "build_eval_scores": lambda: build_eval_scores(
            net, _never_called, config_list=config_list, **OPTIONS
        ),
    }[owner]
    with pytest.raises(InvalidParameterError, match=message) as error:
        call()
    assert owner in str(error.value)


def test_a_pipeline_refuses_layer_names_a_later_stage_would_not_find(net):
    stages = [("spatial_svd", 0.9), ("weight_svd", 0.9)]
    with pytest.raises(InvalidParameterError, match="several stages"):
        compress_pipeline(
            net,
            _never_called,
            stages=stages,
            config_list=[{"op_names": ["conv2"], "max_ratio": 0.5}],
            **SETTINGS,
        )


def test_a_pipeline_excludes_a_named_layer_in_every_stage(net, evaluator):
    stages = [("spatial_svd", 0.9), ("weight_svd", 0.9)]
    config_list = [DEFAULT, {"op_names": ["head"], "exclude": True}]
    small, report = compress_pipeline(
        net,
        evaluator,
        stages=stages,
        config_list=config_list,
        **SETTINGS,
    )
    assert isinstance(small.head, torch.nn.Linear)
    assert all("head" not in stage.selection.choices for stage in report.stages if stage.selection)


def test_the_repair_stays_within_the_bounds(net, evaluator):
    # An impossible max_drop: the repair looks for layers to back off, but never past
    # max_ratio (it used to step past a forced layer's last option), and the fixed layer
    # stays fixed.
    _, report = compress(net, evaluator, target=0.55, config_list=BOUNDED, max_drop=0.0, **OPTIONS)
    assert report.repair is not None and report.selection is not None
    choices = report.selection.choices
    assert set(choices) == set(ALL)
    manual = manual_selection(net, {"conv2": 0.37}, scheme=SCHEME, input_shape=SHAPE)
    assert choices["conv2"].rank == manual.choices["conv2"].rank
    assert all(0.3 - 1e-9 <= c.kept_ratio <= 0.7 + 1e-9 for n, c in choices.items() if n != "conv2")
