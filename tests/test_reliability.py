"""Issue 16, row by row: every case that gave a silent wrong answer or a raw Python error now
gives the right answer or one clear error (each test fails when its guard is removed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import greedy_compress as gc
from evaluators import NegativeLoss, TopKAccuracy
from greedy_compress.demo.models import DigitsCNN, TinyVGG
from greedy_compress.errors import (
    EvaluatorResultError,
    GreedyCompressError,
    InvalidParameterError,
    ModelInputError,
    NoCompressibleLayerError,
    ScoresFormatError,
    ScoresMismatchError,
    SelectionMismatchError,
    TargetUnreachableError,
)
from greedy_compress.schemes import FilterPruning
from greedy_compress.selection.optuna_search import optuna_search

SHAPE = (1, 1, 8, 8)
ROOT = Path(__file__).resolve().parents[1]


def _digits(n: int = 64, offset: int = 0, batch_size: int = 32) -> DataLoader:
    torch.manual_seed(offset)
    images = torch.rand(n, 1, 8, 8)
    labels = torch.randint(0, 10, (n,))
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size)


def _model() -> DigitsCNN:
    torch.manual_seed(0)
    return DigitsCNN(width=8).eval()


class Calls:
    """A plain evaluator counting its calls; ``name`` declares its identity."""

    def __init__(self, inner, name: str | None = "calls") -> None:
        self.inner, self.calls = inner, 0
        if name is not None:
            self.name = name

    def __call__(self, model: nn.Module) -> float:
        self.calls += 1
        return self.inner(model)


def _never(model: nn.Module) -> float:
    raise AssertionError("no evaluation may happen for this mistake")


OPTIONS = dict(scheme="weight_svd", candidates=3, input_shape=SHAPE, progress=False)


# Fingerprints that see the data ------------------------------------------------------


def test_a_dictionary_reused_with_other_data_is_refused(tmp_path):
    path, model = tmp_path / "scores.json", _model()
    gc.build_eval_scores(model, TopKAccuracy(_digits(offset=0)), scores_path=path, **OPTIONS)
    before = path.read_bytes()
    with pytest.raises(ScoresMismatchError, match=r"'evaluator_data'"):
        gc.build_eval_scores(model, TopKAccuracy(_digits(offset=1)), scores_path=path, **OPTIONS)
    assert path.read_bytes() == before  # left as it was


def _closure_evaluator(scale: float):
    loader = _digits()

    def evaluate(model: nn.Module) -> float:
        return scale * NegativeLoss(loader)(model)

    return evaluate


def test_closures_with_one_qualified_name_are_told_apart(tmp_path):
    path, model = tmp_path / "scores.json", _model()
    first, second = _closure_evaluator(1.0), _closure_evaluator(2.0)
    assert first.__qualname__ == second.__qualname__
    with pytest.warns(RuntimeWarning, match="plain callable"):  # (warned on reuse only)
        gc.build_eval_scores(model, first, scores_path=path, **OPTIONS)
        gc.build_eval_scores(model, first, scores_path=path, **OPTIONS)
    with pytest.raises(ScoresMismatchError, match=r"'evaluator'"):
        gc.build_eval_scores(model, second, scores_path=path, **OPTIONS)


def test_a_named_callable_on_other_data_is_caught_by_its_baseline(tmp_path):
    """A declared name is trusted, but the baseline is evaluated again on every reuse."""
    path, model = tmp_path / "scores.json", _model()
    gc.build_eval_scores(
        model, Calls(NegativeLoss(_digits(offset=0)), "val"), scores_path=path, **OPTIONS
    )
    other = Calls(NegativeLoss(_digits(offset=1)), "val")  # same name, other data
    with pytest.raises(ScoresMismatchError, match="scored the unchanged model"):
        gc.build_eval_scores(model, other, scores_path=path, **OPTIONS)
    assert other.calls == 1  # the baseline only


def test_two_lambda_criteria_get_their_own_dictionaries(tmp_path):
    path, model = tmp_path / "scores.json", _model()
    evaluator = NegativeLoss(_digits())
    by_norm = FilterPruning(criterion=lambda e: e.filters.norm(dim=1))
    by_minus_norm = FilterPruning(criterion=lambda e: -e.filters.norm(dim=1))
    assert by_norm.name == by_minus_norm.name  # both "filter_pruning_<lambda>"
    options = {**OPTIONS, "scheme": by_norm}
    gc.build_eval_scores(model, evaluator, scores_path=path, **options)
    with pytest.raises(ScoresMismatchError, match=r"'scheme_settings'"):
        gc.build_eval_scores(
            model, evaluator, scores_path=path, **{**options, "scheme": by_minus_norm}
        )


# Dictionary file integrity ---------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    path, model = tmp_path / "scores.json", _model()
    evaluator = Calls(NegativeLoss(_digits()))
    scores = gc.build_eval_scores(model, evaluator, scores_path=path, **OPTIONS)
    return path, model, evaluator, scores


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["layers"]["features.3"]["entries"][0].update(score=0.999),
        lambda d: d.update(baseline=0.5),
        lambda d: d["layers"]["features.3"]["entries"][0].update(rank=9999),
        lambda d: d["layers"]["features.3"]["entries"][0]["cost"].update(macs=1),
    ],
    ids=["score", "baseline", "rank", "cost"],
)
def test_a_hand_edited_dictionary_is_refused_unless_accepted(saved, edit):
    path, model, evaluator, _ = saved
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ScoresFormatError, match="edited after it was written"):
        gc.EvalScores.load(path)
    with pytest.raises(ScoresFormatError, match="edited after it was written"):
        gc.build_eval_scores(model, evaluator, scores_path=path, **OPTIONS)
    assert gc.EvalScores.load(path, accept_edits=True)  # the deliberate way in


def test_an_accepted_edit_of_a_rank_is_caught_against_the_model(saved):
    path, model, evaluator, _ = saved
    data = json.loads(path.read_text())
    data["layers"]["features.3"]["entries"][0]["rank"] = 9999
    path.write_text(json.dumps(data))
    gc.EvalScores.load(path, accept_edits=True).save(path)  # `greedy-compress scores accept`
    with pytest.raises(ScoresMismatchError, match=r"features\.3.*ranks and costs"):
        gc.build_eval_scores(model, evaluator, scores_path=path, **OPTIONS)
    edited = gc.EvalScores.load(path)
    choice = gc.LayerChoice(0.5, 9999, 0.9)
    selection = gc.select(edited, target=0.9)
    bad = selection.with_details()  # a selection the edited file could lead to
    bad = type(bad)(**{**bad.__dict__, "choices": {"features.3": choice}})
    with pytest.raises(SelectionMismatchError, match=r"rank for layer 'features\.3'.*\[1, \d+\]"):
        gc.apply_selection(model, bad)


def test_a_nan_literal_in_the_file_is_refused_clearly(saved):
    path, *_ = saved
    text = path.read_text().replace('"baseline": ', '"baseline": NaN, "was": ', 1)
    path.write_text(text)
    with pytest.raises(ScoresFormatError, match=r"not strict JSON.*NaN"):
        gc.EvalScores.load(path)


# Self-sufficient, validated selections -------------------------------------------------------


@pytest.mark.parametrize("rank", [10**9, -5, 0, 17, 1.5, True])
def test_a_selection_with_a_bad_rank_is_refused_before_anything_is_built(saved, rank):
    _, model, _, scores = saved
    selection = gc.select(scores, target=0.6)
    name = next(iter(selection.choices))
    choices = {**selection.choices, name: gc.LayerChoice(0.5, rank, 0.9)}
    bad = type(selection)(**{**selection.__dict__, "choices": choices})
    with pytest.raises(SelectionMismatchError, match=rf"rank for layer '{name}'.*\[1, \d+\]"):
        gc.apply_selection(model, bad)


def test_a_selection_for_another_model_is_refused(saved):
    _, _, _, scores = saved
    selection = gc.select(scores, target=0.6)
    torch.manual_seed(0)
    wider = DigitsCNN(width=16).eval()
    with pytest.raises(SelectionMismatchError, match="made for another model"):
        gc.apply_selection(wider, selection)
    fine_tuned = _model()
    with torch.no_grad():
        fine_tuned.classifier.weight.add_(0.01)  # same architecture, other weights: fine
    gc.apply_selection(fine_tuned, selection)


def test_a_channel_pruning_selection_rebuilds_with_no_data(tmp_path):
    """compress() records the kept channels; load_compressed then needs no calibration data
    and no example input (the README's rebuild recipe), also for a whole pipeline."""
    model = _model()
    loader = _digits()
    evaluator = NegativeLoss(loader)
    scheme = gc.get_scheme("channel_pruning").with_data(loader)
    small, report = gc.compress(
        model,
        evaluator,
        target=0.6,
        scheme=scheme,
        candidates=3,
        input_shape=SHAPE,
        progress=False,
    )
    selection = report.selection
    assert selection.details["replay"]  # kept channels per pruned layer
    selection.save(tmp_path / "selection.json")
    torch.save(small.state_dict(), tmp_path / "small.pt")
    again = gc.load_compressed(
        _model(), gc.Selection.load(tmp_path / "selection.json"), tmp_path / "small.pt"
    )
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(again(x), small(x))
    with pytest.raises(GreedyCompressError, match="does not exist"):
        gc.load_compressed(_model(), selection, tmp_path / "missing.pt")
    torch.save(DigitsCNN(width=8).state_dict(), tmp_path / "other.pt")
    with pytest.raises(GreedyCompressError, match="do not fit the model"):
        gc.load_compressed(_model(), selection, tmp_path / "other.pt")
    # recorded kept channels are checked: in range, distinct, as many as the rank
    name, entry = next(iter(selection.details["replay"].items()))
    kept = entry["kept"]
    for bad, pattern in [
        ([*kept[:-1], 10**6], r"indices must be in \[0, "),
        ([*kept[:-1], kept[0]], "distinct ints"),
        (kept[:-1], f"keeps {len(kept)} channels .* records {len(kept) - 1}"),
    ]:
        edited = selection.with_replay({name: {"kept": bad}})
        with pytest.raises(SelectionMismatchError, match=pattern):
            gc.load_compressed(_model(), edited, tmp_path / "small.pt")


def test_a_pipeline_rebuilds_from_its_stage_selections(tmp_path):
    model, loader = _model(), _digits()
    small, report = gc.compress_pipeline(
        model,
        NegativeLoss(loader),
        stages=[("spatial_svd", 0.8), ("channel_pruning", 0.8)],
        data=loader,
        candidates=3,
        input_shape=SHAPE,
        progress=False,
    )
    torch.save(small.state_dict(), tmp_path / "small.pt")
    stages = [stage.selection for stage in report.stages]
    again = gc.load_compressed(_model(), stages, tmp_path / "small.pt")
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(again(x), small(x))


# File system ----------------------------------------------------------------------------------


def test_a_symlinked_scores_path_updates_its_target(tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("{}")
    link.symlink_to(target)
    target.unlink()
    gc.build_eval_scores(_model(), NegativeLoss(_digits()), scores_path=link, **OPTIONS)
    assert link.is_symlink() and target.is_file()
    assert gc.EvalScores.load(target).is_complete


def test_a_read_only_location_reuses_a_complete_dictionary_and_refuses_an_incomplete_one(
    tmp_path, monkeypatch
):
    import greedy_compress._util.io as io
    import greedy_compress.dictionary.sharing as sharing

    path, model = tmp_path / "scores.json", _model()
    evaluator = Calls(NegativeLoss(_digits()))
    complete = gc.build_eval_scores(model, evaluator, scores_path=path, **OPTIONS)

    def read_only(*_args, **_kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(sharing.tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(io.tempfile, "mkstemp", read_only)
    assert gc.build_eval_scores(model, evaluator, scores_path=path, **OPTIONS) == complete
    evaluator.calls = 0
    with pytest.raises(GreedyCompressError, match=r"Cannot write the dictionary.*nothing was"):
        gc.build_eval_scores(model, evaluator, scores_path=tmp_path / "new.json", **OPTIONS)
    assert evaluator.calls == 0


@pytest.mark.parametrize(
    ("path", "pattern"),
    [(3, r"'scores_path'.*file path"), ("", r"'scores_path'"), (".", r"not a directory")],
)
def test_a_bad_scores_path_fails_before_any_work(path, pattern):
    with pytest.raises(InvalidParameterError, match=pattern):
        gc.build_eval_scores(_model(), _never, scores_path=path, **OPTIONS)
    with pytest.raises(InvalidParameterError, match=pattern):
        gc.compress(_model(), _never, target=0.5, scores_path=path, **OPTIONS)


_CONCURRENT = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from torch import nn
    sys.path.insert(0, {tests!r})
    from test_reliability import _digits, _model
    from evaluators import NegativeLoss
    from greedy_compress import build_eval_scores

    class Slow:
        name = "slow"
        def __init__(self):
            self.inner, self.calls = NegativeLoss(_digits()), 0
        def __call__(self, model):
            self.calls += 1
            time.sleep(0.05)  # long enough for the two builds to overlap
            return self.inner(model)

    evaluator = Slow()
    scores = build_eval_scores(_model(), evaluator, scheme="weight_svd", candidates=6,
                               input_shape=(1, 1, 8, 8), progress=False,
                               scores_path=sys.argv[1])
    print(json.dumps({{"calls": evaluator.calls, "layers": sorted(scores.layers)}}))
    """
)


def test_two_processes_on_one_scores_path_share_the_work(tmp_path):
    script = tmp_path / "build.py"
    script.write_text(_CONCURRENT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    alone = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "alone.json")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    single = json.loads(alone.stdout.splitlines()[-1])["calls"]
    shared = tmp_path / "shared.json"
    runs = [
        subprocess.Popen(
            [sys.executable, str(script), str(shared)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    results = [json.loads(run.communicate()[0].splitlines()[-1]) for run in runs]
    assert all(run.returncode == 0 for run in runs)
    # each process checks the baseline once; no candidate is scored twice
    assert sum(r["calls"] for r in results) == single + 1
    assert (
        results[0]["layers"]
        == results[1]["layers"]
        == json.loads(alone.stdout.splitlines()[-1])["layers"]
    )
    assert not shared.with_name("shared.json.claims.json").exists()


# Cheap checks first --------------------------------------------------------------------


def test_a_bad_finetune_callback_and_an_unreachable_target_fail_before_the_dictionary():
    with pytest.raises(InvalidParameterError, match=r"'finetune'.*Got 5"):
        gc.compress(_model(), _never, target=0.5, finetune=5, **OPTIONS)
    with pytest.raises(TargetUnreachableError, match="out of reach"):
        gc.compress(_model(), _never, target=0.05, **OPTIONS)


def test_an_input_shape_the_model_does_not_take_is_one_clear_error():
    with pytest.raises(ModelInputError, match=r"example input of shape \(1, 3, 8, 8\)"):
        gc.build_eval_scores(_model(), _never, **{**OPTIONS, "input_shape": (1, 3, 8, 8)})


@pytest.mark.parametrize("result", ["0.9", True, None, [0.5], torch.tensor([1.0, 2.0])])
def test_an_evaluator_must_return_a_number(result):
    with pytest.raises(EvaluatorResultError, match=r"must return a number"):
        gc.build_eval_scores(_model(), lambda m: result, **OPTIONS)


def test_numpy_and_tensor_scores_are_numbers():
    scores = gc.build_eval_scores(_model(), lambda m: np.float32(0.5), **OPTIONS)
    assert scores.baseline == 0.5
    scores = gc.build_eval_scores(_model(), lambda m: torch.tensor(0.25), **OPTIONS)
    assert scores.baseline == 0.25


# Optuna ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("storage", "pattern"),
    [
        ("DIR", r"'storage'.*not a directory"),
        ("GARBAGE", r"Cannot open the Optuna"),
        ("nosuchdb://x/y", r"Cannot open the Optuna storage"),
    ],
)
def test_bad_optuna_storages_are_clear_errors(saved, tmp_path, storage, pattern):
    _, model, evaluator, scores = saved
    if storage == "DIR":
        storage = str(tmp_path)
    elif storage == "GARBAGE":
        garbage = tmp_path / "garbage.log"
        garbage.write_text("this is not an optuna journal\n")
        storage = str(garbage)
    with pytest.raises(GreedyCompressError, match=pattern):
        optuna_search(
            model, evaluator, scores, target=0.6, n_trials=1, storage=storage, progress=False
        )


def test_an_optuna_study_is_not_joined_by_another_evaluator(saved, tmp_path):
    _, model, _, scores = saved
    journal = str(tmp_path / "study.log")
    first = optuna_search(
        model,
        NegativeLoss(_digits()),
        scores,
        target=0.6,
        n_trials=2,
        storage=journal,
        progress=False,
    )
    other = optuna_search(
        model,
        NegativeLoss(_digits(offset=3)),
        scores,
        target=0.6,
        n_trials=2,
        storage=journal,
        progress=False,
    )
    assert first.summary["study_name"] != other.summary["study_name"]
    with pytest.raises(GreedyCompressError, match="made for another dictionary, evaluator"):
        optuna_search(
            model,
            NegativeLoss(_digits(offset=3)),
            scores,
            target=0.6,
            n_trials=1,
            storage=journal,
            study_name=first.summary["study_name"],
            progress=False,
        )


# The bugs ------------------------------------------------------------------------------------


def test_repair_works_on_a_mixed_scheme_dictionary():
    model, evaluator = _model(), NegativeLoss(_digits())
    both = [
        gc.build_eval_scores(model, evaluator, **{**OPTIONS, "scheme": s})
        for s in ("weight_svd", "spatial_svd")
    ]
    mixed = gc.combine_scores(both)
    selection = gc.select(mixed, target=0.4, solver="knapsack")
    repaired, result = gc.repair_selection(model, evaluator, mixed, selection, max_drop=0.0)
    assert result.evaluations >= 1
    assert all(c.scheme in ("weight_svd", "spatial_svd") for c in repaired.choices.values())
    small = gc.apply_selection(model, repaired)
    x = torch.zeros(SHAPE)
    measured = gc.count_macs(small, x) / gc.count_macs(model, x)
    assert measured == pytest.approx(repaired.predicted_ratio) and measured <= 0.4


def test_repair_of_pruned_layers_keeps_the_exact_target():
    """The issue's VGG case: the repair must price its moves with the exact cost of
    compounding pruned layers, so the repaired selection is kept and meets the target."""
    torch.manual_seed(0)
    model = TinyVGG(in_channels=1, widths=(8, 16), image_size=8, hidden=16).eval()
    loader = _digits()
    scheme = gc.get_scheme("channel_pruning").with_data(loader)
    small, report = gc.compress(
        model,
        NegativeLoss(loader),
        target=0.5,
        scheme=scheme,
        candidates=4,
        input_shape=SHAPE,
        max_drop=0.0,
        progress=False,
    )
    x = torch.zeros(SHAPE)
    measured = gc.count_macs(small, x) / gc.count_macs(model, x)
    assert measured == pytest.approx(report.selection.predicted_ratio) and measured <= 0.5
    assert "Not used" not in report.repair.message


def test_no_compressible_layer_error_is_a_short_summary():
    model = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1, groups=4) for _ in range(52)])
    with pytest.raises(NoCompressibleLayerError) as caught:
        gc.build_eval_scores(model, _never, scheme="spatial_svd", input_shape=(1, 4, 8, 8))
    assert len(str(caught.value)) < 400
    assert "52 x grouped conv" in str(caught.value)
    assert len(caught.value.skipped) == 52


def test_float64_models_get_float64_example_inputs():
    model = _model().double()
    evaluator = NegativeLoss(
        DataLoader(
            TensorDataset(torch.rand(8, 1, 8, 8).double(), torch.randint(0, 10, (8,))), batch_size=8
        )
    )
    listing = gc.available_layers(model, scheme="filter_pruning_l2", input_shape=SHAPE)
    name = next(iter(listing.layers))
    selection = gc.manual_selection(
        model, {name: 0.5}, scheme="filter_pruning_l2", input_shape=SHAPE
    )
    assert gc.apply_selection(model, selection)(torch.zeros(SHAPE).double()).dtype == torch.float64
    gc.compress_pipeline(
        model,
        evaluator,
        stages=[("weight_svd", 0.8)],
        candidates=3,
        input_shape=SHAPE,
        progress=False,
    )


def test_selections_made_without_scores_have_no_predicted_score(saved):
    _, model, _, scores = saved
    vbmf = gc.recommend_vbmf(model, scheme="weight_svd", input_shape=SHAPE)
    manual = gc.manual_selection(model, {"features.3": 0.5}, scheme="weight_svd", input_shape=SHAPE)
    assert all(c.predicted_score is None for c in manual.choices.values())
    weight_scores = scores  # a weight_svd dictionary, like both selections
    assert gc.predicted_score(weight_scores, manual) is None
    assert gc.predicted_score(weight_scores, vbmf) is None


def test_a_multiplicity_a_layer_cannot_be_rounded_to_skips_it_with_a_reason():
    model = _model()  # features.0: 1 -> 8 channels, full weight-SVD rank min(8, 9) = 8
    scores = gc.build_eval_scores(
        model, NegativeLoss(_digits()), **{**OPTIONS, "candidates": 4}, multiplicity=16
    )
    assert "below the multiplicity 16" in scores.skipped["features.0"]
    # features.3: 8 -> 16 channels, weight-SVD rank 16 costs 16 * (72 + 16) > 72 * 16 MACs
    assert "keep 122% of its mac cost" in scores.skipped["features.3"]
    assert all(e.kept_ratio < 1 for layer in scores.layers.values() for e in layer.entries)
    with pytest.raises(InvalidParameterError, match=r"features.3.*keep 122% of its mac cost"):
        gc.manual_selection(
            model, {"features.3": 0.5}, scheme="weight_svd", input_shape=SHAPE, multiplicity=16
        )
    with pytest.raises(InvalidParameterError, match=r"'multiplicity'.*\[1, 65536\]"):
        gc.build_eval_scores(model, _never, **OPTIONS, multiplicity=10**6)


def test_tucker_rounds_both_core_ranks_to_the_multiplicity():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(24, 32, 3, padding=1), nn.Flatten(), nn.Linear(32 * 64, 2))
    scores = gc.build_eval_scores(
        model,
        lambda m: 1.0,
        scheme="tucker",
        candidates=5,
        input_shape=(1, 24, 8, 8),
        multiplicity=8,
        progress=False,
    )
    scheme = gc.get_scheme("tucker").with_multiplicity(8)
    for entry in scores.layers["0"].entries:
        r_in, r_out = scheme.core_ranks(scores.layers["0"].info, entry.rank)
        assert r_in % 8 == 0 and r_out % 8 == 0
    selection = gc.select(scores, target=0.6)
    small = gc.apply_selection(model, selection)
    x = torch.zeros(1, 24, 8, 8)
    assert gc.count_macs(small, x) / gc.count_macs(model, x) == pytest.approx(
        selection.predicted_ratio
    )
    core = small[0][1]
    assert core.in_channels % 8 == 0 and core.out_channels % 8 == 0


# The command line ----------------------------------------------------------------------------


def _cli(args, tmp_path) -> tuple[int, str]:
    run = subprocess.run(
        [sys.executable, "-m", "greedy_compress.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return run.returncode, run.stderr


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--input-shape", "1,x"], "positive ints"),
        (["--input-shape", "1,3,8,8"], "example input of shape"),
        (["--max-batches", "0"], "int >= 1"),
        (["--out", "afile"], "existing file"),
        (["--model", "broken.py:make"], "syntax error at line 1"),
    ],
)
def test_command_line_mistakes_are_one_line_with_exit_code_2(tmp_path, args, pattern):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "broken.py").write_text("def make(:\n")
    (tmp_path / "mine.py").write_text(
        textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        from greedy_compress.demo.models import DigitsCNN
        def make():
            return DigitsCNN(width=8)
        def data():
            return DataLoader(TensorDataset(torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))),
                              batch_size=8)
    """)
    )
    base = [
        "compress",
        "--model",
        "mine.py:make",
        "--data",
        "mine.py:data",
        "--no-progress",
        "--candidates",
        "3",
    ]
    code, stderr = _cli([*base, *args], tmp_path)
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert pattern in stderr


def test_the_command_line_sets_a_passive_omp_wait_policy_before_torch(tmp_path):
    probe = textwrap.dedent("""
        import os, sys
        os.environ.pop("OMP_WAIT_POLICY", None)
        seen = []
        class Spy:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" and not seen:
                    seen.append(os.environ.get("OMP_WAIT_POLICY"))
                return None
        sys.meta_path.insert(0, Spy())
        from greedy_compress.cli import main
        main(["scores", "show", "missing.json"])
        print(seen)
    """)
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.stdout.strip() == "['PASSIVE']", run.stderr


def test_a_pickled_weights_file_is_refused_without_running_it(tmp_path):
    """A real payload: unpickling it would create a file. The CLI must refuse it, and the
    payload must be live (torch.load with weights_only=False runs it)."""
    marker = tmp_path / "pwned"
    payload_file = tmp_path / "evil.pt"
    payload = textwrap.dedent(f"""
        import os, torch
        class Evil:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        torch.save({{"weight": Evil()}}, {str(payload_file)!r})
    """)
    subprocess.run([sys.executable, "-c", payload], check=True)
    (tmp_path / "mine.py").write_text(
        textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        from greedy_compress.demo.models import DigitsCNN
        def make():
            return DigitsCNN(width=8)
        def data():
            return DataLoader(TensorDataset(torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))),
                              batch_size=8)
    """)
    )
    code, stderr = _cli(
        [
            "compress",
            "--model",
            "mine.py:make",
            "--data",
            "mine.py:data",
            "--weights",
            "evil.pt",
            "--no-progress",
        ],
        tmp_path,
    )
    assert code == 2 and "--weights: cannot load" in stderr
    assert not marker.exists()
    torch.load(payload_file, weights_only=False)  # the control: the payload is real
    assert marker.exists()
