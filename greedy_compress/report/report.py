"""The compression report: what was done to each layer and to the model, and how long it took."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from greedy_compress._util.io import atomic_write_json
from greedy_compress.model.cost import Cost
from greedy_compress.selection.repair import RepairResult
from greedy_compress.selection.solvers import Selection

__all__ = ["CompressionReport", "LayerReport"]


@dataclass(frozen=True)
class LayerReport:
    """One scored layer: the kept ratio and rank chosen (None = untouched) and its costs.

    ``scheme`` is the layer's own scheme in a mixed-scheme selection, else None.
    """

    name: str
    ratio: float
    rank: int | None
    before: Cost
    after: Cost
    scheme: str | None = None


@dataclass(frozen=True)
class CompressionReport:
    """Everything a user wants to know after :func:`greedy_compress.compress`.

    Model costs are measured on the real models; ``achieved_ratio`` is the compressed
    model's cost over the original's, in ``metric``. ``selection`` rebuilds the compressed
    model (:func:`greedy_compress.load_compressed`). Print it for a table; save it as JSON.

    ``predicted_score`` is the dictionary's prediction for the combined model (single-layer
    losses added up), to compare with the measured ``final_score``; ``repair`` is set when
    ``max_drop`` was given (:func:`greedy_compress.selection.repair.repair_selection`).
    """

    scheme: str
    solver: str
    metric: str
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

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        data = asdict(self)
        data["selection"] = None if self.selection is None else self.selection.to_dict()
        data["repair"] = None if self.repair is None else self.repair.to_dict()
        return data

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    def to_table(self) -> str:
        """A human-readable summary with one row per layer."""
        width = max([len("layer"), *(len(row.name) for row in self.layers)])
        lines = [
            f"scheme {self.scheme}, solver {self.solver}, cost metric {self.metric}",
            f"{'layer':<{width}}  {'ratio':>6}  {'rank':>5}  {'MACs before':>12}  "
            f"{'MACs after':>12}  {'params before':>13}  {'params after':>12}",
        ]
        for row in self.layers:
            rank = "-" if row.rank is None else str(row.rank)
            lines.append(
                f"{row.name:<{width}}  {row.ratio:>6.3f}  {rank:>5}  {row.before.macs:>12,}  "
                f"{row.after.macs:>12,}  {row.before.params:>13,}  {row.after.params:>12,}"
                + ("" if row.scheme is None else f"  {row.scheme}")
            )
        before, after = self.model_before, self.model_after
        lines += [
            f"model MACs     {before.macs:,} -> {after.macs:,} ({after.macs / before.macs:.3f})",
            f"model params   {before.params:,} -> {after.params:,} "
            f"({after.params / before.params:.3f})",
            f"target {self.target:g} of {self.metric} cost; achieved {self.achieved_ratio:.4f} "
            f"(predicted {self.predicted_ratio:.4f})",
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
