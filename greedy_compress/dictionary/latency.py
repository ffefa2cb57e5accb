"""Latency in the dictionary build: time every candidate of every planned layer, and the
original layers and the whole model, before any layer is scored.

With ``cost="latency"`` (or ``multiplicity="auto"``) :func:`plan_latency` runs after the
layers are planned (:mod:`~greedy_compress.dictionary.plan`, ranks chosen by MACs) and the
baseline is evaluated:

1. each planned layer is factorized once; every rank its candidates may use is built and
   timed next to the original layer (the modules the scheme changes, each on the input it
   gets in the model at the latency batch size), so the ratio of the two is free of the
   machine's load;
2. the whole model and every original layer are timed round robin: the model's latency
   minus the layers' is the fixed cost of the rest of the network;
3. a candidate's latency is its median ratio times the original layer's latency, in
   integer nanoseconds (the solvers' knapsack needs integer costs). Ranks are chosen by
   MACs for the asked ratios; with ``multiplicity="auto"`` each is replaced by the largest
   of it and its roundings down to multiples of 4 ... 64 (within 3/4 of it) whose measured
   latency per unit of rank is within 2% of the best of them: a smaller rank is taken only
   when the backend runs it disproportionately faster;
4. with ``cost="latency"``, candidates measured no faster than the original layer are
   dropped before scoring (the table's ``dropped`` and notes say which); a layer left
   with none is skipped, and a build left with no layer raises
   :class:`~greedy_compress.errors.NoCompressibleLayerError` before any layer is scored.

The measurements are saved with the dictionary (:class:`LatencyTable`), so resuming or
reusing it times nothing again.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from greedy_compress._util.progress import progress_bar
from greedy_compress.dictionary.latency_table import LatencyTable, LayerLatency
from greedy_compress.dictionary.plan import DictionaryPlan, rank_metric
from greedy_compress.dictionary.scores import EvalScores
from greedy_compress.dictionary.settings import BuildSettings
from greedy_compress.dictionary.sharding import Shard, all_gather_json
from greedy_compress.errors import NoCompressibleLayerError
from greedy_compress.model.latency import LatencyMeter, Run, module_inputs
from greedy_compress.model.profile import ModelProfile
from greedy_compress.model.swap import swapped
from greedy_compress.schemes import Candidate, Scheme

__all__ = ["AUTO_STEPS", "AUTO_TOLERANCE", "measure_latency", "plan_latency"]

AUTO_STEPS = (4, 8, 16, 32, 64)  # multiples "auto" tries
AUTO_REACH = 0.75  # ... no lower than this fraction of the rank asked for
AUTO_TOLERANCE = 0.02  # a larger rank is kept when its latency per rank is within this


def _auto_ranks(rank: int) -> list[int]:
    floor = max(1, math.ceil(AUTO_REACH * rank))
    return sorted({rank, *(r for m in AUTO_STEPS if (r := rank // m * m) >= floor)})


def _most_efficient(ranks: Sequence[int], ratios: dict[int, float]) -> int:
    """The largest rank whose latency per unit of rank is within tolerance of the best."""
    best = min(ratios[r] / r for r in ranks)
    return max(r for r in ranks if ratios[r] / r <= best * (1 + AUTO_TOLERANCE))


def _base_ranks(
    scheme: Scheme, profile: ModelProfile, name: str, ratios: Sequence[float], config: BuildSettings
) -> dict[float, int]:
    metric, info = rank_metric(config.cost), profile.layers[name]
    return {r: scheme.rank_for_ratio(info, r, metric, config.rank_multiplicity) for r in ratios}


def measure_latency(
    model: nn.Module,
    scheme: Scheme,
    profile: ModelProfile,
    planned: Sequence[str],
    ratios: Sequence[float],
    example: torch.Tensor,
    config: BuildSettings,
) -> LatencyTable:
    """Time the model, each planned layer and every rank its candidates may use."""
    meter: LatencyMeter = config.latency_meter
    inputs = meter.inputs(example)
    auto = config.multiplicity == "auto"
    references: dict[str, Run] = {}
    paired: dict[str, dict[int, float]] = {}
    chosen: dict[str, dict[float, int]] = {}
    with (
        meter.threads_set(),
        progress_bar(
            total=len(planned), desc=f"timing {scheme.name}", enabled=config.progress, unit="layer"
        ) as bar,
    ):
        for name in planned:
            base = _base_ranks(scheme, profile, name, ratios, config)
            tried = {r: _auto_ranks(rank) if auto else [rank] for r, rank in base.items()}
            factorization = scheme.factorize_in(model, name)
            reference: Run | None = None
            paired[name] = {}
            for rank in sorted({rank for ranks in tried.values() for rank in ranks}):
                swaps = factorization.replacements(name, rank)
                # The modules that run are timed; a sliced parameter takes no time alone.
                replacements = {n: m for n, m in swaps.items() if isinstance(m, nn.Module)}
                if reference is None:  # the same modules at every rank
                    original = module_inputs(model, inputs, list(replacements))
                    reference = [(model.get_submodule(n), original[n]) for n in replacements]
                with swapped(model, swaps):
                    new_inputs = module_inputs(model, inputs, list(replacements))
                run = [(module, new_inputs[n]) for n, module in replacements.items()]
                paired[name][rank] = meter.pair(run, reference).ratio
            assert reference is not None  # every layer has at least one candidate
            references[name] = reference
            if auto:
                chosen[name] = {r: _most_efficient(rs, paired[name]) for r, rs in tried.items()}
            bar.update(1)
        model_samples, *layer_samples = meter.sample([[(model, inputs)], *references.values()])
    layers = {}
    for name, samples in zip(references, layer_samples, strict=True):
        original_ns = round(statistics.median(samples))
        layers[name] = LayerLatency(
            original_ns=original_ns,
            ranks={rank: round(ratio * original_ns) for rank, ratio in paired[name].items()},
            chosen=chosen.get(name, {}),
        )
    return LatencyTable(model_ns=round(statistics.median(model_samples)), layers=layers)


def _covers(
    table: LatencyTable,
    scheme: Scheme,
    profile: ModelProfile,
    planned: Sequence[str],
    ratios: Sequence[float],
    config: BuildSettings,
) -> bool:
    """Whether a saved table measured every rank the planned candidates use."""
    for name in planned:
        layer = table.layers.get(name)
        if layer is None:
            return False
        base = _base_ranks(scheme, profile, name, ratios, config)
        needed = {layer.chosen.get(r, rank) for r, rank in base.items()}
        if config.multiplicity == "auto" and not set(ratios) <= set(layer.chosen):
            return False
        if not needed <= set(layer.ranks):
            return False
    return True


def _saved_table(
    scores_path: str | os.PathLike[str] | None, fingerprint: dict[str, Any]
) -> LatencyTable | None:
    if scores_path is None or not Path(scores_path).exists():
        return None
    return EvalScores.load(scores_path, expect=fingerprint, resuming=True).latency


def _candidates(plan: DictionaryPlan, table: LatencyTable) -> DictionaryPlan:
    """The plan with its candidates priced by the measured latencies (slower ones dropped
    with ``cost="latency"``)."""
    config, scheme, profile = plan.settings, plan.scheme, plan.profile
    layers = {}
    for name, info in profile.layers.items():
        if name in table.layers:
            latency = table.layers[name].original_ns
            info = dataclasses.replace(
                info, cost=dataclasses.replace(info.cost, latency_ns=latency)
            )
        layers[name] = info
    model_cost = dataclasses.replace(profile.model_cost, latency_ns=table.model_ns)
    profile = dataclasses.replace(profile, layers=layers, model_cost=model_cost)
    metric, skipped = config.cost, dict(plan.skipped)
    kept: list[str] = []
    choices: dict[str, list[Candidate]] = {}
    dropped: dict[str, list[int]] = {}
    for name in plan.planned:
        info, measured = profile.layers[name], table.layers[name]
        base = _base_ranks(scheme, profile, name, config.ratios, config)
        candidates = []
        for ratio in config.ratios:
            rank = measured.chosen.get(ratio, base[ratio])
            cost = dataclasses.replace(scheme.cost(info, rank), latency_ns=measured.ranks[rank])
            if metric == "latency" and measured.ranks[rank] >= measured.original_ns:
                if rank not in dropped.setdefault(name, []):
                    dropped[name].append(rank)
                continue
            kept_ratio = cost.get(metric) / max(info.cost.get(metric), 1)
            candidates.append(Candidate(ratio, rank, cost, kept_ratio))
        if candidates:
            kept.append(name)
            choices[name] = candidates
        else:
            skipped[name] = (
                f"every candidate measured no faster than the original layer "
                f"({measured.original_ns:,} ns)"
            )
    if not kept:
        raise NoCompressibleLayerError(
            f"Every candidate of every layer {scheme.name} can compress "
            f"({', '.join(plan.planned)}) measured no faster than the original layer: try "
            "another scheme, or a larger latency_batch_size if the layers are too small to time.",
            skipped,
        )
    table = dataclasses.replace(table, dropped={n: sorted(r) for n, r in dropped.items() if r})
    return dataclasses.replace(
        plan, profile=profile, planned=kept, skipped=skipped, candidates=choices, latency=table
    )


def plan_latency(
    model: nn.Module,
    plan: DictionaryPlan,
    *,
    scores_path: str | os.PathLike[str] | None,
    fingerprint: dict[str, Any],
    shard: Shard,
) -> DictionaryPlan:
    """Measure (or read from the saved dictionary) the latencies, and price the candidates.

    Under torch.distributed rank 0 measures and every rank uses its table, so all ranks
    plan the same candidates.

    Raises:
        NoCompressibleLayerError: every candidate measured no faster than its original layer
            (``cost="latency"``).
    """
    config, scheme, planned = plan.settings, plan.scheme, plan.planned
    ratios = config.ratios
    table = _saved_table(scores_path, fingerprint) if shard.rank == 0 else None
    if table is not None and not _covers(table, scheme, plan.profile, planned, ratios, config):
        table = None  # other layers or ranks planned (``ignore`` changed): time again
    if table is None and shard.rank == 0:
        table = measure_latency(model, scheme, plan.profile, planned, ratios, plan.example, config)
    if shard.world > 1:
        shared = all_gather_json(None if table is None else table.to_dict())[0]
        table = LatencyTable.from_dict(shared)
    assert table is not None  # measured or read on rank 0, shared with the others
    return _candidates(plan, table)
