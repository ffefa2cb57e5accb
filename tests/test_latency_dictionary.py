"""Latency dictionaries: every candidate timed against its original layer, the rest of the
network as a fixed cost, slower candidates dropped before scoring, the automatic
multiplicity, the measurements cached with the dictionary and in its fingerprint."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from greedy_compress import (
    BuildSettings,
    EvalScores,
    NoCompressibleLayerError,
    ScoresMismatchError,
    apply_selection,
    build_eval_scores,
    combine_scores,
    get_scheme,
    select,
)
from greedy_compress.dictionary import latency as latency_module
from greedy_compress.dictionary.plan import plan_dictionary
from greedy_compress.dictionary.sharding import Shard
from greedy_compress.model.latency import LatencyMeter, MacTimer

SHAPE = (1, 1, 8, 8)


def build(model, evaluator, **options):
    # One thread: deterministic timers need no more, and on a busy machine threads wait.
    defaults = {"input_shape": SHAPE, "progress": False, "candidates": 4, "latency_threads": 1}
    options = {**defaults, **options}
    return build_eval_scores(model, evaluator, cost="latency", **options)


class NoClock(MacTimer):
    """Has MacTimer's name (so the fingerprints match) but must never be called."""

    def __call__(self, module, inputs):
        raise AssertionError("timed again")


class RankPenalty(MacTimer):
    """MacTimer, three times slower for a conv or linear whose output count is not a
    multiple of 4 (a backend that wants vectors of 4)."""

    def __call__(self, module, inputs):
        base = super().__call__(module, inputs)
        layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        odd = any(
            (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features) % 4 for m in layers
        )
        return 3 * base if odd else base


@pytest.mark.parametrize("scheme", ["weight_svd", "filter_pruning_l2"])
def test_latencies_are_what_the_timer_gives_each_candidate(tiny_net, distance_evaluator, scheme):
    """With latency = MACs at the latency batch (no per-module cost), every measured figure
    must equal the analytic MAC count times the batch: each candidate's modules (for
    pruning, every module its channels touch, on inputs with fewer channels), each original
    layer and the model."""
    timer = MacTimer(ns_per_module=0)
    scores = build(
        tiny_net, distance_evaluator, scheme=scheme, latency_timer=timer, latency_batch_size=4
    )
    assert scores.latency is not None and scores.latency.model_ns == 4 * scores.model_cost.macs
    for layer in scores.layers.values():
        assert layer.info.cost.latency_ns == 4 * layer.info.cost.macs
        for entry in layer.entries:
            assert entry.cost.latency_ns == 4 * entry.cost.macs
            assert entry.kept_ratio == pytest.approx(entry.cost.macs / layer.info.cost.macs)
    assert scores.fixed_cost("latency") == 4 * scores.fixed_cost("mac")
    described = scores.fingerprint["latency"]
    meter = LatencyMeter(timer=timer, batch_size=4, threads=1)
    assert described == meter.describe(torch.zeros(SHAPE))


def test_the_combined_model_measures_what_the_additive_prices_predict(tiny_net, distance_evaluator):
    """MacTimer latencies add up exactly, so the compressed model timed end to end must
    measure the selection's predicted latency ratio."""
    timer = MacTimer(ns_per_module=500)
    scores = build(tiny_net, distance_evaluator, scheme="weight_svd", latency_timer=timer)
    selection = select(scores, target=0.7)
    assert selection.cost_metric == "latency" and selection.predicted_ratio <= 0.7
    small = apply_selection(tiny_net, selection)
    measured = LatencyMeter(timer=timer, repeats=1).compare(small, tiny_net, torch.zeros(SHAPE))
    assert measured.ratio == pytest.approx(selection.predicted_ratio)


def test_candidates_slower_than_the_original_are_dropped_before_scoring(
    tiny_net, distance_evaluator
):
    """A factorized layer is two modules: with 20,000 ns per module, only the big savings
    of conv2 beat the extra module. Slower candidates are never evaluated, a layer left
    with none is skipped, and the notes name them."""
    ns_per_module = 20_000
    scores = build(
        tiny_net,
        distance_evaluator,
        scheme="weight_svd",
        candidates=8,
        latency_timer=MacTimer(ns_per_module=ns_per_module),
    )
    scheme = get_scheme("weight_svd")
    assert list(scores.layers) == ["conv2"]
    for name in ("conv1", "pointwise", "head"):
        assert "no faster than the original layer" in scores.skipped[name]
    info = scores.layers["conv2"].info
    # dropped iff the factorized layer's MACs plus one more module are no saving
    expected = sorted(
        {
            rank
            for ratio in scores.fingerprint["candidates"]
            if scheme.cost(info, rank := scheme.rank_for_ratio(info, ratio, "mac")).macs
            + ns_per_module
            >= info.cost.macs
        }
    )
    assert expected and scores.latency.dropped["conv2"] == expected
    kept = {e.rank for e in scores.layers["conv2"].entries}
    assert kept and not kept & set(expected)
    assert all(e.cost.latency_ns < info.cost.latency_ns for e in scores.layers["conv2"].entries)
    assert distance_evaluator.calls == 1 + len(kept)  # the baseline and the kept ranks
    assert "rank" in scores.latency.notes()[0] and "dropped" in scores.to_table()


