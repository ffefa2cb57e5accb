"""What a solver chooses from: each layer's options in one cost metric, cheapest first.

An option is a scored candidate seen in the metric being solved for, or "leave the layer
alone" (rank None, the baseline score). With ``monotone=True`` each layer's scores are
replaced by their isotonic fit, so noise that makes a layer score higher when compressed
harder cannot mislead a solver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from greedy_compress.dictionary import EvalScores
from greedy_compress.errors import ScoresFormatError
from greedy_compress.model.cost import CostMetric
from greedy_compress.selection.monotone import is_monotone, isotonic

__all__ = ["LayerOption", "fit_options", "layer_options", "non_monotone"]


@dataclass(frozen=True)
class LayerOption:
    """One choice for one layer; ``rank`` None means "leave the layer alone".

    ``cost`` is in the metric being solved for; ``score`` is -inf when the evaluator gave
    no finite score. ``scheme`` names the option's scheme in a mixed-scheme dictionary
    (None: the dictionary's scheme).
    """

    kept_ratio: float
    rank: int | None
    cost: int
    score: float
    scheme: str | None = None


def layer_options(
    scores: EvalScores, metric: CostMetric, *, monotone: bool = False
) -> dict[str, list[LayerOption]]:
    """Each scored layer's options, cheapest first, "leave alone" (ratio 1) included.

    Candidates that round to the same rank appear once; candidates that do not lower the
    layer's cost are left out. With ``monotone=True`` each layer's scores are replaced by
    their isotonic fit (:func:`fit_options`), so noise that
    makes a layer score higher when compressed harder cannot mislead a solver.

    A layer's ``scores.bounds`` (from a ``config_list``) leave only the options whose kept
    ratio, in the dictionary's cost metric, lies within them (a fixed rank: that option
    alone; ``max_ratio`` < 1: not "leave alone"), so every solver honours them.

    Raises:
        ScoresFormatError: bounds that leave a layer no option (an edited file).
    """
    options: dict[str, list[LayerOption]] = {}
    for name, layer in scores.layers.items():
        original = layer.info.cost.get(metric)
        bounds = scores.bounds.get(name)
        own = max(1, layer.info.cost.get(scores.cost_metric))
        items = []
        if bounds is None or bounds.allows(1.0, None):
            items.append(LayerOption(1.0, None, original, scores.baseline))
        seen_ranks = set()
        for entry in layer.entries:
            # A candidate that saves nothing (rank rounding can do that) is never an option.
            if (entry.scheme, entry.rank) in seen_ranks or entry.cost.get(metric) >= original:
                continue
            kept = entry.cost.get(scores.cost_metric) / own
            if bounds is not None and not bounds.allows(kept, entry.rank):
                continue
            seen_ranks.add((entry.scheme, entry.rank))
            items.append(
                LayerOption(
                    kept_ratio=entry.cost.get(metric) / original,
                    rank=entry.rank,
                    cost=entry.cost.get(metric),
                    score=float("-inf") if entry.score is None else entry.score,
                    scheme=entry.scheme,
                )
            )
        if not items:
            described = "" if bounds is None else f" ({bounds.describe()})"
            raise ScoresFormatError(
                f"The dictionary's config_list bounds for layer {name!r}{described} leave it "
                "no candidate; rebuild it with bounds some candidate meets."
            )
        options[name] = sorted(items, key=lambda o: (o.cost, -o.score))
    if monotone:
        options = {name: fit_options(opts, scores.baseline) for name, opts in options.items()}
    return options


def fit_options(options: Sequence[LayerOption], baseline: float) -> list[LayerOption]:
    """One layer's options (cheapest first) with scores fitted non-decreasing in cost.

    "Leave alone" keeps the baseline exactly and bounds the fit (bounded isotonic regression
    is the unbounded fit clipped to the bound). Failed (-inf) candidates stay failed.

    Example:
        >>> opts = [LayerOption(0.2, 1, 2, 0.9), LayerOption(0.5, 2, 5, 0.8),
        ...         LayerOption(1.0, None, 10, 1.0)]
        >>> [round(o.score, 3) for o in fit_options(opts, 1.0)]
        [0.85, 0.85, 1.0]
    """
    fitted: dict[int, LayerOption] = {}
    # Each scheme has its own curve (a mixed-scheme layer has one per scheme).
    for scheme in dict.fromkeys(o.scheme for o in options if o.rank is not None):
        curve = [i for i, o in enumerate(options) if o.rank is not None and o.scheme == scheme]
        values = isotonic([options[i].score for i in curve])
        for i, value in zip(curve, values, strict=True):
            fitted[i] = dataclasses.replace(options[i], score=min(value, baseline))
    return [fitted.get(i, o) for i, o in enumerate(options)]


def non_monotone(options: Mapping[str, Sequence[LayerOption]]) -> list[str]:
    """Names of layers whose scores (options cheapest first) fall somewhere as cost grows.

    Example:
        >>> opts = {"a": [LayerOption(0.2, 1, 2, 0.9), LayerOption(0.5, 2, 5, 0.8),
        ...               LayerOption(1.0, None, 10, 1.0)]}
        >>> non_monotone(opts)
        ['a']
    """
    return [name for name, opts in options.items() if not is_monotone([o.score for o in opts])]
