"""Measuring latency: interleaved rounds that cancel the machine's load, paired medians and
their spread, inputs at a batch size, thread settings, the deterministic timer, and latency
in costs."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
from torch import nn

from greedy_compress import Cost, GreedyCompressError
from greedy_compress.model.cost import count_macs
from greedy_compress.model.latency import (
    LatencyMeter,
    LatencyTimer,
    MacTimer,
    PairedLatency,
    WallClock,
    module_inputs,
)


class FixedTimer(LatencyTimer):
    """Each module has a fixed true latency (its ``ns`` attribute); a load that changes
    every round (every two calls) multiplies it, and every call is recorded."""

    name = "fixed"

    def __init__(self, loads: list[float]) -> None:
        self.loads, self.calls = loads, []

    def __call__(self, module: nn.Module, inputs: torch.Tensor) -> int:
        load = self.loads[(len(self.calls) // 2) % len(self.loads)]
        self.calls.append(module)
        return round(module.ns * load)


def _timed(ns: int) -> nn.Module:
    module = nn.Identity()
    module.ns = ns
    return module


def test_rounds_interleave_and_reverse_so_the_load_of_a_round_cancels():
    fast, slow = _timed(300), _timed(1000)
    timer = FixedTimer(loads=[1.0, 5.0, 1.0, 2.0, 9.0])  # a load that comes and goes
    meter = LatencyMeter(timer=timer, repeats=6, warmup=2)
    paired = meter.pair([(fast, torch.zeros(1))], [(slow, torch.zeros(1))])
    # Each round times both (warm-up first), the order reversed every other round.
    assert timer.calls == [fast, slow] * 2 + [fast, slow, slow, fast] * 3
    assert paired.ratio == pytest.approx(0.3) and paired.spread == pytest.approx(0.0)
    assert paired.repeats == 6


def test_blocks_timed_one_after_the_other_would_not_cancel_the_load():
    """The interleaving is what the cancellation above rests on: timed in blocks (all of
    one, then all of the other), the same load gives a wrong ratio."""
    fast, slow = _timed(300), _timed(1000)
    timer = FixedTimer(loads=[1.0, 5.0, 1.0, 2.0, 9.0])
    block = [timer(fast, torch.zeros(1)) for _ in range(6)]
    rest = [timer(slow, torch.zeros(1)) for _ in range(6)]
    assert PairedLatency.from_samples(block, rest).ratio != pytest.approx(0.3, abs=0.01)


def test_a_run_of_several_modules_is_timed_as_their_sum():
    timer = FixedTimer(loads=[1.0])
    meter = LatencyMeter(timer=timer, repeats=3, warmup=0)
    (samples,) = meter.sample([[(_timed(10), torch.zeros(1)), (_timed(32), torch.zeros(1))]])
    assert samples == [42, 42, 42]


def test_paired_statistics_are_the_median_ratio_and_half_the_interquartile_range():
    samples = [110, 95, 130, 90, 300, 100, 105]
    reference = [100, 100, 100, 100, 100, 100, 100]
    paired = PairedLatency.from_samples(samples, reference)
    ratios = np.array(samples) / np.array(reference)
    low, high = np.percentile(ratios, [25, 75])  # numpy's linear rule is "inclusive"
    assert paired.ratio == pytest.approx(float(np.median(ratios)))
    assert paired.spread == pytest.approx((high - low) / 2)
    assert paired.ns == 105 and paired.reference_ns == 100
    assert PairedLatency.from_dict(paired.to_dict()) == paired
    assert PairedLatency.from_samples([5], [10]).spread == 0.0


def test_inputs_repeat_the_example_rows_to_the_batch_size():
    example = torch.arange(6.0).reshape(3, 2)
    inputs = LatencyMeter(batch_size=7).inputs(example)
    assert inputs.shape == (7, 2)
    assert torch.equal(inputs[3:6], example) and torch.equal(inputs[6], example[0])
    assert LatencyMeter().inputs(example) is example


def test_threads_are_set_while_timing_and_restored():
    seen = []

    class ThreadsTimer(LatencyTimer):
        name = "threads"

        def __call__(self, module, inputs):
            seen.append(torch.get_num_threads())
            return 1

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    LatencyMeter(timer=ThreadsTimer(), repeats=2, warmup=1, threads=wanted).sample(
        [[(nn.Identity(), torch.zeros(1))]]
    )
    assert set(seen) == {wanted} and torch.get_num_threads() == before


def test_modules_are_timed_in_eval_mode_without_autograd_and_keep_their_mode():
    states = []

    class ModeTimer(LatencyTimer):
        name = "mode"

        def __call__(self, module, inputs):
            states.append((module.training, torch.is_inference_mode_enabled()))
            return 1

    net = nn.Sequential(nn.Dropout()).train()
    LatencyMeter(timer=ModeTimer(), repeats=1, warmup=0).sample([[(net, torch.zeros(1))]])
    assert states == [(False, True)] and net.training


def test_the_mac_timer_is_the_flop_count_plus_a_cost_per_module():
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    inputs = torch.zeros(5, 2, 8, 8)
    timer = MacTimer(ns_per_mac=2.0, ns_per_module=7)
    assert timer(net, inputs) == 2 * count_macs(net, inputs) + 7 * 4
    assert timer(net, inputs) == timer(net, inputs)  # deterministic (and cached)
    assert timer(net[0], inputs) == 2 * 5 * 4 * 2 * 9 * 36 + 7
    assert "ns_per_mac=2" in timer.name


def test_the_wall_clock_measures_positive_times():
    meter = LatencyMeter(timer=WallClock(), repeats=3, warmup=1)
    paired = meter.compare(nn.Linear(8, 8), nn.Linear(8, 8), torch.zeros(4, 8))
    assert paired.ns > 0 and paired.reference_ns > 0 and paired.ratio > 0
    assert paired.spread >= 0 and paired.repeats == 3


def test_module_inputs_are_what_each_module_receives():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    inputs = torch.randn(5, 4)
    seen = module_inputs(net, inputs, ["0", "2"])
    assert torch.equal(seen["0"], inputs)
    assert torch.allclose(seen["2"], torch.relu(net[0](inputs)))
    unused = nn.ModuleDict({"used": nn.Linear(4, 4), "unused": nn.Linear(4, 4)})
    unused.forward = lambda x: unused["used"](x)
    with pytest.raises(GreedyCompressError, match=r"\['unused'\] are not called"):
        module_inputs(unused, inputs, ["used", "unused"])


def test_a_meter_describes_what_its_latencies_depend_on():
    described = LatencyMeter(timer=MacTimer(), batch_size=8, threads=1).describe(torch.zeros(2, 3))
    assert described["batch_size"] == 8 and described["threads"] == 1
    assert described["torch"] == torch.__version__ and described["device"].startswith("cpu")
    assert described["timer"] == MacTimer().name and described["repeats"] == 15


def test_costs_carry_latency_only_when_measured():
    plain, timed = Cost(10, 2), Cost(10, 2, latency_ns=500)
    assert plain.to_dict() == {"macs": 10, "params": 2, "bits": 64, "bops": 10240}
    assert repr(plain) == "Cost(macs=10, params=2, bits=64, bops=10240)"  # no latency_ns
    assert Cost.from_dict(timed.to_dict()) == timed and Cost.from_dict(plain.to_dict()) == plain
    assert timed.get("latency") == 500 and timed.get("mac") == 10
    assert (timed - Cost(4, 1, latency_ns=200)).latency_ns == 300
    assert (plain + plain).latency_ns is None and (timed + plain).latency_ns == 500
    with pytest.raises(GreedyCompressError, match="no measured latency"):
        plain.get("latency")


def test_median_of_an_even_count_is_the_midpoint():
    """The medians of a meter are statistics.median (midpoint for an even count)."""
    paired = PairedLatency.from_samples([1, 3], [1, 1])
    assert paired.ratio == statistics.median([1.0, 3.0]) == 2.0
