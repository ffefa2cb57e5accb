"""Suffix-only evaluation gives the whole-model scores, and really skips the front."""

from __future__ import annotations

import copy
import json
import threading
import warnings

import pytest
import torch
from _fast_models import DataDependent, make_data, make_model
from torch import nn

from evaluators import NegativeLoss, TopKAccuracy
from greedy_compress.dictionary.build import build_eval_scores
from greedy_compress.dictionary.suffix import (
    SuffixScorer,
    default_workers,
    split_stages,
)
from greedy_compress.dictionary.suffix.stages import _call_candidate
from greedy_compress.errors import GraphTraceError, InvalidParameterError
from greedy_compress.model.swap import swapped
from greedy_compress.model.trace import trace_model

SHAPE = (1, 1, 8, 8)


def both_paths(model, evaluator, **options):
    """The dictionary built by whole-model evaluation and by the fast path; the fast build
    must not warn (a warning means it fell back)."""
    options = dict(input_shape=SHAPE, progress=False, **options)
    plain = build_eval_scores(model, evaluator, fast=False, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = build_eval_scores(model, evaluator, **options)
    return plain, fast


def assert_same_scores(plain, fast, tolerance=1e-6):
    assert fast.baseline == pytest.approx(plain.baseline, abs=tolerance)
    assert list(fast.layers) == list(plain.layers) and fast.is_complete
    for name, layer in plain.layers.items():
        other = fast.layers[name]
        assert [(e.asked_ratio, e.rank, e.cost) for e in other.entries] == [
            (e.asked_ratio, e.rank, e.cost) for e in layer.entries
        ]
        for a, b in zip(layer.entries, other.entries, strict=True):
            assert a.score is not None and b.score is not None
            assert abs(a.score - b.score) <= tolerance, (name, a.rank, a.score, b.score)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("kind", "scheme"),
    [
        ("resnet", "weight_svd"),
        ("resnet", "spatial_svd"),
        ("vgg", "weight_svd"),
        ("vgg", "spatial_svd"),
        ("mobilenet", "weight_svd"),
        ("torchvision", "weight_svd"),
        ("branch", "spatial_svd"),  # every layer: in-place writes inside a chained pass
    ],
)
@pytest.mark.parametrize("workers", [1, 2, 3])  # 2: three candidates, odd rounds are paired
def test_fast_scores_equal_whole_model_scores(kind, scheme, workers):
    model = make_model(kind)
    evaluator = NegativeLoss(make_data(), max_batches=2)  # a loss moves with every change
    plain, fast = both_paths(
        model, evaluator, scheme=scheme, candidates=[0.2, 0.6, 0.9], workers=workers
    )
    assert_same_scores(plain, fast)
    # the candidates really differ, so equal scores are not a coincidence
    assert len({e.score for layer in plain.layers.values() for e in layer.entries}) > 2


@pytest.mark.parametrize("workers", [1, 2])
def test_fast_accuracy_equals_whole_model_accuracy(workers):
    model = make_model("resnet")
    plain, fast = both_paths(
        model,
        TopKAccuracy(make_data(n=40, batch_size=16), k=3),
        scheme="weight_svd",
        workers=workers,
    )
    assert_same_scores(plain, fast)


