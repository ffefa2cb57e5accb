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

Example (a selection for filter pruning, whose rank is the number of kept filters):
    >>> recommendation = recommend_slamp(model, ratio=0.3)
    >>> selection = recommendation.to_selection(model, scheme="filter_pruning_l2",
    ...                                         input_shape=(1, 1, 8, 8))
    >>> small = apply_selection(model, selection)
    >>> measured = count_macs(small, example_input) / count_macs(model, example_input)
    >>> abs(measured - selection.predicted_ratio) < 1e-9
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter, check_choice, check_open_unit
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.model.cost import CostMetric, check_metric
from greedy_compress.model.hashing import architecture_hash
from greedy_compress.model.modules import weight_of
from greedy_compress.model.profile import make_example_input, profile_model
from greedy_compress.schemes import Scheme, get_scheme
from greedy_compress.selection.selection import LayerChoice, Selection

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
        self,
        model: nn.Module,
        *,
        scheme: str | Scheme,
        example_input: torch.Tensor | None = None,
        input_shape: Sequence[int] | None = None,
        cost: CostMetric = "mac",
    ) -> Selection:
        """A :class:`Selection` for a scheme whose rank is the number of kept filters.

        The scheme is prepared on ``model`` (pruning schemes trace it with the example
        input), so the predicted ratio is the exact cost of the pruned model, layers that
        share channels included. Layers that keep every filter are left alone;
        ``predicted_score`` is None (nothing was evaluated).

        Raises:
            InvalidParameterError: a layer the scheme cannot compress, or whose maximum rank
                is not its filter count.
        """
        owner = "SlampRecommendation.to_selection"
        scheme = get_scheme(scheme, owner)
        metric = check_metric(cost, owner)
        example = make_example_input(example_input, input_shape, owner, like=model)
        scheme.check_ready()
        profile = profile_model(model, example)
        profile = scheme.prepare(model, example_input=example, profile=profile) or profile
        choices: dict[str, LayerChoice] = {}
        for name, layer in self.layers.items():
            info = profile.layers.get(name)
            reason = "not profiled" if info is None else scheme.unsupported_reason(info, metric)
            if info is None or reason is not None:
                raise bad_parameter(
                    "scheme",
                    owner,
                    f"a scheme that can compress layer {name!r} ({reason})",
                    scheme.name,
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
            new = scheme.cost(info, layer.keep).get(metric)
            choices[name] = LayerChoice(new / info.cost.get(metric), layer.keep, None)
        exact = scheme.exact_costs()
        total = profile.model_cost.get(metric)
        if exact is not None:
            kept = exact.cost(profile.model_cost, {n: c.rank for n, c in choices.items()})
            ratio = kept.get(metric) / total
        else:
            saved = sum(
                profile.layers[n].cost.get(metric) * (1 - c.kept_ratio) for n, c in choices.items()
            )
            ratio = (total - saved) / total
        return Selection(
            scheme=scheme.name,
            solver="slamp",
            cost_metric=metric,
            target=ratio,
            predicted_ratio=ratio,
            choices=choices,
            details={
                "slamp": self.to_dict(),
                "input_shape": list(example.shape),
                "model": architecture_hash(model),
            },
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
        >>> rec = recommend_slamp(model, ratio=0.3)
        >>> list(rec.keep), round(rec.pruned_fraction, 2) >= 0.3
        (['features.0', 'features.3', 'features.7', 'features.10'], True)
    """
    ratio = check_open_unit(ratio, "ratio", _OWNER)
    unit = check_choice(count, ("filters", "params"), "count", _OWNER)
    names = _check_layers(model, layers)

    # One entry per filter: (score, layer position, filter index, weight in `count` units).
    pool: list[tuple[float, int, int, int]] = []
    sizes: dict[str, int] = {}
    total = 0
    for position, name in enumerate(names):
        module = model.get_submodule(name)
        weight = weight_of(module)
        filters = weight.shape[0]
        sizes[name] = filters
        per_filter = 1 if unit == "filters" else weight[0].numel() + int(module.bias is not None)
        total += filters * per_filter
        scores = lamp_scores(weight).tolist()
        top = max(range(filters), key=lambda i: (scores[i], i))
        pool += [(s, position, i, per_filter) for i, s in enumerate(scores) if i != top]

    needed = ratio * total
    reachable = sum(item[3] for item in pool)
    if reachable < needed:
        raise TargetUnreachableError(
            f"Pruning ratio {ratio:g} is out of reach: keeping one filter per layer removes at "
            f"most {reachable / total:.4f} of the {unit}. Use a ratio <= {reachable / total:.4f}."
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
        count=unit,
        pruned_fraction=amount / total,
        threshold=threshold,
        layers=result,
    )
