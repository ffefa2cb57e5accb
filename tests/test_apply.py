from __future__ import annotations

import copy

import pytest
import torch

from greedy_compress.apply import apply_selection, load_compressed
from greedy_compress.demo.run import save_weights
from greedy_compress.dictionary.build import build_eval_scores
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.cost import measure_cost
from greedy_compress.selection import GreedySolver, LayerChoice, Selection


@pytest.fixture
def selection(tiny_net, distance_evaluator):
    scores = build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="weight_svd",
        candidates=4,
        input_shape=(1, 1, 8, 8),
        progress=False,
    )
    return GreedySolver().solve(scores, target=0.5)


def test_apply_builds_a_smaller_model_and_leaves_the_original(tiny_net, selection):
    chosen = selection
    original_state = copy.deepcopy(tiny_net.state_dict())
    compressed = apply_selection(tiny_net, chosen)
    x = torch.zeros(1, 1, 8, 8)
    measured = measure_cost(compressed, x).macs / measure_cost(tiny_net, x).macs
    assert measured == pytest.approx(chosen.predicted_ratio)
    assert measured <= 0.5
    for key, value in tiny_net.state_dict().items():
        assert torch.equal(value, original_state[key])


def test_finetune_is_called_after_each_layer_in_order(tiny_net, selection):
    chosen = selection
    calls = []

    def finetune(model, name):
        calls.append((name, type(model.get_submodule(name)).__name__))

    apply_selection(tiny_net, chosen, finetune=finetune)
    assert calls == [(name, "Sequential") for name in chosen.choices]


def test_a_saved_model_is_rebuilt_exactly(tiny_net, selection, tmp_path):
    chosen = selection
    compressed = apply_selection(tiny_net, chosen)
    with torch.no_grad():  # stand-in for fine-tuning: weights differ from a fresh SVD
        for p in compressed.parameters():
            p.add_(0.01)
    save_weights(compressed, tmp_path / "w.pt")
    chosen.save(tmp_path / "sel.json")
    rebuilt = load_compressed(
        type(tiny_net)(), Selection.load(tmp_path / "sel.json"), tmp_path / "w.pt"
    )
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(rebuilt(x), compressed(x))


def test_a_selection_for_another_model_is_refused(tiny_net):
    bad = Selection(
        scheme="weight_svd",
        solver="manual",
        cost_metric="mac",
        target=0.5,
        predicted_ratio=0.5,
        choices={"missing": LayerChoice(0.5, 2, 0.0)},
    )
    with pytest.raises(GreedyCompressError, match="'missing'"):
        apply_selection(tiny_net, bad)
