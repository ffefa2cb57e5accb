from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from evaluators import NegativeLoss, TopKAccuracy


class Recorder(nn.Module):
    """Identity that records the grad/inference mode and training flag it ran with."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.is_inference_mode_enabled(), self.training))
        return x


LOGITS = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
LABELS = torch.tensor([1, 1, 0, 2])


def test_top1_and_top2_accuracy():
    loader = [(LOGITS, LABELS)]
    assert TopKAccuracy(loader)(nn.Identity()) == 0.25
    assert TopKAccuracy(loader, k=2)(nn.Identity()) == 0.5


def test_accuracy_accumulates_over_batches_and_honours_max_batches():
    loader = [(LOGITS[:2], LABELS[:2]), (LOGITS[2:], LABELS[2:]), (LOGITS[:1], LABELS[:1])]
    assert TopKAccuracy(loader)(nn.Identity()) == 2 / 5
    assert TopKAccuracy(loader, max_batches=1)(nn.Identity()) == 0.5


def test_negative_loss_is_minus_the_sample_weighted_mean():
    loader = [(LOGITS[:1], LABELS[:1]), (LOGITS[1:], LABELS[1:])]
    expected = -nn.functional.cross_entropy(LOGITS, LABELS).item()
    assert NegativeLoss(loader)(nn.Identity()) == pytest.approx(expected)


def test_evaluation_runs_in_eval_and_inference_mode_and_restores_training():
    model = Recorder().train()
    TopKAccuracy([(LOGITS, LABELS)])(model)
    assert model.seen == [(True, False)]
    assert model.training


def test_training_state_is_restored_even_when_the_model_fails():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        TopKAccuracy([(LOGITS, LABELS)])(model)
    assert model.training


def test_dict_batches_are_accepted_and_bad_batches_explained():
    assert TopKAccuracy([{"inputs": LOGITS, "targets": LABELS}])(nn.Identity()) == 0.25
    with pytest.raises(TypeError, match=r"\(inputs, targets\) pair"):
        TopKAccuracy([LOGITS])(nn.Identity())


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"max_batches": 0}, {"max_batches": 1.5}])
def test_bad_parameters_are_named(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"'{name}'"):
        TopKAccuracy([], **kwargs)


def test_empty_loader_is_an_error_not_a_nan():
    with pytest.raises(ValueError, match="empty"):
        TopKAccuracy([])(nn.Identity())


def test_names_identify_the_settings():
    assert TopKAccuracy([], k=5).name == "TopKAccuracy(k=5, max_batches=None)"
    assert "cross_entropy" in NegativeLoss([]).name
    assert not math.isnan(NegativeLoss([(LOGITS, LABELS)])(nn.Identity()))


def test_the_evaluators_package_never_imports_greedy_compress():
    code = "import sys, evaluators; print('greedy_compress' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_batches_yields_what_the_evaluator_scores_on():
    loader = [(torch.full((2, 3), float(i)), torch.tensor([i, i])) for i in range(4)]
    batches = list(TopKAccuracy(loader, max_batches=3).batches(torch.nn.Linear(3, 3)))
    assert [int(targets[0]) for _, targets in batches] == [0, 1, 2]
    assert all(torch.equal(inputs, loader[i][0]) for i, (inputs, _) in enumerate(batches))