def test_a_build_left_with_no_faster_candidate_says_so_before_scoring(tiny_net, distance_evaluator):
    with pytest.raises(NoCompressibleLayerError, match="no faster than the original layer"):
        build(
            tiny_net,
            distance_evaluator,
            scheme="weight_svd",
            latency_timer=MacTimer(ns_per_module=10**9),
        )
    assert distance_evaluator.calls == 1  # the baseline only (always the first evaluation)


def test_auto_multiplicity_takes_the_ranks_the_backend_runs_fast():
    """Planted: a backend three times slower for output counts not a multiple of 4. Every
    candidate whose MAC-chosen rank r has a multiple of 4 within 3/4 of it (r >= 12) must
    take one; where the timer has no preference (MacTimer: latency linear in the rank)
    the ranks are those of multiplicity 1."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.Linear(64, 10))
    scheme = get_scheme("weight_svd")
    options = {"scheme": "weight_svd", "candidates": 6, "input_shape": (1, 64)}
    penalized = build(
        model, lambda m: 0.0, latency_timer=RankPenalty(), multiplicity="auto", **options
    )
    assert penalized.fingerprint["multiplicity"] == "auto"
    moved = 0
    for name, layer in penalized.layers.items():
        for entry in layer.entries:
            asked = scheme.rank_for_ratio(layer.info, entry.asked_ratio, "mac")
            assert 0.75 * asked <= entry.rank <= asked
            if asked >= 12:
                assert entry.rank % 4 == 0, (name, asked, entry.rank)
                moved += asked % 4 != 0
    assert moved >= 3  # some ranks really were moved
    plain = build(model, lambda m: 0.0, latency_timer=MacTimer(), multiplicity="auto", **options)
    ones = build(model, lambda m: 0.0, latency_timer=MacTimer(), **options)
    assert {n: [e.rank for e in layer.entries] for n, layer in plain.layers.items()} == {
        n: [e.rank for e in layer.entries] for n, layer in ones.layers.items()
    }


def test_the_measurements_are_saved_with_the_dictionary_and_reused(
    tmp_path, tiny_net, distance_evaluator
):
    path = tmp_path / "scores.json"
    first = build(
        tiny_net,
        distance_evaluator,
        scheme="weight_svd",
        scores_path=path,
        latency_timer=MacTimer(),
    )
    saved = json.loads(path.read_text())
    assert saved["format_version"] == 3 and "latency" in saved
    assert "latency_ns" in saved["model_cost"]
    again = build(
        tiny_net, distance_evaluator, scheme="weight_svd", scores_path=path, latency_timer=NoClock()
    )
    assert again == first and EvalScores.load(path) == first
    with pytest.raises(ScoresMismatchError, match="'latency'"):
        build(
            tiny_net,
            distance_evaluator,
            scheme="weight_svd",
            scores_path=path,
            latency_timer=MacTimer(),
            latency_batch_size=2,
        )


def test_a_saved_table_without_a_planned_layer_is_measured_again(
    tmp_path, tiny_net, distance_evaluator
):
    """``ignore`` is not in the fingerprint: a file built with a layer ignored is reused, but
    its measurements do not cover that layer, so everything is timed again."""
    path = tmp_path / "scores.json"
    build(
        tiny_net,
        distance_evaluator,
        scheme="weight_svd",
        scores_path=path,
        latency_timer=MacTimer(),
        ignore=["head"],
    )
    with pytest.raises(AssertionError, match="timed again"):
        build(
            tiny_net,
            distance_evaluator,
            scheme="weight_svd",
            scores_path=path,
            latency_timer=NoClock(),
        )


class Slower(MacTimer):
    """MacTimer's name (the fingerprints match) with 10% longer times: a machine whose
    timings moved between two builds."""

    def __call__(self, module, inputs):
        return round(1.1 * super().__call__(module, inputs))


def test_timed_again_the_saved_scores_are_kept(tmp_path, tiny_net, distance_evaluator):
    """Latencies are measurements, not a function of the model: when a saved file is timed
    again (here with other figures) its scores are reused, not refused as edited."""
    path = tmp_path / "scores.json"
    options = {"scheme": "weight_svd", "scores_path": path}
    first = build(
        tiny_net, distance_evaluator, latency_timer=MacTimer(), ignore=["head"], **options
    )
    calls = distance_evaluator.calls
    again = build(tiny_net, distance_evaluator, latency_timer=Slower(), **options)
    head = {e.rank for e in again.layers["head"].entries}
    assert distance_evaluator.calls - calls == 1 + len(head)  # the baseline and the new layer
    for name, layer in first.layers.items():
        assert [e.score for e in again.layers[name].entries] == [e.score for e in layer.entries]
        assert again.layers[name].info.cost.latency_ns != layer.info.cost.latency_ns


def test_an_interrupted_build_resumes_without_timing_again(tmp_path, tiny_net, distance_evaluator):
    path = tmp_path / "scores.json"

    def interrupted(model):
        if distance_evaluator.calls >= 3:
            raise KeyboardInterrupt
        return distance_evaluator(model)

    interrupted.name = distance_evaluator.name
    with pytest.raises(KeyboardInterrupt):
        build(
            tiny_net, interrupted, scheme="weight_svd", scores_path=path, latency_timer=MacTimer()
        )
    partial = EvalScores.load(path)
    assert not partial.is_complete and partial.latency is not None  # saved before scoring
    done = build(
        tiny_net, distance_evaluator, scheme="weight_svd", scores_path=path, latency_timer=NoClock()
    )
    assert done.is_complete and done.latency == partial.latency


def test_dictionaries_without_latency_keep_their_format(tiny_net, distance_evaluator):
    plain = build_eval_scores(
        tiny_net, distance_evaluator, input_shape=SHAPE, progress=False, candidates=3
    )
    data = plain.to_dict()
    assert "latency" not in data and "latency" not in data["fingerprint"]
    assert all(
        "latency_ns" not in e["cost"] for layer in data["layers"].values() for e in layer["entries"]
    )
    assert EvalScores.from_dict(data).latency is None
    with pytest.raises(ScoresMismatchError, match="no measured latencies"):
        select(plain, target=0.5, cost="latency")


def test_selecting_a_latency_dictionary_by_macs_matches_the_mac_dictionary(
    tiny_net, distance_evaluator
):
    timed = build(tiny_net, distance_evaluator, scheme="weight_svd", latency_timer=MacTimer())
    macs = build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="weight_svd",
        input_shape=SHAPE,
        progress=False,
        candidates=4,
    )
    assert select(timed, target=0.5, cost="mac").choices == select(macs, target=0.5).choices


def test_mixed_latency_dictionaries_share_the_first_ones_original_latencies(
    tiny_net, distance_evaluator
):
    """Each build times the original layers anew; combined, the second dictionary's
    candidates are rescaled to the first one's original layer (their ratio is kept), and a
    layer only the second has by the two model latencies."""
    svd = build(tiny_net, distance_evaluator, scheme="spatial_svd", latency_timer=MacTimer())
    weight = build(tiny_net, distance_evaluator, scheme="weight_svd", latency_timer=MacTimer())

    def doubled(cost):
        return dataclasses.replace(cost, latency_ns=2 * cost.latency_ns)

    slower = dataclasses.replace(  # as if measured while the machine was twice as slow
        weight,
        model_cost=doubled(weight.model_cost),
        layers={
            n: dataclasses.replace(
                layer,
                info=dataclasses.replace(layer.info, cost=doubled(layer.info.cost)),
                entries=tuple(dataclasses.replace(e, cost=doubled(e.cost)) for e in layer.entries),
            )
            for n, layer in weight.layers.items()
        },
    )
    mixed = combine_scores([svd, slower])
    assert set(weight.layers) - set(svd.layers)  # layers only the second one has
    for name, layer in mixed.layers.items():
        assert layer.info.cost == weight.layers[name].info.cost
        for entry in layer.entries:
            if entry.scheme == "weight_svd":
                original = next(e for e in weight.layers[name].entries if e.rank == entry.rank)
                assert entry.cost.latency_ns == original.cost.latency_ns
    assert mixed.model_cost == svd.model_cost
    assert select(mixed, target=0.6).predicted_ratio <= 0.6


def test_under_torch_distributed_every_rank_uses_rank_zeros_measurements(
    monkeypatch, tiny_net, distance_evaluator
):
    measured = build(tiny_net, distance_evaluator, scheme="weight_svd", latency_timer=MacTimer())
    shared = []

    def gather(value):
        shared.append(value)
        return [measured.latency.to_dict(), value]

    monkeypatch.setattr(latency_module, "all_gather_json", gather)
    config = BuildSettings(cost="latency", candidates=4, input_shape=SHAPE, latency_timer=NoClock())
    planned = plan_dictionary(tiny_net, scheme="weight_svd", settings=config, owner="test")
    plan = latency_module.plan_latency(
        tiny_net,
        planned,
        scores_path=None,
        fingerprint=measured.fingerprint,
        shard=Shard(rank=1, world=2),
    )
    assert shared == [None] and plan.latency == measured.latency
    assert plan.planned == list(measured.layers)
    assert {n: [(c.rank, c.cost) for c in cs] for n, cs in plan.candidates.items()} == {
        n: [(e.rank, e.cost) for e in layer.entries] for n, layer in measured.layers.items()
    }
