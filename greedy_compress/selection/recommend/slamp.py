"""SLAMP: structured layer-adaptive magnitude pruning ratios from the weights alone.

LAMP (Lee, Park, Mo, Ahn and Shin, "Layer-adaptive sparsity for the magnitude-based
pruning", ICLR 2021) scores each weight by its squared magnitude over the sum of the
squared magnitudes of the weights of its layer that are at least as large. SLAMP applies it
to whole filters (output channels): with a layer's filters sorted by squared L2 norm
``n_1 <= n_2 <= ... <= n_m``, filter ``u`` scores ``n_u / (n_u + ... + n_m)``. The scores
are comparable across layers, so **one global threshold** decides: filters are removed in
increasing score order until the requested fraction of filters (or of their parameters)
is gone. A layer's largest filter scores 1 and is never removed, so no layer is emptied.

Within a layer the kept filters are the largest by L2 norm, the ones an L2 filter-pruning
scheme keeps; so the result is a per-layer filter count (and the indices, for reference).

Turning it into a selection for a filter-pruning scheme whose rank is the number of kept
filters (issue 3's schemes)::

    recommendation = recommend_slamp(model, ratio=0.3, layers=prunable_layer_names)
    profile = profile_model(model, example_input)
    selection = recommendation.to_selection(scheme="l2_filter_pruning", profile=profile)
    small = apply_selection(model, selection)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter, check_choice, check_open_unit
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.model.cost import CostMetric, check_metric
from greedy_compress.model.profile import ModelProfile
from greedy_compress.schemes import Scheme, get_scheme
from greedy_compress.selection.solvers import LayerChoice, Selection

__all__ = ["LayerPruning", "SlampRecommendation", "lamp_scores", "recommend_slamp"]

_OWNER = "recommend_slamp"
PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of each filter (row along dim 0) of ``weight``; the largest filter scores 1.

    Ties in norm are ordered by index, so scores are well defined; all-zero filters score 0
    (the layer's last filter in sorted order still scores 1, so one filter always survives).

    Example:
        >>> lamp_scores(torch.tensor([[3.0], [1.0], [2.0]]))
        tensor([1.0000, 0.0714, 0.3077])
    """
    norms = weight.detach().double().reshape(weight.shape[0], -1).pow(2).sum(dim=1)
    order = torch.argsort(norms, stable=True)
    sorted_norms = norms[order]
    # Suffix sums: each filter's norm plus every filter at least as large.
    tails = sorted_norms.flip(0).cumsum(0).flip(0)
    sorted_scores = torch.where(tails > 0, sorted_norms / tails.clamp_min(1e-300), 0.0)
    sorted_scores[-1] = 1.0
    scores = torch.empty_like(sorted_scores)
    scores[order] = sorted_scores
    return scores.to(weight.dtype if weight.is_floating_point() else torch.float64)


@dataclass(frozen=True)
class LayerPruning:
    """What SLAMP keeps of one layer."""

    filters: int  # output channels before pruning
    keep: int  # filters kept (>= 1)
    kept_indices: tuple[int, ...]  # sorted

    @property
    def keep_ratio(self) -> float:
        """Fraction of the layer's filters kept."""
        return self.keep / self.filters

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "filters": self.filters,
            "keep": self.keep,
            "keep_ratio": self.keep_ratio,
            "kept_indices": list(self.kept_indices),
        }


@dataclass(frozen=True)
class SlampRecommendation:
    """Per-layer filter counts meeting a global pruning ratio, from one LAMP threshold.

    ``ratio`` is the fraction asked to be removed, ``pruned_fraction`` what was removed
    (>= ratio), both counted in ``count`` units ("filters" or "params") over ``layers``.
    ``threshold`` is the largest LAMP score removed: every removed filter scores at most
    it and every kept one at least it.
    """

    ratio: float
    count: str
    pruned_fraction: float
    threshold: float
    layers: dict[str, LayerPruning]

    @property
    def keep(self) -> dict[str, int]:
        """Filters kept per layer."""
        return {name: layer.keep for name, layer in self.layers.items()}

    @property
    def keep_ratios(self) -> dict[str, float]:
        """Fraction of filters kept per layer."""
        return {name: layer.keep_ratio for name, layer in self.layers.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "ratio": self.ratio,
            "count": self.count,
            "pruned_fraction": self.pruned_fraction,
            "threshold": self.threshold,
            "layers": {name: layer.to_dict() for name, layer in self.layers.items()},
        }

    def to_selection(
        self, *, scheme: str | Scheme, profile: ModelProfile, metric: CostMetric = "mac"
    ) -> Selection:
        """A :class:`Selection` for a scheme whose rank is the number of kept filters.

        Layers that keep every filter are left out (left alone). Costs and ratios come from
        ``scheme.cost`` on the profiled layers; ``predicted_score`` is None (no evaluation).

        Raises:
            InvalidParameterError: a layer is missing from ``profile``, or the scheme's
                maximum rank for a layer is not its filter count.
        """
        owner = "SlampRecommendation.to_selection"
        scheme = get_scheme(scheme, owner)
        metric = check_metric(metric, owner)
        choices: dict[str, LayerChoice] = {}
        saved = 0
        for name, layer in self.layers.items():
            info = profile.layers.get(name)
            if info is None:
                raise bad_parameter(
                    "profile", owner, f"a profile of the model listing layer {name!r}", name
                )
            if scheme.max_rank(info) != layer.filters:
                raise bad_parameter(
                    "scheme",
                    owner,
                    f"a scheme whose rank counts kept filters ({layer.filters} for {name!r})",
                    scheme.name,
                )
            if layer.keep == layer.filters:
                continue
            original, new = info.cost.get(metric), scheme.cost(info, layer.keep).get(metric)
            choices[name] = LayerChoice(ratio=new / original, rank=layer.keep, predicted_score=None)
            saved += original - new
        total = profile.model_cost.get(metric)
        return Selection(
            scheme=scheme.name,
            solver="slamp",
            metric=metric,
            target=(total - saved) / total,
            predicted_ratio=(total - saved) / total,
            choices=choices,
            details={"slamp": self.to_dict()},
        )


