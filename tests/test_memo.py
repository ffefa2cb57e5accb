"""Plain callables: the front memo gives the whole-model scores and really skips the front."""

from __future__ import annotations

import pytest
import torch
from _fast_models import make_data, make_model
from torch import nn

from greedy_compress.dictionary.build import build_eval_scores

SHAPE = (1, 1, 8, 8)


class PlainAccuracy:
    """A plain callable: no BatchEvaluator, no model.eval(); counts the model's calls."""

    name = "PlainAccuracy"

    def __init__(
        self, batches: list[tuple[torch.Tensor, torch.Tensor]], inference: bool = False
    ) -> None:
        self.batches, self.evaluations, self.inference = batches, 0, inference

    def __call__(self, model: nn.Module) -> float:
        self.evaluations += 1
        total = 0.0
        # under inference_mode the copies are inference tensors, as a loader's batches are
        # when it is iterated inside it (BatchEvaluator does)
        with torch.inference_mode() if self.inference else torch.no_grad():
            for inputs, targets in self.batches:
                # a fresh copy each time, as a DataLoader makes: equal, not the same tensor
                total += -nn.functional.cross_entropy(model(inputs.clone()), targets).item()
        return total


def _front_calls(model: nn.Module, name: str) -> list[int]:
    calls: list[int] = []
    model.get_submodule(name).register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", ["resnet", "vgg", "mobilenet", "torchvision"])
def test_a_plain_callable_gets_the_same_scores_with_the_front_run_once_per_layer(kind):
    model, data = make_model(kind), make_data()
    options = dict(scheme="weight_svd", candidates=4, input_shape=SHAPE, progress=False)
    plain_eval, fast_eval = PlainAccuracy(data), PlainAccuracy(data)
    first = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    plain_calls = _front_calls(model, first)
    plain = build_eval_scores(model, plain_eval, fast=False, **options)
    plain_count = len(plain_calls)
    fast = build_eval_scores(model, fast_eval, **options)
    assert fast_eval.evaluations == plain_eval.evaluations
    for name, layer in plain.layers.items():
        assert [e.score for e in fast.layers[name].entries] == [e.score for e in layer.entries]
    # The first conv is in every later layer's front: run once per batch per layer, not
    # once per batch per candidate.
    assert len(plain_calls) - plain_count < 0.6 * plain_count


def test_a_suffix_writing_into_the_front_values_ends_the_reuse():
    model, data = make_model("branch"), make_data()  # a.add_(b): a is a front value
    options = dict(scheme="weight_svd", candidates=[0.3, 0.6], input_shape=SHAPE, progress=False)
    plain = build_eval_scores(model, PlainAccuracy(data), fast=False, **options)
    fast = build_eval_scores(model, PlainAccuracy(data), **options)
    for name, layer in plain.layers.items():
        assert [e.score for e in fast.layers[name].entries] == [e.score for e in layer.entries]


def test_a_front_in_training_mode_is_never_reused():
    model, data = make_model("resnet").train(), make_data()  # BatchNorm in training mode
    options = dict(scheme="weight_svd", candidates=[0.3, 0.6], input_shape=SHAPE, progress=False)
    torch.manual_seed(0)
    plain_model = make_model("resnet").train()
    plain = build_eval_scores(plain_model, PlainAccuracy(data), fast=False, **options)
    torch.manual_seed(0)
    fast = build_eval_scores(model, PlainAccuracy(data), **options)
    for name, layer in plain.layers.items():
        assert [e.score for e in fast.layers[name].entries] == pytest.approx(
            [e.score for e in layer.entries]
        )
    for a, b in zip(plain_model.modules(), model.modules(), strict=True):
        if isinstance(a, nn.BatchNorm2d):  # the same running statistics updates
            torch.testing.assert_close(a.running_mean, b.running_mean)


def test_a_plain_callable_under_inference_mode_gets_the_same_scores():
    # The first layer's front is empty: the memo keeps the evaluator's own (inference) input.
    model, data = make_model("vgg"), make_data()
    options = dict(scheme="weight_svd", candidates=[0.3, 0.6], input_shape=SHAPE, progress=False)
    plain = build_eval_scores(model, PlainAccuracy(data, inference=True), fast=False, **options)
    fast = build_eval_scores(model, PlainAccuracy(data, inference=True), **options)
    for name, layer in plain.layers.items():
        assert [e.score for e in fast.layers[name].entries] == [e.score for e in layer.entries]


def test_a_layer_scored_at_one_candidate_skips_the_memo_and_keeps_its_score(monkeypatch):
    from greedy_compress.dictionary.suffix.memo import FrontMemo

    model, data = make_model("resnet"), make_data()
    options = dict(scheme="weight_svd", candidates=[0.5], input_shape=SHAPE, progress=False)
    plain = build_eval_scores(model, PlainAccuracy(data), fast=False, **options)
    entered: list[object] = []
    layer = FrontMemo.layer
    monkeypatch.setattr(
        FrontMemo, "layer", lambda self, names: entered.append(names) or layer(self, names)
    )
    fast = build_eval_scores(model, PlainAccuracy(data), **options)
    assert entered == []  # nothing to share a front with: no trace, no copies of its values
    assert fast == plain  # the same dictionary, entry for entry
