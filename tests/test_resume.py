"""Resumable runs of a traced model (greedy_compress.model.resume): the inputs a run hands
over are those of a plain run of the model as it is now, whether it starts from the input or
from the previous run's cut, and a change before the cut makes it start over."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from greedy_compress.model.resume import can_run_to, run_to
from greedy_compress.model.trace import trace_model


class _Net(nn.Module):
    """Conv, BN, in-place ReLU, a residual add, a second conv: live values at every cut."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ELU(inplace=True)  # not idempotent: running it twice shows
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv1(x))
        w = self.conv2(self.act(y[:, :]))  # modifies y through a view of it
        return self.conv3(torch.relu(w + y))


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = _Net().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
    return net


SAMPLES = torch.randn(7, 2, 5, 5, generator=torch.Generator().manual_seed(1))


def _inputs(net, wanted, **kwargs):
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in wanted}
    cut = run_to(
        trace_model(net),
        net,
        SAMPLES,
        wanted,
        lambda name, first, x: seen[name].append(x.clone()),
        batch_size=3,
        **kwargs,
    )
    return {name: torch.cat(found) for name, found in seen.items()}, cut


def _expected(net, wanted):
    """Each module's input in a plain run, in the same batches (copied when the module
    sees it: the net modifies some values in place afterwards)."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in wanted}
    handles = [
        net.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, name=name: seen[name].append(args[0].clone())
        )
        for name in wanted
    ]
    with torch.no_grad():
        for start in range(0, len(SAMPLES), 3):
            net(SAMPLES[start : start + 3])
    for handle in handles:
        handle.remove()
    return {name: torch.cat(found) for name, found in seen.items()}


def test_a_run_from_the_input_hands_over_each_modules_input():
    net = _net()
    got, cut = _inputs(net, ["conv2", "conv3"])
    assert cut is None  # no changes announced: nothing kept
    for name, x in _expected(net, ["conv2", "conv3"]).items():
        torch.testing.assert_close(got[name], x, rtol=0, atol=0)


def test_a_run_from_the_cut_sees_the_changes_made_after_it():
    net = _net()
    _, cut = _inputs(net, ["conv2"], changes=["conv2"])
    assert cut is not None and len(cut.values) == 3  # one per batch
    position = cut.position
    with torch.no_grad():
        net.conv2 = nn.Conv2d(4, 4, 3, padding=1)  # changed after the cut: still valid
    got, next_cut = _inputs(net, ["conv3"], changes=["conv3"], cut=cut)
    torch.testing.assert_close(got["conv3"], _expected(net, ["conv3"])["conv3"], rtol=0, atol=0)
    assert next_cut is not None and next_cut.position > position


def test_the_cut_copies_what_later_nodes_modify_in_place():
    # The cut before the ELU holds y and a view of it, which the ELU modifies after the
    # cut: a second run from the cut must see them as they were there, still one tensor.
    net = _net()
    _, cut = _inputs(net, ["conv3"], changes=["act"])
    assert cut is not None
    got, _ = _inputs(net, ["conv3"], cut=cut)
    torch.testing.assert_close(got["conv3"], _expected(net, ["conv3"])["conv3"], rtol=0, atol=0)


@pytest.mark.parametrize("change", ["replace", "in_place", "buffer"])
def test_a_change_before_the_cut_makes_the_run_start_from_the_input(change):
    net = _net()
    _, cut = _inputs(net, ["conv2"], changes=["conv2"])
    assert cut is not None
    with torch.no_grad():
        if change == "replace":
            net.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        elif change == "in_place":
            net.conv1.weight.mul_(2.0)
        else:
            net.bn.running_var.add_(1.0)
    got, _ = _inputs(net, ["conv3"], changes=["conv3"], cut=cut)
    torch.testing.assert_close(got["conv3"], _expected(net, ["conv3"])["conv3"], rtol=0, atol=0)


def test_runs_need_one_input_and_modules_called_once():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(self.layer(x))

    traced = trace_model(Twice())
    assert not can_run_to(traced, ["layer"])
    assert not can_run_to(trace_model(_net()), ["missing"])
    assert can_run_to(trace_model(_net()), ["conv2", "conv3"])
    with pytest.raises(ValueError, match="exactly once"):
        run_to(traced, Twice(), torch.zeros(1, 2), ["layer"], lambda *_: None)
