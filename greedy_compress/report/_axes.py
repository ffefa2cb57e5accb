"""The figure sizes and axis conventions every plot of :mod:`greedy_compress.report.plots`
shares: legends outside the data, percent axes, layer-name ticks that stay readable."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from greedy_compress.model.cost import CostMetric
from greedy_compress.report.analysis import SelectionData, SensitivityData, TradeoffData
from greedy_compress.report.comparison import StrategyComparison

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COST_UNITS = {"mac": "MACs", "memory": "parameter bytes", "bops": "bit operations"}
NEUTRAL = "#9a9a9a"


def units(metric: CostMetric) -> str:
    return COST_UNITS.get(metric, metric)


# Figure sizes in inches; every legend sits right of the plot (it never covers data), so
# each width includes about 3 inches for it. Bar charts grow with the layer count, capped.
MAX_WIDTH = 30.0


def sensitivity_size(data: SensitivityData) -> tuple[float, float]:
    return (9.0, 4.5)


def selection_size(data: SelectionData) -> tuple[float, float]:
    return (min(MAX_WIDTH, max(5.0, 0.6 * len(data.layers) + 2.0) + 3.0), 4.5)


def tradeoff_size(data: TradeoffData) -> tuple[float, float]:
    return (9.0, 4.5)


def comparison_size(data: StrategyComparison) -> tuple[float, float]:
    bars = len(data.strategies) * len(data.layers)
    return (min(MAX_WIDTH, max(5.0, 0.25 * bars + 2.0) + 3.5), 4.5)


def legend_outside(ax: Axes) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def layer_ticks(ax: Axes, names: Sequence[str]) -> None:
    """Layer names under the bars, smaller when there are many so they do not overlap."""
    size = 9 if len(names) <= 20 else 7 if len(names) <= 40 else 5
    few = len(names) <= 20
    ax.set_xticks(
        range(len(names)), names, rotation=30 if few else 90, ha="right" if few else "center"
    )
    ax.tick_params(axis="x", labelsize=size)
    ax.set_xlim(-0.6, len(names) - 0.4)


def new_axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    """``ax`` itself, or the Axes of a new pyplot figure (shown inline by notebooks)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=size, layout="constrained")
    return new


def percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


def finite(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]