class CountingCalls:
    """Counts forward calls of a module."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        module.register_forward_pre_hook(self._count)

    def _count(self, *_args) -> None:
        self.calls += 1


@pytest.mark.parametrize("pass_seconds", [0.0, float("inf")])
def test_the_front_of_the_network_runs_once_per_batch_and_pass(monkeypatch, pass_seconds):
    """With ``PASS_SECONDS`` 0 every layer gets its own pass over the data; with inf the
    first layer does (nothing is timed yet) and all the others share one."""
    from greedy_compress.dictionary import scoring

    monkeypatch.setattr(scoring, "PASS_SECONDS", pass_seconds)
    data = make_data(n=48, batch_size=16)  # 3 batches
    counts = {}
    for fast in (False, True):
        model = make_model("vgg")
        first, whole = CountingCalls(model.features[0]), CountingCalls(model)
        scores = build_eval_scores(
            model,
            NegativeLoss(data),
            scheme="weight_svd",
            candidates=[0.2, 0.4, 0.6],
            input_shape=SHAPE,
            progress=False,
            fast=fast,
        )
        counts[fast] = first.calls, whole.calls
    ranks = {name: len({e.rank for e in s.entries}) for name, s in scores.layers.items()}
    assert next(iter(ranks)) == "features.0" and sum(ranks.values()) > 2 * len(ranks)
    later = sum(ranks.values()) - ranks["features.0"]  # candidates that keep features.0
    passes = len(ranks) - 1 if pass_seconds == 0 else 1  # after the first layer's
    # Whole-model: every candidate runs the model on each of the 3 batches. Fast: the model's
    # own forward never runs per candidate, only once more to check the trace; the first conv
    # runs in that check (twice: model and trace) and once per batch in each later pass.
    assert counts[False][1] - counts[True][1] == 3 * sum(ranks.values()) - 1
    assert counts[False][0] - counts[True][0] == 3 * later - 2 - 3 * passes


def test_one_pass_over_several_layers_gives_each_layer_its_own_scores():
    model = make_model("resnet")
    evaluator = NegativeLoss(make_data(), max_batches=2)
    scorer = SuffixScorer(model, evaluator, torch.zeros(SHAPE), workers=2)
    names = ["layer2.0.conv2", "stem.0", "layer1.0.conv1", "fc"]  # not in graph order
    layers = []
    for name in names:
        module = model.get_submodule(name)
        noisy = copy.deepcopy(module)
        with torch.no_grad():
            noisy.weight.add_(torch.randn_like(noisy.weight))
        layers.append({1: {name: module}, 2: {name: noisy}})
    together = scorer.score_layers(layers)
    alone = [scorer.score(layer) for layer in layers]
    assert together == alone
    baseline = evaluator(model)
    for scores in together:
        assert scores[1] == pytest.approx(baseline, abs=1e-6) and scores[2] != scores[1]


def test_advancing_stage_by_stage_reaches_each_cut():
    model = make_model("torchvision")
    graph = trace_model(model).graph
    names = [["layer1.conv2"], ["layer1.conv1"], ["layer2.downsample.0"], ["fc"]]
    stages = split_stages(model, graph, names)
    chain = sorted(stages, key=lambda stage: stage.position)
    assert [s.start for s in chain] == [stages[i].start for i in (1, 0, 2, 3)]
    x = torch.randn(4, *SHAPE[1:])
    with torch.no_grad():
        expected = model(x)
        cut = chain[0].advance(x)
        for index, stage in enumerate(chain):
            if index:
                cut = stage.advance(*cut)
            candidate = {n: model.get_submodule(n) for n in names[stages.index(stage)]}
            assert torch.equal(stage.suffix(*cut, candidate), expected)


def test_the_model_is_left_as_it_was():
    model = make_model("torchvision").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules = dict(model.named_modules())
    build_eval_scores(
        model,
        NegativeLoss(make_data()),
        scheme="weight_svd",
        candidates=2,
        input_shape=SHAPE,
        progress=False,
    )
    assert model.training and all(m.training for m in model.modules())
    assert dict(model.named_modules()) == modules
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("workers", [1, 3])
def test_a_cut_value_written_in_place_is_protected(workers):
    """In BranchNet ``a.add_(b)`` after conv1 writes into bn0's output, computed before the
    cut: without protection the second candidate would read a + b1 instead of a (and, in
    threads, candidates side by side would read each other's writes)."""
    model = make_model("branch")
    evaluator = NegativeLoss(make_data())
    options = dict(scheme="spatial_svd", candidates=[0.1, 0.3, 0.5, 0.7, 0.9], workers=workers)
    plain, fast = both_paths(model, evaluator, ignore=["stem", "conv0"], **options)
    assert list(fast.layers) == ["conv1"]
    assert_same_scores(plain, fast)


def test_replacing_several_modules_cuts_at_the_earliest():
    """A candidate may replace several modules (channel pruning shrinks the producers too):
    the suffix starts at the first one."""
    model = make_model("vgg")
    graph = trace_model(model).graph
    (stage,) = split_stages(model, graph, [["features.4", "features.0", "classifier.1"]])
    assert stage.start == "features_0"
    called = [n.args[1] for n in stage.suffix.graph.nodes if n.target is _call_candidate]
    assert called[0] == "features.0" and set(called) == {"features.0", "features.4", "classifier.1"}


def test_a_module_fx_traced_into_is_retraced_as_a_leaf():
    model = make_model("mobilenet")
    evaluator = NegativeLoss(make_data())

    scorer = SuffixScorer(model, evaluator, torch.zeros(SHAPE))
    # replace a whole custom block (fx traces into it by default); features.3 is the first
    # inverted residual block, whose input and output shapes match
    block = "features.3"
    scores = scorer.score({1: {block: model.get_submodule(block)}, 2: {block: nn.Identity()}})
    baseline = evaluator(model)
    with swapped(model, {block: nn.Identity()}):
        without_block = evaluator(model)
    assert scores[1] == pytest.approx(baseline, abs=1e-6)
    assert scores[2] == pytest.approx(without_block, abs=1e-6) and without_block != baseline
    assert frozenset({block}) in scorer._graphs  # traced again with the block whole


def test_a_model_fx_cannot_trace_falls_back_with_one_warning():
    model = DataDependent().eval()
    evaluator = NegativeLoss(make_data())
    options = dict(scheme="weight_svd", candidates=[0.3, 0.6], input_shape=SHAPE, progress=False)
    with pytest.warns(RuntimeWarning, match=r"torch.fx cannot trace .*\(DataDependent\)") as record:
        fast = build_eval_scores(model, evaluator, **options)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    plain = build_eval_scores(model, evaluator, fast=False, **options)
    assert fast.to_dict() == plain.to_dict()


def test_a_plain_callable_evaluator_is_evaluated_on_whole_models(monkeypatch):
    from greedy_compress.dictionary.suffix import scorer as suffix

    def no_trace(*_args, **_kwargs):
        raise AssertionError("a plain callable evaluator must not trigger tracing")

    monkeypatch.setattr(suffix, "trace_model", no_trace)
    model = make_model("vgg")
    data = make_data()
    calls = []

    def evaluate(m: nn.Module) -> float:
        calls.append(1)
        return NegativeLoss(data)(m)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = build_eval_scores(
            model, evaluate, scheme="weight_svd", candidates=2, input_shape=SHAPE, progress=False
        )
    assert len(calls) == 1 + sum(len({e.rank for e in s.entries}) for s in scores.layers.values())


def test_fast_false_never_traces(monkeypatch):
    from greedy_compress.dictionary.suffix import scorer as suffix

    monkeypatch.setattr(suffix, "trace_model", lambda *a, **k: pytest.fail("traced"))
    build_eval_scores(
        make_model("vgg"),
        NegativeLoss(make_data()),
        scheme="weight_svd",
        candidates=2,
        input_shape=SHAPE,
        progress=False,
        fast=False,
    )


def test_a_bad_fast_value_is_refused():
    with pytest.raises(
        InvalidParameterError, match=r"'fast' parameter of build_eval_scores.*'yes'"
    ):
        build_eval_scores(
            make_model("vgg"), NegativeLoss(make_data()), input_shape=SHAPE, fast="yes"
        )


def test_a_trace_that_changes_the_output_is_refused():
    class Flaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1  # the trace freezes the first call's branch
            return self.lin(x) * (1 if self.calls == 1 else 2)

    with pytest.raises(GraphTraceError, match="does not reproduce"):
        trace_model(Flaky(), example=torch.ones(1, 4))


def test_each_layer_is_factorized_once(monkeypatch):
    calls = []
    svd = torch.linalg.svd

    def counting(*args, **kwargs):
        calls.append(1)
        return svd(*args, **kwargs)

    monkeypatch.setattr(torch.linalg, "svd", counting)
    for fast in (True, False):
        calls.clear()
        scores = build_eval_scores(
            make_model("resnet"),
            NegativeLoss(make_data()),
            scheme="spatial_svd",
            candidates=5,
            input_shape=SHAPE,
            progress=False,
            fast=fast,
        )
        assert len(calls) == len(scores.layers) > 1
        scored = sum(len({e.rank for e in s.entries}) for s in scores.layers.values())
        assert scored > 2 * len(calls)  # many candidates, one SVD per layer


def test_branchnet_cut_really_contains_the_in_place_relu():
    model = make_model("branch")
    (stage,) = split_stages(model, trace_model(model).graph, [["conv1"]])
    placeholders = [n.name for n in stage.suffix.graph.nodes if n.op == "placeholder"]
    assert placeholders == ["cut_0", "cut_1", "candidate"]  # the input x, bn0's output
    assert any(n.target == "add_" for n in stage.suffix.graph.nodes)


@pytest.mark.parametrize("workers", [1, 3])
def test_without_the_version_check_in_place_ops_would_corrupt_scores(monkeypatch, workers):
    """The equality tests above can fail: blind the in-place detection and they do."""
    from greedy_compress.dictionary.suffix import passes as suffix

    model = make_model("branch")
    evaluator = NegativeLoss(make_data())
    options = dict(
        scheme="spatial_svd",
        candidates=[0.2, 0.5, 0.8],
        ignore=["stem", "conv0"],
        workers=workers,
    )
    plain, fast = both_paths(model, evaluator, **options)
    assert_same_scores(plain, fast)
    monkeypatch.setattr(suffix, "_versions", lambda values: [() for _ in values])
    blind = build_eval_scores(model, evaluator, input_shape=SHAPE, progress=False, **options)
    with pytest.raises(AssertionError):
        assert_same_scores(plain, blind)


def test_a_batch_evaluator_with_its_own_call_is_evaluated_on_whole_models(monkeypatch):

    class Softened(NegativeLoss):
        def __call__(self, model: nn.Module) -> float:
            return super().__call__(model) / 2  # scores the fast path could not reproduce

    from greedy_compress.dictionary.suffix import scorer as suffix

    monkeypatch.setattr(suffix, "trace_model", lambda *a, **k: pytest.fail("traced"))
    model, evaluator = make_model("vgg"), Softened(make_data())
    scores = build_eval_scores(
        model, evaluator, scheme="weight_svd", candidates=2, input_shape=SHAPE, progress=False
    )
    assert scores.baseline == pytest.approx(NegativeLoss(make_data())(model) / 2)


def test_workers_run_candidates_in_several_threads_with_the_same_scores():
    model = make_model("resnet")
    threads_seen: set[int] = set()
    model.fc.register_forward_pre_hook(lambda *_: threads_seen.add(threading.get_ident()))
    options = dict(scheme="weight_svd", candidates=[0.2, 0.4, 0.6, 0.8], input_shape=SHAPE)
    evaluator = NegativeLoss(make_data(), max_batches=2)
    serial = build_eval_scores(model, evaluator, progress=False, workers=1, **options)
    assert threads_seen == {threading.get_ident()}
    threaded = build_eval_scores(model, evaluator, progress=False, workers=3, **options)
    assert len(threads_seen) > 2  # the main thread and pool threads
    assert_same_scores(serial, threaded, tolerance=0.0)


def test_torch_threads_are_restored_after_threaded_scoring():
    torch.set_num_threads(2)  # the fixture puts the count back afterwards
    build_eval_scores(
        make_model("vgg"),
        NegativeLoss(make_data()),
        scheme="weight_svd",
        candidates=[0.3, 0.6],
        input_shape=SHAPE,
        progress=False,
        workers=2,
    )
    assert torch.get_num_threads() == 2
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert seen == [2]  # what a new thread starts with was put back too


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2", True])
def test_a_bad_workers_value_is_refused(workers):
    with pytest.raises(InvalidParameterError, match="workers"):
        build_eval_scores(
            make_model("vgg"),
            NegativeLoss(make_data()),
            input_shape=SHAPE,
            progress=False,
            workers=workers,
        )


def test_default_workers_follow_torch_threads_on_cpu_only():
    torch.set_num_threads(2)
    assert default_workers(make_model("vgg")) == 2
    torch.set_num_threads(1)
    assert default_workers(make_model("vgg")) == 1
    assert default_workers(nn.Linear(2, 2, device="meta")) == 1  # not a CPU model


class AliasedCut(nn.Module):
    """``flat`` is a view of ``a``; after conv1 (the cut) ``a`` is written in place, which
    ``flat`` must see. Copying ``a`` alone for each candidate would hide the write."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv0(x)
        flat = a.flatten(1)
        a.add_(self.conv1(a))
        return self.fc(flat)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_write_into_memory_shared_by_two_cut_values_falls_back(workers):
    torch.manual_seed(0)
    model, evaluator = AliasedCut(), NegativeLoss(make_data())
    options = dict(scheme="weight_svd", candidates=[0.3, 0.7], input_shape=SHAPE, progress=False)
    plain = build_eval_scores(model, evaluator, fast=False, **options)
    with pytest.warns(RuntimeWarning, match="shares memory"):
        fast = build_eval_scores(model, evaluator, ignore=["fc"], workers=workers, **options)
    plain_conv1 = plain.layers["conv1"].entries
    assert [e.score for e in fast.layers["conv1"].entries] == [e.score for e in plain_conv1]


class WritesOnSecondBatch(nn.Module):
    """Wraps a conv; on its second call it doubles its input in place after using it: a
    write the first round cannot see."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv, self.calls = conv, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.conv(x)
        if self.calls == 2:
            x.mul_(2)
        return out


@pytest.mark.parametrize("workers", [1, 3])
def test_a_write_that_starts_in_a_later_batch_reruns_that_batch(workers):
    model = make_model("vgg")
    evaluator = NegativeLoss(make_data(n=48, batch_size=16))  # 3 batches
    name = "features.4"
    conv = model.get_submodule(name)
    scorer = SuffixScorer(model, evaluator, torch.zeros(SHAPE), workers=workers)
    expected = scorer.score({rank: {name: conv} for rank in (1, 2, 3)})
    writers = {rank: {name: WritesOnSecondBatch(conv)} for rank in (1, 2, 3)}
    assert scorer.score(writers) == expected  # without the rerun, later ones read 2x


def test_stages_whose_candidates_do_not_divide_evenly_are_paired_after_the_first_batch(
    monkeypatch,
):
    from greedy_compress.dictionary.suffix.workers import WorkerPool

    rounds: list[set] = []
    run = WorkerPool.run

    def recording_run(self, task, jobs):
        rounds.append({key[0] if isinstance(key, tuple) else None for key in jobs})
        return run(self, task, jobs)

    model = make_model("resnet")
    evaluator = NegativeLoss(make_data(n=48, batch_size=16))  # 3 batches
    options = dict(scheme="weight_svd", candidates=[0.2, 0.5, 0.8], input_shape=SHAPE)
    serial = build_eval_scores(model, evaluator, progress=False, workers=1, **options)
    monkeypatch.setattr(WorkerPool, "run", recording_run)
    paired = build_eval_scores(model, evaluator, progress=False, workers=2, **options)
    assert any(len(steps) == 2 for steps in rounds)  # two stages in one round
    assert_same_scores(serial, paired, tolerance=0.0)


class InterruptedLoss(NegativeLoss):
    """NegativeLoss whose ``batches`` raises KeyboardInterrupt in the middle of its
    ``stop_at``-th pass over the data (None: never)."""

    def __init__(self, loader, stop_at: int | None) -> None:
        super().__init__(loader)
        self.stop_at, self.passes = stop_at, 0

    def batches(self, model):
        self.passes += 1
        for index, batch in enumerate(super().batches(model)):
            if self.passes == self.stop_at and index == 1:
                raise KeyboardInterrupt
            yield batch


def test_a_build_interrupted_in_a_pass_keeps_earlier_passes_and_resumes(monkeypatch, tmp_path):
    """Passes: the baseline, the first layer alone, then all the others together."""
    from greedy_compress.dictionary import scoring

    monkeypatch.setattr(scoring, "PASS_SECONDS", float("inf"))
    model, data = make_model("vgg"), make_data()
    options = dict(scheme="weight_svd", candidates=[0.3, 0.6], input_shape=SHAPE, progress=False)
    reference = build_eval_scores(model, InterruptedLoss(data, None), **options)
    path = tmp_path / "scores.json"
    with pytest.raises(KeyboardInterrupt):
        build_eval_scores(model, InterruptedLoss(data, 3), scores_path=path, **options)
    assert list(json.loads(path.read_text())["layers"]) == ["features.0"]
    evaluator = InterruptedLoss(data, None)
    resumed = build_eval_scores(model, evaluator, scores_path=path, **options)
    # the baseline check; no first layer: one layer alone (to time it), then the rest together
    assert evaluator.passes == 3
    assert resumed.to_dict() == reference.to_dict()
