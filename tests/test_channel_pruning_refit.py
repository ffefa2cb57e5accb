"""Channel pruning's refit at scale: design rows gathered at the drawn positions are the
unfolded ones, the normal equations solved from the kept columns are those of the full
system, a planted linear dependence is reconstructed exactly, and a build that resumes each
layer's run from the previous cut builds the same model as one running every layer from the
input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import greedy_compress.schemes.channel_pruning as channel_pruning
from greedy_compress import apply_selection
from greedy_compress.graph import Segment
from greedy_compress.schemes import ChannelPruning
from greedy_compress.schemes._consumer_fit import (
    ConsumerFit,
    _least_squares,
    _least_squares_rows,
)
from greedy_compress.schemes.channel_pruning import _positions, design_matrix, design_rows
from greedy_compress.selection.manual import manual_selection
from tests.pruning_models import make_inputs, make_model, single_thread

pytestmark = pytest.mark.usefixtures(single_thread.__name__)


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Conv2d(3, 4, (3, 2), stride=(2, 1), dilation=(1, 2), padding=(2, 1)),
        nn.Conv2d(3, 4, 3, padding="same", padding_mode="reflect"),
        nn.Conv1d(3, 4, 5, stride=2, padding=1),
        nn.Linear(3, 4),
    ],
    ids=["conv3x3", "strided_dilated", "same_reflect", "conv1d", "linear"],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_design_rows_are_the_unfolded_rows_drawn(layer, channels_last):
    torch.manual_seed(0)
    shape = {nn.Conv2d: (2, 3, 9, 10), nn.Conv1d: (2, 3, 17), nn.Linear: (5, 3)}[type(layer)]
    x = torch.randn(shape)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    full = design_matrix(layer, x)  # itself checked against the layer in test_pruning.py
    assert full.shape[0] == _positions(layer, x) * x.shape[0]
    rows = torch.randperm(full.shape[0])[: full.shape[0] // 3].sort().values
    assert torch.equal(design_rows(layer, x, rows), full[rows])


def _duplicated_model() -> nn.Module:
    """conv2 reads 4 channels made as 2 pairs of identical ones; in each pair one reading
    weight is strong and one weak, so the ranking keeps channels 0 and 1 and conv2's
    output is a linear function of them: the refit must reproduce it exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)
    ).eval()
    with torch.no_grad():
        model[0].weight[2:] = model[0].weight[:2]
        model[0].bias[2:] = model[0].bias[:2]
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_mean[2:] = model[1].running_mean[:2]
        model[3].weight[:, :2] *= 10.0
    return model


@pytest.mark.parametrize("resumed", [True, False])
def test_a_planted_linear_dependence_is_reconstructed_exactly(resumed, monkeypatch):
    if not resumed:  # the hook-based run every layer once made (still the fallback)
        monkeypatch.setattr(channel_pruning, "can_run_to", lambda *_: False)
    model = _duplicated_model()
    data = [(make_inputs(16, seed=2), None)]
    held_out = make_inputs(8, seed=7)
    with torch.no_grad():
        expected = model(held_out)
    errors = {}
    for reconstruct in (False, True):
        scheme = ChannelPruning(data=data, num_reconstruction_samples=16, reconstruct=reconstruct)
        selection = manual_selection(
            model, {"3": 0.5}, scheme=scheme, example_input=make_inputs(1), ratio_of="rank"
        )
        small = apply_selection(model, selection, scheme=scheme, example_input=make_inputs(1))
        assert small[3].in_channels == 2
        with torch.no_grad():
            errors[reconstruct] = (small(held_out) - expected).abs().max().item()
    assert errors[False] > 0.1  # the weak channels mattered: the test can fail
    assert errors[True] < 1e-4 * expected.abs().max().item()
    folded = model[3].weight[:, :2] + model[3].weight[:, 2:]  # what the refit must find
    torch.testing.assert_close(small[3].weight, folded, atol=1e-4, rtol=1e-4)


def test_a_resumed_build_is_the_build_that_runs_every_layer_from_the_input(monkeypatch):
    model = make_model("resnet")
    example = make_inputs(2)
    data = [(make_inputs(16, seed=2), None)]

    def build() -> tuple[nn.Module, ChannelPruning]:
        scheme = ChannelPruning(data=data, num_reconstruction_samples=16)
        scheme.prepare(model, example_input=example)
        layers = list(scheme.prunable_layers())
        selection = manual_selection(
            model,
            dict.fromkeys(layers, 0.5),
            scheme=scheme,
            example_input=example,
            ratio_of="rank",
        )
        return apply_selection(model, selection, scheme=scheme, example_input=example), scheme

    starts: list[int] = []
    run_to = channel_pruning.run_to

    def recording(*args, **kwargs):
        cut = kwargs.get("cut")
        starts.append(cut.position if cut is not None else 0)
        return run_to(*args, **kwargs)

    monkeypatch.setattr(channel_pruning, "run_to", recording)
    resumed, scheme = build()
    assert scheme._cut is None  # dropped once the build ended
    assert len(starts) > 3 and sum(s > 0 for s in starts) >= len(starts) - 2  # resumed
    monkeypatch.setattr(channel_pruning, "can_run_to", lambda *_: False)
    plain, _ = build()
    for (name, a), (_, b) in zip(
        resumed.state_dict().items(), plain.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


def _refit(fit: ConsumerFit, keep: list[int]) -> torch.Tensor:
    pruned = nn.Linear(len(keep), 3, bias=False)
    fit.refit(pruned, keep)
    return pruned.weight.detach().double()


def test_later_refits_solve_sub_blocks_of_the_same_normal_equations():
    torch.manual_seed(0)
    layer = nn.Linear(6, 3, bias=False)
    design, targets = torch.randn(40, 6), torch.randn(40, 3)
    layout = (Segment(0, 6),)
    for keep in ([0, 2, 3], [1, 4]):
        fresh = ConsumerFit(layer, layout, 0, design, targets)
        first = _refit(fresh, keep)
        assert fresh.gram is None  # one refit: only its columns were multiplied
        reused = ConsumerFit(layer, layout, 0, design, targets)
        _refit(reused, [5])
        later = _refit(reused, keep)  # from the full system's sub-blocks
        assert reused.gram is not None
        truth = torch.linalg.lstsq(design[:, keep].double(), targets.double()).solution.T
        torch.testing.assert_close(first, truth, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(later, truth, rtol=1e-5, atol=1e-6)


def test_least_squares_falls_back_to_lu_when_cholesky_fails():
    gram = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)  # indefinite
    cross = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    solution = _least_squares(gram, cross)
    ridge = 1e-8 * torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close((gram + ridge) @ solution, cross)


@pytest.mark.parametrize("rows", [5, 40])
def test_least_squares_from_rows_solves_the_ridged_normal_equations(rows):
    # Fewer rows than columns: through the small rows x rows system, the same solution.
    generator = torch.Generator().manual_seed(3)
    design = torch.randn(rows, 12, generator=generator, dtype=torch.float64)
    targets = torch.randn(rows, 2, generator=generator, dtype=torch.float64)
    solution = _least_squares_rows(design, targets)
    ridge = 1e-8 * design.pow(2).sum() / 12
    normal = (design.T @ design + ridge * torch.eye(12, dtype=torch.float64)) @ solution
    torch.testing.assert_close(normal, design.T @ targets, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(solution, torch.linalg.pinv(design) @ targets, rtol=1e-5, atol=1e-6)
