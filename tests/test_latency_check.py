"""Latency targets end to end: the combined model measured, the selection repaired when the
layers interact, the report's measured ratio (for latency targets, and on request for MAC
targets), and one real-timing run that checks structure only."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from tiny import TinyNet

from greedy_compress import (
    EvalScores,
    InvalidParameterError,
    TargetUnreachableError,
    build_eval_scores,
    build_report,
    compress,
    predicted_score,
    recommend_vbmf,
    select,
)
from greedy_compress.model.latency import LatencyMeter, MacTimer, WallClock
from greedy_compress.selection import (
    asked_target,
    check_latency,
    layer_options,
    meet_latency,
    reachable_ratio,
)

SHAPE = (1, 1, 8, 8)
PENALTY = 8_000  # ns per factorized layer, only in the whole model


class Interacting(MacTimer):
    """MacTimer, but a whole network runs ``PENALTY`` ns slower per factorized layer it
    holds (say its memory traffic): timed alone, no layer shows it, so the dictionary's
    additive prices are optimistic for the combined model."""

    def __call__(self, module, inputs):
        base = super().__call__(module, inputs)
        if not isinstance(module, TinyNet):
            return base
        factorized = sum(isinstance(m, torch.nn.Sequential) for m in module.modules())
        return base + PENALTY * factorized


def options(timer, **more):
    return {
        "cost": "latency",
        "scheme": "weight_svd",
        "candidates": 8,
        "input_shape": SHAPE,
        "progress": False,
        "latency_timer": timer,
        "latency_repeats": 3,
        "latency_threads": 1,
        **more,
    }


def measured_ratio(timer, small, model):
    return LatencyMeter(timer=timer, repeats=1).compare(small, model, torch.zeros(SHAPE)).ratio


def test_a_selection_that_misses_when_measured_is_repaired_until_it_meets(
    tiny_net, distance_evaluator
):
    timer = Interacting()
    small, report = compress(tiny_net, distance_evaluator, target=0.6, **options(timer))
    check = report.latency
    assert check is not None and check.target == 0.6
    first, last = check.rounds[0], check.rounds[-1]
    assert first.asked_target == 0.6 and first.predicted_ratio <= 0.6
    assert first.measured.ratio > 0.6 and not first.met  # the layers interact
    assert last.met and len(check.rounds) >= 2
    asked = [step.asked_target for step in check.rounds]
    assert asked == sorted(asked, reverse=True)
    # The model returned is the one that met the target, measured independently.
    assert measured_ratio(timer, small, tiny_net) == pytest.approx(check.ratio)
    assert check.ratio <= 0.6
    assert report.achieved_ratio == check.ratio and check.met
    selection = report.selection
    assert selection.target == 0.6 and asked_target(selection) == last.asked_target < 0.6
    assert selection.details["latency_repaired"] is True
    text = report.to_table()
    assert "repair round" in text and "target 0.6 met" in text
    json.dumps(report.to_dict(), allow_nan=False)
    assert report.model_after.latency_ns == check.measured.ns


def test_without_repair_rounds_the_check_reports_the_miss(tiny_net, distance_evaluator):
    timer = Interacting()
    scores = build_eval_scores(tiny_net, distance_evaluator, **options(timer))
    selection = select(scores, target=0.6)
    meter = LatencyMeter(timer=timer, repeats=3)
    kept, check = meet_latency(
        tiny_net,
        scores,
        selection,
        solve=lambda asked: select(scores, target=asked),
        meter=meter,
        example=torch.zeros(SHAPE),
        max_rounds=1,
    )
    assert kept == selection and check.met is False and "missed" in check.message()
    with pytest.raises(InvalidParameterError, match="a selection for cost='latency'"):
        meet_latency(
            tiny_net,
            scores,
            select(scores, target=0.6, cost="mac"),
            solve=select,
            meter=meter,
            example=torch.zeros(SHAPE),
        )


def test_when_nothing_cheaper_is_left_the_miss_is_measured_once(tiny_net, distance_evaluator):
    """At a target the cheapest selection barely meets in prediction, asking for less gives
    the same selection: it is not built and timed again, and the check reports the miss."""
    timer = Interacting()
    scores = build_eval_scores(tiny_net, distance_evaluator, **options(timer))
    target = reachable_ratio(scores, cost="latency") * 1.001
    kept, check = meet_latency(
        tiny_net,
        scores,
        select(scores, target=target),
        solve=lambda asked: select(scores, target=asked),
        meter=LatencyMeter(timer=timer, repeats=3),
        example=torch.zeros(SHAPE),
    )
    assert len(check.rounds) == 1 and check.met is False and "missed" in check.message()
    assert kept.target == target


def test_asking_for_less_goes_on_while_the_solver_answers_the_same_choices(
    tiny_net, distance_evaluator
):
    """A solver whose first answer for less is the selection already timed (candidates with
    gaps): it is asked again for less, without timing the same model twice."""
    timer = Interacting()
    scores = build_eval_scores(tiny_net, distance_evaluator, **options(timer))
    first = select(scores, target=0.6)
    asked = []

    def sticky(target):
        asked.append(target)
        return first if len(asked) == 1 else select(scores, target=target)

    kept, check = meet_latency(
        tiny_net,
        scores,
        first,
        solve=sticky,
        meter=LatencyMeter(timer=timer, repeats=3),
        example=torch.zeros(SHAPE),
    )
    assert len(asked) >= 2 and asked[1] < asked[0] < first.predicted_ratio
    assert len(check.rounds) >= 2 and check.rounds[1].asked_target == asked[1]
    assert check.met and kept.choices != first.choices


def test_an_unreachable_latency_target_fails_once_measured_before_any_scoring(
    tmp_path, tiny_net, distance_evaluator
):
    path = tmp_path / "scores.json"
    reachable = reachable_ratio(
        build_eval_scores(tiny_net, distance_evaluator, **options(MacTimer())), cost="latency"
    )
    calls = distance_evaluator.calls
    with pytest.raises(TargetUnreachableError, match=f"{reachable:.4f}"):
        compress(
            tiny_net,
            distance_evaluator,
            target=reachable * 0.9,
            scores_path=path,
            **options(MacTimer()),
        )
    assert distance_evaluator.calls - calls == 1  # the baseline only
    assert EvalScores.load(path, resuming=True).latency is not None  # the timing is kept


def test_an_exact_additive_prediction_needs_no_repair(tiny_net, distance_evaluator):
    timer = MacTimer()
    _, report = compress(tiny_net, distance_evaluator, target=0.6, **options(timer))
    check = report.latency
    assert len(check.rounds) == 1 and check.met and not check.repaired
    assert check.ratio == pytest.approx(report.predicted_ratio)
    assert "latency_asked_target" not in report.selection.details


def test_the_score_repair_keeps_the_budget_the_latency_repair_asked_for(
    tiny_net, distance_evaluator
):
    """``max_drop`` backs layers off and pays elsewhere within the budget: after a latency
    repair that budget is the asked target, not the target, or the repair would undo it."""
    timer = Interacting()
    small, report = compress(
        tiny_net, distance_evaluator, target=0.6, max_drop=0.0, **options(timer)
    )
    selection = report.selection
    asked = asked_target(selection)
    assert report.latency.repaired and asked < 0.6
    moves = [step for step in report.repair.steps if step.action.startswith("back off")]
    assert moves  # it tried to back layers off, and priced each within the asked budget
    assert all(step.predicted_ratio <= asked + 1e-12 for step in moves)
    assert selection.predicted_ratio <= asked + 1e-12
    assert report.latency.ratio == pytest.approx(measured_ratio(timer, small, tiny_net))


def test_a_mac_target_reports_the_measured_latency_on_request(tiny_net, distance_evaluator):
    timer = MacTimer()
    mac = {"input_shape": SHAPE, "progress": False, "candidates": 4, "latency_timer": timer}
    small, report = compress(tiny_net, distance_evaluator, target=0.5, measure_latency=True, **mac)
    check = report.latency
    assert check.target is None and check.met is None and "on request" in check.message()
    assert check.ratio == pytest.approx(measured_ratio(timer, small, tiny_net))
    assert report.achieved_ratio <= 0.5  # still the MAC ratio
    _, plain = compress(tiny_net, distance_evaluator, target=0.5, **mac)
    assert plain.latency is None and "latency" not in plain.to_table()


def test_a_latency_report_needs_the_measurement(tiny_net, distance_evaluator):
    scores = build_eval_scores(tiny_net, distance_evaluator, **options(MacTimer()))
    selection = select(scores, target=0.6)
    small = tiny_net  # the check comes first
    with pytest.raises(InvalidParameterError, match="'latency' parameter of build_report"):
        build_report(
            tiny_net,
            small,
            scores=scores,
            selection=selection,
            example_input=torch.zeros(SHAPE),
            final_score=0.0,
        )
    meter = LatencyMeter(timer=MacTimer(), repeats=1)
    check = check_latency(tiny_net, tiny_net, example=torch.zeros(SHAPE), meter=meter, target=0.6)
    report = build_report(
        tiny_net,
        small,
        scores=scores,
        selection=selection,
        example_input=torch.zeros(SHAPE),
        final_score=0.0,
        latency=check,
    )
    assert report.achieved_ratio == 1.0 and check.met is False


def test_real_timing_gives_a_complete_measurement(tiny_net, distance_evaluator):
    """The wall clock on this machine: structure only, never a speed (``multiplicity="auto"``
    with a MAC target drops nothing, whatever the machine measures)."""
    settings = {
        "scheme": "weight_svd",
        "candidates": 3,
        "input_shape": SHAPE,
        "progress": False,
        "multiplicity": "auto",
        "latency_repeats": 3,
        "latency_batch_size": 2,
    }
    scores = build_eval_scores(tiny_net, distance_evaluator, **settings)
    assert scores.fingerprint["latency"]["timer"] == WallClock().name
    assert scores.fingerprint["latency"]["batch_size"] == 2
    table = scores.latency
    assert table.model_ns > 0 and set(table.layers) == set(scores.layers)
    for name, layer in scores.layers.items():
        measured = table.layers[name]
        assert measured.original_ns > 0 and layer.info.cost.latency_ns == measured.original_ns
        assert set(measured.chosen) == set(scores.fingerprint["candidates"])
        for entry in layer.entries:
            assert entry.rank == measured.chosen[entry.asked_ratio]
            assert entry.cost.latency_ns == measured.ranks[entry.rank] > 0
    _, report = compress(tiny_net, distance_evaluator, target=0.6, measure_latency=True, **settings)
    check = report.latency
    assert check.ratio > 0 and check.spread >= 0 and check.measured.repeats == 3
    assert check.settings["batch_size"] == 2 and report.model_after.latency_ns > 0


def test_latency_settings_are_checked_before_any_work(tiny_net, distance_evaluator):
    with pytest.raises(InvalidParameterError, match="'measure_latency' parameter of compress"):
        compress(tiny_net, distance_evaluator, target=0.5, input_shape=SHAPE, measure_latency="yes")
    assert distance_evaluator.calls == 0
    with pytest.raises(InvalidParameterError, match="'cost' parameter of recommend_vbmf"):
        recommend_vbmf(tiny_net, scheme="weight_svd", cost="latency", input_shape=SHAPE)


def test_the_knapsack_solves_latency_exactly(tiny_net, distance_evaluator):
    """Against brute force over every combination of the layers' options, with the
    measured (integer nanosecond) latencies as costs."""
    scores = build_eval_scores(
        tiny_net, distance_evaluator, **options(MacTimer(ns_per_module=3000), candidates=5)
    )
    options_by_layer = layer_options(scores, "latency")
    budget = 0.55 * scores.model_cost.latency_ns
    fixed = scores.fixed_cost("latency")
    best = max(
        sum(o.score - scores.baseline for o in combo)
        for combo in itertools.product(*options_by_layer.values())
        if fixed + sum(o.cost for o in combo) <= budget
    )
    selection = select(scores, target=0.55, solver="knapsack")
    assert predicted_score(scores, selection) - scores.baseline == pytest.approx(best)
    assert selection.predicted_ratio <= 0.55


def test_the_command_line_passes_the_latency_options():
    from greedy_compress.cli.parser import build_parser, common_arguments

    latency = ["--cost", "latency", "--latency-batch-size", "16", "--multiplicity", "auto"]
    args = build_parser().parse_args(
        ["compress", "--model", "m:f", "--data", "m:g", *latency, "--measure-latency"]
    )
    settings = common_arguments(args)["settings"]
    assert settings.cost == "latency" and settings.latency_batch_size == 16
    assert args.multiplicity == "auto" and args.measure_latency
    assert (
        build_parser().parse_args(["compress", "--model", "m:f", "--data", "m:g"]).multiplicity == 1
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--latency-batch-size", "0"])