def _default_layers(model: nn.Module) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups == 1
    ]


def _check_layers(model: nn.Module, layers: Iterable[str] | None) -> list[str]:
    if layers is None:
        names = _default_layers(model)
    elif isinstance(layers, str):
        raise bad_parameter("layers", _OWNER, "a list of layer names", layers)
    else:
        names = list(dict.fromkeys(layers))
    modules = dict(model.named_modules())
    for name in names:
        if not isinstance(modules.get(name), PRUNABLE_TYPES):
            found = [n for n, m in modules.items() if n and isinstance(m, PRUNABLE_TYPES)]
            raise bad_parameter(
                "layers",
                _OWNER,
                "names of Conv1d/Conv2d/Linear modules of the model, e.g. " + ", ".join(found[:5]),
                name,
            )
    if not names:
        raise bad_parameter("layers", _OWNER, "a non-empty list of layer names", layers)
    return names


def recommend_slamp(
    model: nn.Module,
    *,
    ratio: float,
    layers: Iterable[str] | None = None,
    count: Literal["filters", "params"] = "filters",
) -> SlampRecommendation:
    """How many filters each layer keeps so ``ratio`` of them go, by one global LAMP threshold.

    Filters are removed in increasing LAMP score (ties: order of ``layers``, then index) until
    at least ``ratio`` of the total is removed; each layer's largest filter is never removed.

    Args:
        model: the trained model (only its weights are read).
        ratio: fraction to remove, in (0, 1).
        layers: names of the layers whose filters may be pruned. Default: every
            ``Conv1d``/``Conv2d`` with ``groups=1`` (Linear layers only when named, since
            pruning a classifier's outputs changes the model's output).
        count: ``"filters"`` counts filters; ``"params"`` weighs each filter by its own
            parameters (weights and bias).

    Returns:
        A :class:`SlampRecommendation` (per layer: filters, kept count, kept indices).

    Raises:
        TargetUnreachableError: ``ratio`` needs more than all but one filter per layer.

    Example:
        >>> rec = recommend_slamp(model, ratio=0.3)       # doctest: +SKIP
        >>> rec.keep                                       # doctest: +SKIP
        {'features.0': 22, 'features.3': 41}
    """
    ratio = check_open_unit(ratio, "ratio", _OWNER)
    count = check_choice(count, ("filters", "params"), "count", _OWNER)
    names = _check_layers(model, layers)

    # One entry per filter: (score, layer position, filter index, weight in `count` units).
    pool: list[tuple[float, int, int, int]] = []
    sizes: dict[str, int] = {}
    total = 0
    for position, name in enumerate(names):
        module = model.get_submodule(name)
        weight = module.weight
        filters = weight.shape[0]
        sizes[name] = filters
        per_filter = 1 if count == "filters" else weight[0].numel() + int(module.bias is not None)
        total += filters * per_filter
        scores = lamp_scores(weight).tolist()
        top = max(range(filters), key=lambda i: (scores[i], i))
        pool += [(s, position, i, per_filter) for i, s in enumerate(scores) if i != top]

    needed = ratio * total
    reachable = sum(item[3] for item in pool)
    if reachable < needed:
        raise TargetUnreachableError(
            f"Pruning ratio {ratio:g} is out of reach: keeping one filter per layer removes at "
            f"most {reachable / total:.4f} of the {count}. Use a ratio <= {reachable / total:.4f}."
        )
    pool.sort(key=lambda item: item[:3])
    removed: dict[str, set[int]] = {name: set() for name in names}
    amount, threshold = 0, 0.0
    for score, position, index, weight_units in pool:
        if amount >= needed:
            break
        removed[names[position]].add(index)
        amount += weight_units
        threshold = score
    result = {
        name: LayerPruning(
            filters=sizes[name],
            keep=sizes[name] - len(removed[name]),
            kept_indices=tuple(i for i in range(sizes[name]) if i not in removed[name]),
        )
        for name in names
    }
    return SlampRecommendation(
        ratio=ratio,
        count=count,
        pruned_fraction=amount / total,
        threshold=threshold,
        layers=result,
    )
