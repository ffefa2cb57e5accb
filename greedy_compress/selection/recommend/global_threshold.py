"""One global importance threshold over every prunable layer (NetsPresso's ``layer_norm``).

A filter-pruning scheme scores each channel group (its ``policy`` combines the layers a
residual add ties, its ``group_policy`` scores a grouped conv's parts) and rescales the
scores of each group by its ``layer_norm`` so that groups compare. One threshold then
decides for all of them: a group loses the channels scoring at most the threshold (a group
split into parts, the same number from each part: the smallest count of its parts under
``"count"``, the positions under ``"average"`` / ``"sum"``), and the threshold is the lowest
that removes ``ratio`` of the channels. Each group keeps its best-scoring channel (one per
part), so no layer is emptied.

Unlike :func:`~greedy_compress.selection.recommend_slamp`, whose LAMP score is its own layer
normalisation of single convs, the unit here is the channel group: layers a residual add
ties are scored and pruned together, as the scheme prunes them.

Example:
    >>> selection = recommend_global_threshold(model, ratio=0.3, input_shape=(1, 1, 8, 8))
    >>> small = apply_selection(model, selection)
    >>> measured = count_macs(small, example_input) / count_macs(model, example_input)
    >>> abs(measured - selection.predicted_ratio) < 1e-9
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter, check_open_unit
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.model.cost import CostMetric, check_metric
from greedy_compress.model.hashing import architecture_hash
from greedy_compress.model.profile import make_example_input, profile_model
from greedy_compress.schemes import FilterPruning, IndexPruning, Scheme, get_scheme
from greedy_compress.selection.selection import LayerChoice, Selection

__all__ = ["recommend_global_threshold"]

_OWNER = "recommend_global_threshold"


def _removed(scores: torch.Tensor, threshold: float, parts: int) -> int:
    """Channels a group loses at ``threshold``: its rows (parts, or one row of positions)
    each lose their scores at most it, all by the smallest such count, one kept per row."""
    below = int((scores <= threshold).sum(dim=1).min())
    return parts * min(below, scores.shape[1] - 1)


def recommend_global_threshold(
    model: nn.Module,
    *,
    ratio: float,
    scheme: str | Scheme = "filter_pruning_l2",
    example_input: torch.Tensor | None = None,
    input_shape: Sequence[int] | None = None,
    layers: Iterable[str] | None = None,
    cost: CostMetric = "mac",
) -> Selection:
    """Prune ``ratio`` of the channels of ``layers`` by one threshold on the scheme's
    layer-normalised importances.

    Args:
        model: the trained model (weights only, or data for a data criterion's scheme).
        ratio: fraction of the channels to remove, in (0, 1).
        scheme: a filter-pruning scheme (a name or a :class:`FilterPruning`, whose
            ``policy``, ``layer_norm`` and ``group_policy`` are used).
        example_input, input_shape: an input the model accepts, or its shape.
        layers: the layers (each naming its channel group) that may lose channels; default
            every layer the scheme can prune.
        cost: the metric of the selection's predicted ratio (its exact cost).

    Returns:
        A :class:`Selection` that records each pruned layer's kept channels
        (``details["replay"]``), so :func:`~greedy_compress.apply_selection` builds exactly
        them; ``details["global_threshold"]`` holds the threshold and the options.

    Raises:
        InvalidParameterError: a scheme that does not rank channels by a criterion, or a
            layer it cannot prune.
        TargetUnreachableError: ``ratio`` needs more than all but one channel per group
            (per part).
    """
    ratio = check_open_unit(ratio, "ratio", _OWNER)
    found = get_scheme(scheme, _OWNER)
    if not isinstance(found, FilterPruning) or isinstance(found, IndexPruning):
        raise bad_parameter(
            "scheme",
            _OWNER,
            "a filter-pruning scheme ranking channels by a criterion (filter_pruning_l2, "
            "filter_pruning_gm, filter_pruning_nuclear or a FilterPruning)",
            found.name,
        )
    metric = check_metric(cost, _OWNER, analytic=True)
    example = make_example_input(example_input, input_shape, _OWNER, like=model)
    found.check_ready()
    profile = profile_model(model, example)
    profile = found.prepare(model, example_input=example, profile=profile) or profile
    groups = found.prunable_layers()
    if isinstance(layers, str):
        raise bad_parameter("layers", _OWNER, "a list of layer names", layers)
    names = list(groups) if layers is None else list(dict.fromkeys(layers))
    skipped = found.skipped_layers()
    for name in names:
        if name not in groups:
            reason = skipped.get(name, "not a Conv/Linear of the model")
            raise bad_parameter(
                "layers", _OWNER, f"layers {found.name} can prune ({name!r}: {reason})", name
            )
    if not names:
        raise bad_parameter("layers", _OWNER, "a non-empty list of layer names", layers)

    graph = found.graph_for(model)
    scores = {name: found.threshold_scores(model, graph, groups[name]) for name in names}
    total = sum(groups[name].size for name in names)

    def removed_at(threshold: float) -> dict[str, int]:
        return {n: _removed(s, threshold, groups[n].parts) for n, s in scores.items()}

    levels = torch.cat([s.reshape(-1) for s in scores.values()]).unique().tolist()  # sorted
    needed = ratio * total
    reachable = sum(removed_at(levels[-1]).values())
    if reachable < needed:
        raise TargetUnreachableError(
            f"Pruning ratio {ratio:g} is out of reach: keeping one channel per group (per "
            f"part) removes at most {reachable / total:.4f} of the channels. Use a ratio <= "
            f"{reachable / total:.4f}."
        )
    low, high = 0, len(levels) - 1
    while low < high:  # the lowest threshold removing enough (removals grow with it)
        middle = (low + high) // 2
        if sum(removed_at(levels[middle]).values()) >= needed:
            high = middle
        else:
            low = middle + 1
    threshold = levels[low]
    removed = removed_at(threshold)

    choices: dict[str, LayerChoice] = {}
    replay: dict[str, dict[str, list[int]]] = {}
    for name in names:
        if removed[name] == 0:
            continue
        info = profile.layers[name]
        rank = groups[name].size - removed[name]
        record = found.factorize_in(model, name).replay(rank)
        assert record is not None  # a pruning factorization records its kept channels
        replay[name] = {"kept": list(record["kept"])}
        kept_ratio = found.cost(info, rank).get(metric) / info.cost.get(metric)
        choices[name] = LayerChoice(kept_ratio, rank, None)
    exact = found.exact_costs()
    predicted = exact.cost(profile.model_cost, {n: c.rank for n, c in choices.items()}).get(
        metric
    ) / profile.model_cost.get(metric)
    return Selection(
        scheme=found.name,
        solver="global_threshold",
        cost_metric=metric,
        target=predicted,
        predicted_ratio=predicted,
        choices=choices,
        details={
            "global_threshold": {
                "ratio": ratio,
                "pruned_fraction": sum(removed.values()) / total,
                "threshold": threshold,
                "policy": found.policy,
                "layer_norm": found.layer_norm,
                "group_policy": found.group_policy,
            },
            "input_shape": list(example.shape),
            "model": architecture_hash(model),
            "replay": replay,
        },
    )
