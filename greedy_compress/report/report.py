"""The compression report: what was done to each layer and to the model, and how long it took."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter
from greedy_compress._util.io import atomic_write_json
from greedy_compress.dictionary import EvalScores
from greedy_compress.errors import ScoresMismatchError
from greedy_compress.model.cost import Cost, CostMetric, measure_cost
from greedy_compress.selection import LatencyCheck, RepairResult, Selection, predicted_score

__all__ = ["CompressionReport", "LayerReport", "build_report", "layer_rows"]


@dataclass(frozen=True)
class LayerReport:
    """What a selection does to one scored layer.

    Attributes:
        name: the layer's fully-qualified name.
        kept_ratio: kept fraction of the layer's cost (1.0: left alone).
        rank: the chosen rank, None when left alone.
        before: the layer's cost (every module its scheme changes) before.
        after: the same after compression (the dictionary's exact per-layer cost).
        cost_share: the layer's share of the model's cost before compression.
        kept_share: the share of the original model's cost it keeps.
        predicted_score: the model's score with only this layer compressed this way (the
            baseline when left alone; -inf where the evaluator failed; None when the
            selection was made without scores).
        scheme: the layer's own scheme in a mixed-scheme selection, else None.
    """

    name: str
    kept_ratio: float
    rank: int | None
    before: Cost
    after: Cost
    cost_share: float
    kept_share: float
    predicted_score: float | None
    scheme: str | None = None


def layer_rows(
    scores: EvalScores, selection: Selection, *, cost: CostMetric | None = None
) -> tuple[LayerReport, ...]:
    """One :class:`LayerReport` per scored layer, in network order.

    Raises:
        ScoresMismatchError: the selection names a layer or rank the dictionary lacks.

    Example:
        >>> rows = layer_rows(scores, select(scores, target=0.5))
        >>> [row.name for row in rows][:2]
        ['features.0', 'features.3']
    """
    metric = selection.cost_metric if cost is None else cost
    total = max(1, scores.model_cost.get(metric))
    unknown = [name for name in selection.choices if name not in scores.layers]
    if unknown:
        raise ScoresMismatchError(
            f"The selection names layers the dictionary does not have: {unknown}."
        )
    rows = []
    for name in [n for n in scores.planned if n in scores.layers]:
        layer = scores.layers[name]
        before = layer.info.cost
        share = before.get(metric) / total
        choice = selection.choices.get(name)
        if choice is None:
            rows.append(LayerReport(name, 1.0, None, before, before, share, share, scores.baseline))
            continue
        entry = next(
            (e for e in layer.entries if e.rank == choice.rank and e.scheme == choice.scheme),
            None,
        )
        if entry is None:
            raise ScoresMismatchError(
                f"Layer {name!r} has no candidate of rank {choice.rank} in the dictionary."
            )
        rows.append(
            LayerReport(
                name,
                choice.kept_ratio,
                choice.rank,
                before,
                entry.cost,
                share,
                share * choice.kept_ratio,
                choice.predicted_score,
                choice.scheme,
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class CompressionReport:
    """Everything a user wants to know after :func:`greedy_compress.compress`.

    Model costs are measured on the real models; ``achieved_ratio`` is the compressed
    model's cost over the original's, in ``cost_metric``. ``selection`` rebuilds the compressed
    model (:func:`greedy_compress.load_compressed`). Print it for a table; save it as JSON.

    ``predicted_score`` is the dictionary's prediction for the combined model (single-layer
    losses added up), to compare with the measured ``final_score``; ``repair`` is set when
    ``max_drop`` was given (:func:`greedy_compress.selection.repair.repair_selection`).
    ``latency`` is the compressed model's latency measured next to the original's (paired,
    with its spread, and any latency repair rounds): always for a latency target, where it
    is also the ``achieved_ratio``, and on request for the others; ``latency_notes`` name
    the candidates a latency dictionary dropped as slower than the original layer.
    """

    scheme: str
    solver: str
    cost_metric: CostMetric
    target: float
    achieved_ratio: float
    predicted_ratio: float
    model_before: Cost
    model_after: Cost
    baseline_score: float
    final_score: float
    layers: list[LayerReport]
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    selection: Selection | None = None
    predicted_score: float | None = None
    repair: RepairResult | None = None
    latency: LatencyCheck | None = None
    latency_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        data = asdict(self)
        data["selection"] = None if self.selection is None else self.selection.to_dict()
        data["repair"] = None if self.repair is None else self.repair.to_dict()
        data["latency"] = None if self.latency is None else self.latency.to_dict()
        return data

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    def to_table(self) -> str:
        """A human-readable summary with one row per layer."""
        width = max([len("layer"), *(len(row.name) for row in self.layers)])
        lines = [
            f"scheme {self.scheme}, solver {self.solver}, cost metric {self.cost_metric}",
            f"{'layer':<{width}}  {'ratio':>6}  {'rank':>5}  {'MACs before':>12}  "
            f"{'MACs after':>12}  {'params before':>13}  {'params after':>12}",
        ]
        for row in self.layers:
            rank = "-" if row.rank is None else str(row.rank)
            lines.append(
                f"{row.name:<{width}}  {row.kept_ratio:>6.3f}  {rank:>5}  {row.before.macs:>12,}  "
                f"{row.after.macs:>12,}  {row.before.params:>13,}  {row.after.params:>12,}"
                + ("" if row.scheme is None else f"  {row.scheme}")
            )
        before, after = self.model_before, self.model_after
        lines += [
            f"model MACs     {before.macs:,} -> {after.macs:,} ({after.macs / before.macs:.3f})",
            f"model params   {before.params:,} -> {after.params:,} "
            f"({after.params / before.params:.3f})",
            f"model memory   {before.bytes:,.0f} -> {after.bytes:,.0f} bytes "
            f"({after.bits / before.bits:.3f})",
            f"target {self.target:g} of {self.cost_metric} cost; achieved "
            f"{self.achieved_ratio:.4f} (predicted {self.predicted_ratio:.4f})",
            f"score          {self.baseline_score:.4f} -> {self.final_score:.4f}"
            + (
                ""
                if self.predicted_score is None
                else f" (dictionary predicted {self.predicted_score:.4f})"
            ),
        ]
        details = {} if self.selection is None else self.selection.details
        if details.get("budget_note"):
            lines.append(f"budget         {details['budget_note']}")
        if details.get("non_monotone"):
            fitted = "fitted monotone" if details.get("monotone_fit") else "used as measured"
            lines.append(
                f"non-monotone   {', '.join(details['non_monotone'])} (score rises as the "
                f"layer is compressed more; {fitted})"
            )
        if self.latency is not None:
            lines.append(self.latency.to_text())
        lines += [f"dropped        {note}" for note in self.latency_notes]
        if self.repair is not None:
            lines.append(self.repair.to_text())
        if self.skipped:
            lines.append("skipped layers:")
            lines += [f"  {name}: {reason}" for name, reason in self.skipped.items()]
        if self.timings:
            lines.append(
                "time           " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()


def build_report(
    model: nn.Module,
    compressed: nn.Module,
    *,
    scores: EvalScores,
    selection: Selection,
    example_input: torch.Tensor,
    final_score: float,
    timings: Mapping[str, float] | None = None,
    repair: RepairResult | None = None,
    latency: LatencyCheck | None = None,
) -> CompressionReport:
    """Measure both models on ``example_input`` and describe what changed per layer.

    A latency selection's report needs ``latency`` (:func:`~greedy_compress.selection.
    check_latency` of the two models): its measured ratio is the achieved ratio.

    Raises:
        InvalidParameterError: a latency selection without ``latency``.

    Example:
        >>> selection = select(scores, target=0.5)
        >>> small = apply_selection(model, selection)
        >>> report = build_report(model, small, scores=scores, selection=selection,
        ...                       example_input=example_input, final_score=evaluator(small))
        >>> abs(report.achieved_ratio - report.predicted_ratio) < 1e-9
        True
    """
    metric = selection.cost_metric
    if metric == "latency" and latency is None:
        raise bad_parameter(
            "latency", "build_report", "the measured LatencyCheck of a latency selection", latency
        )
    before, after = measure_cost(model, example_input), measure_cost(compressed, example_input)
    if latency is not None:
        before = replace(before, latency_ns=latency.measured.reference_ns)
        after = replace(after, latency_ns=latency.measured.ns)
    achieved = (
        latency.ratio if metric == "latency" and latency else after.get(metric) / before.get(metric)
    )
    return CompressionReport(
        scheme=selection.scheme,
        solver=selection.solver,
        cost_metric=metric,
        target=selection.target,
        achieved_ratio=achieved,
        predicted_ratio=selection.predicted_ratio,
        model_before=before,
        model_after=after,
        baseline_score=scores.baseline,
        final_score=final_score,
        layers=list(layer_rows(scores, selection)),
        skipped=dict(scores.skipped),
        timings=dict(timings or {}),
        selection=selection,
        predicted_score=predicted_score(scores, selection),
        repair=repair,
        latency=latency,
        latency_notes=[] if scores.latency is None else scores.latency.notes(),
    )
