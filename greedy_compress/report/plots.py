"""Plots of a dictionary and of selections solved from it (matplotlib).

Each ``plot_*`` function draws one record from :mod:`greedy_compress.report.analysis` on ``ax`` (a
new figure when None), returns the Axes and never calls ``plt.show()``. :func:`save_plots`
writes all of them to files without touching pyplot, so it needs no display.

matplotlib is imported inside the functions: ``import greedy_compress`` stays light.

Example:
    >>> from matplotlib.figure import Figure
    >>> from greedy_compress.report.analysis import sensitivity
    >>> ax = plot_sensitivity(sensitivity(scores), ax=Figure().add_subplot())
    >>> ax.get_title()
    'Per-layer sensitivity (spatial_svd)'

"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greedy_compress._util.constraints import bad_parameter, check_open_unit, check_positive_int
from greedy_compress._util.io import atomic_write_bytes
from greedy_compress.dictionary import EvalScores
from greedy_compress.report import _axes as axes
from greedy_compress.report.analysis import (
    MeasuredPoint,
    SelectionData,
    SensitivityData,
    TradeoffData,
    selection_data,
    sensitivity,
    tradeoff_curve,
)
from greedy_compress.report.comparison import (
    StrategyComparison,
    compare_selections,
    selections_by_solver,
)
from greedy_compress.selection import Selection, get_solver

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PLOT_FORMATS",
    "plot_comparison",
    "plot_selection",
    "plot_sensitivity",
    "plot_tradeoff",
    "save_plots",
]

PLOT_FORMATS = ("png", "svg")


def plot_sensitivity(data: SensitivityData, *, ax: Axes | None = None, label: int = 5) -> Axes:
    """Score against kept ratio for every layer, the ``label`` most sensitive in colour.

    The other layers are drawn in grey without a legend entry, so large models stay
    readable; the baseline is a dashed line. Failed candidates (no score) are left out.

    Args:
        data: from :func:`greedy_compress.report.analysis.sensitivity`.
        ax: Axes to draw on (default: a new figure).
        label: how many of the most sensitive layers get a colour and a legend entry.

    Example:
        >>> from matplotlib.figure import Figure
        >>> from greedy_compress.report.analysis import sensitivity
        >>> ax = plot_sensitivity(sensitivity(scores), ax=Figure().add_subplot(), label=3)
        >>> len([line for line in ax.get_lines() if line.get_label().startswith("features")])
        3
    """
    check_positive_int(label, "label", "plot_sensitivity")
    ax = axes.new_axes(ax, axes.sensitivity_size(data))
    highlighted = data.most_sensitive(label)
    colours = {name: f"C{i % 10}" for i, name in enumerate(highlighted)}
    # Grey layers first so the highlighted ones are drawn on top of them.
    for curve in sorted(data.curves, key=lambda c: c.name in colours):
        points = [(r, s) for r, s in zip(curve.ratios, curve.scores, strict=True) if s is not None]
        ratios, scores = [p[0] for p in points], [p[1] for p in points]
        if curve.name in colours:
            text = f"{curve.name} ({curve.cost_share:.1%} of model)"
            if curve.failed:
                text += f", {curve.failed} failed"
            ax.plot(ratios, scores, marker="o", markersize=4, color=colours[curve.name], label=text)
        else:
            ax.plot(ratios, scores, color=axes.NEUTRAL, linewidth=0.8, alpha=0.6)
    ax.axhline(data.baseline, color="black", linestyle="--", linewidth=1, label="baseline")
    if len(data.curves) > len(highlighted):
        ax.plot(
            [], [], color=axes.NEUTRAL, label=f"{len(data.curves) - len(highlighted)} other layers"
        )
    units = axes.units(data.cost_metric)
    ax.set_xlabel(f"kept fraction of the layer's {units} (%)")
    ax.set_ylabel("model score, only this layer compressed")
    ax.set_title(f"Per-layer sensitivity ({data.scheme})")
    axes.percent_axis(ax.xaxis)
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    axes.legend_outside(ax)
    return ax


def plot_selection(data: SelectionData, *, ax: Axes | None = None) -> Axes:
    """Per-layer kept ratio of one selection as bars in network order, with cost shares.

    For each layer, the left bar is the kept fraction of the layer's cost (grey and hatched
    when the layer is left alone); the right bar is the layer's share of the model's cost,
    its dark part the share it keeps.

    Args:
        data: from :func:`greedy_compress.report.analysis.selection_data`.
        ax: Axes to draw on (default: a new figure).

    Example:
        >>> from matplotlib.figure import Figure
        >>> from greedy_compress.report.analysis import selection_data
        >>> data = selection_data(scores, select(scores, target=0.5))
        >>> ax = plot_selection(data, ax=Figure().add_subplot())
        >>> [tick.get_text() for tick in ax.get_xticklabels()][:2]
        ['features.0', 'features.3']
    """
    ax = axes.new_axes(ax, axes.selection_size(data))
    units = axes.units(data.cost_metric)
    positions = list(range(len(data.layers)))
    width = 0.38
    for x, row in zip(positions, data.layers, strict=True):
        untouched = row.rank is None
        ax.bar(
            x - width / 2,
            row.kept_ratio,
            width,
            color=axes.NEUTRAL if untouched else "C0",
            hatch="//" if untouched else None,
            edgecolor="white",
        )
        ax.bar(x + width / 2, row.cost_share, width, color="C1", alpha=0.35)
        ax.bar(x + width / 2, row.kept_share, width, color="C1")
    # Legend entries drawn once, by proxy, instead of once per layer.
    ax.bar([0], [0], color="C0", label=f"kept fraction of the layer's {units}")
    ax.bar([0], [0], color=axes.NEUTRAL, hatch="//", edgecolor="white", label="left alone")
    ax.bar([0], [0], color="C1", alpha=0.35, label=f"layer's share of model {units}")
    ax.bar([0], [0], color="C1", label="... of which kept")
    axes.layer_ticks(ax, [row.name for row in data.layers])
    ax.set_ylim(0, 1.05)
    axes.percent_axis(ax.yaxis)
    ax.set_ylabel("fraction (%)")
    ax.set_xlabel("layer (network order)")
    score = (
        "no predicted score"
        if data.predicted_score is None
        else f"predicted score {data.predicted_score:.4f}"
    )
    if data.measured_score is not None:
        score += f", measured {data.measured_score:.4f}"
    ax.set_title(
        f"{data.label}: keeps {data.predicted_ratio:.1%} of model {units}\n"
        f"{score} (baseline {data.baseline:.4f})",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    axes.legend_outside(ax)
    return ax


def plot_tradeoff(data: TradeoffData, *, ax: Axes | None = None) -> Axes:
    """Predicted (and measured) score against the kept fraction of the model's cost.

    The predicted curve comes from re-solving the dictionary for many targets (additive
    model, see :func:`greedy_compress.selection.predicted_score`); measured points, where
    given, show how far the prediction is from real evaluations.

    Args:
        data: from :func:`greedy_compress.report.analysis.tradeoff_curve`.
        ax: Axes to draw on (default: a new figure).

    Example:
        >>> from matplotlib.figure import Figure
        >>> from greedy_compress.report.analysis import tradeoff_curve
        >>> curve = tradeoff_curve(scores, measured=[(0.5, 0.97)])
        >>> ax = plot_tradeoff(curve, ax=Figure().add_subplot())
        >>> ax.get_xlabel()
        "kept fraction of the model's MACs (%)"
    """
    ax = axes.new_axes(ax, axes.tradeoff_size(data))
    points = sorted((p.predicted_ratio, p.predicted_score) for p in data.points)
    scores = [p[1] for p in points]
    # The additive model can predict far below any score seen (even below zero accuracy);
    # clip the axis at the lowest real score and mark the points beneath it.
    top = max([data.baseline, *axes.finite(scores), *(m.score for m in data.measured)])
    floor = data.lowest_score
    if not math.isfinite(floor):
        floor = min(axes.finite(scores), default=0.0)
    bottom = floor - 0.05 * max(top - floor, 1e-9)
    clipped = [(r, bottom) for r, s in points if s < bottom]
    ax.plot(
        [p[0] for p in points],
        [max(s, bottom) for s in scores],
        marker="o",
        markersize=4,
        color="C0",
        label=f"predicted ({data.solver} solver, additive)",
    )
    if clipped:
        ax.scatter(
            [c[0] for c in clipped],
            [c[1] for c in clipped],
            marker="v",
            s=50,
            color="C0",
            zorder=3,
            clip_on=False,
            label="predicted below the axis",
        )
    ax.set_ylim(bottom, top + 0.05 * max(top - floor, 1e-9))
    if data.measured:
        ax.scatter(
            [m.ratio for m in data.measured],
            [m.score for m in data.measured],
            marker="X",
            s=70,
            color="C3",
            zorder=3,
            label="measured",
        )
        for m in data.measured:
            if m.label:
                ax.annotate(
                    m.label,
                    (m.ratio, m.score),
                    textcoords="offset points",
                    xytext=(6, -12),
                    fontsize=8,
                    color="C3",
                )
    ax.axhline(data.baseline, color="black", linestyle="--", linewidth=1, label="baseline")
    reachable = f"smallest reachable ({data.min_ratio:.1%})"
    ax.axvline(data.min_ratio, color=axes.NEUTRAL, linestyle=":", label=reachable)
    units = axes.units(data.cost_metric)
    ax.set_xlabel(f"kept fraction of the model's {units} (%)")
    ax.set_ylabel("model score")
    ax.set_title("Trade-off from the saved dictionary (no re-evaluation)")
    axes.percent_axis(ax.xaxis)
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    axes.legend_outside(ax)
    return ax


def plot_comparison(data: StrategyComparison, *, ax: Axes | None = None) -> Axes:
    """Several selections side by side: each strategy's kept ratio per layer.

    The legend gives each strategy's kept fraction of the model and its predicted (and,
    where given, measured) score.

    Args:
        data: from :func:`greedy_compress.report.comparison.compare_selections`.
        ax: Axes to draw on (default: a new figure).

    Example:
        >>> from matplotlib.figure import Figure
        >>> from greedy_compress.report.comparison import compare_selections, selections_by_solver
        >>> comparison = compare_selections(scores, selections_by_solver(scores, target=0.5))
        >>> ax = plot_comparison(comparison, ax=Figure().add_subplot())
        >>> ax.get_title()
        'Strategies compared at target 0.5'
    """
    count = len(data.strategies)
    ax = axes.new_axes(ax, axes.comparison_size(data))
    width = 0.8 / count
    units = axes.units(data.strategies[0].cost_metric)
    for i, strategy in enumerate(data.strategies):
        ratios = {row.name: row.kept_ratio for row in strategy.layers}
        predicted = "-" if strategy.predicted_score is None else f"{strategy.predicted_score:.4f}"
        text = f"{strategy.label}\nkeeps {strategy.predicted_ratio:.1%}, predicted {predicted}"
        if strategy.measured_score is not None:
            text += f", measured {strategy.measured_score:.4f}"
        offset = (i - (count - 1) / 2) * width
        ax.bar(
            [x + offset for x in range(len(data.layers))],
            [ratios.get(name, 1.0) for name in data.layers],
            width,
            color=f"C{i % 10}",
            label=text,
        )
    axes.layer_ticks(ax, data.layers)
    ax.set_ylim(0, 1.05)
    axes.percent_axis(ax.yaxis)
    ax.set_ylabel(f"kept fraction of the layer's {units} (%)")
    ax.set_xlabel("layer (network order)")
    targets = sorted({s.target for s in data.strategies})
    ax.set_title(
        "Strategies compared at target " + ", ".join(f"{t:g}" for t in targets), fontsize=10
    )
    ax.grid(axis="y", alpha=0.3)
    axes.legend_outside(ax)
    return ax


_DRAWERS: dict[str, tuple[Any, Any]] = {
    "sensitivity": (plot_sensitivity, axes.sensitivity_size),
    "selection": (plot_selection, axes.selection_size),
    "tradeoff": (plot_tradeoff, axes.tradeoff_size),
    "comparison": (plot_comparison, axes.comparison_size),
}


def _save(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=path.suffix[1:], dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


def save_plots(
    scores: EvalScores,
    out: str | os.PathLike[str],
    *,
    target: float = 0.5,
    selection: Selection | None = None,
    targets: Sequence[float] | None = None,
    measured: Iterable[MeasuredPoint | tuple[float, float]] = (),
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """Write every plot of ``scores`` into the folder ``out``; returns the files written.

    ``sensitivity`` always; for a complete dictionary also ``selection`` (``selection``, or
    the greedy solver's at ``target``), ``tradeoff`` (over ``targets``, with ``measured``
    points) and ``comparison`` (every registered solver and plain greedy at the selection's
    target). Uses matplotlib's object API, not pyplot: no display or backend needed. Files
    are written atomically.

    Example:
        >>> import tempfile
        >>> written = save_plots(scores, tempfile.mkdtemp(), formats=("png", "svg"))
        >>> [path.name for path in written][:3]
        ['sensitivity.png', 'sensitivity.svg', 'selection.png']
    """
    from matplotlib.figure import Figure

    owner = "save_plots"
    formats = list(formats)
    if not formats or any(f not in PLOT_FORMATS for f in formats):
        raise bad_parameter("formats", owner, f"a non-empty subset of {PLOT_FORMATS}", formats)
    # Everything that can fail on bad input runs before any file is written.
    drawings: list[tuple[str, Any]] = [("sensitivity", sensitivity(scores))]
    if scores.is_complete:
        if selection is None:
            target = check_open_unit(target, "target", owner)
            selection = get_solver("greedy", owner).solve(scores, target=target)
        strategies = selections_by_solver(scores, target=selection.target)
        drawings += [
            ("selection", selection_data(scores, selection)),
            ("tradeoff", tradeoff_curve(scores, targets=targets, measured=measured)),
            ("comparison", compare_selections(scores, strategies)),
        ]
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in drawings:
        draw, size = _DRAWERS[name]
        figure = Figure(figsize=size(data), layout="constrained")
        draw(data, ax=figure.add_subplot())
        for suffix in formats:
            path = directory / f"{name}.{suffix}"
            _save(figure, path)
            written.append(path)
    return written
