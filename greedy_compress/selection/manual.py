"""Manual mode: list the layers a scheme can compress, and turn per-layer values chosen by
hand into a :class:`~greedy_compress.selection.Selection` for :func:`apply_selection`.

Works for every scheme, with the values NetsPresso's users write per method
(:attr:`~greedy_compress.schemes.Scheme.manual_values`):

- every scheme but ``filter_pruning_index``: a ratio in (0, 1] (a float: the fraction of the
  layer's cost kept, like the search's candidates, or with ``ratio_of="rank"`` the fraction
  of its channels/rank kept; 1 leaves the layer alone);
- ``weight_svd``, ``spatial_svd``, ``cp``: one rank, an int in ``[1, max rank]``;
- ``tucker``: two ranks ``(in rank, out rank)``, each in ``[1, R_in]`` / ``[1, R_out]``;
  the selection records both, and the built layer has exactly those;
- ``filter_pruning_index``: the list of output-channel indices to remove.

Explicit ranks are built as given (no multiplicity rounding); like ratios, they must lower
the layer's cost. :func:`available_layers` lists each layer's allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from greedy_compress._util.constraints import (
    bad_parameter,
    check_choice,
    check_positive_int,
    check_ratio,
)
from greedy_compress.dictionary.bounds import compresses, config_bounds
from greedy_compress.model.config_list import ConfigList
from greedy_compress.model.cost import Cost, CostMetric, check_metric
from greedy_compress.model.hashing import architecture_hash
from greedy_compress.model.profile import LayerInfo, ModelProfile, make_example_input, profile_model
from greedy_compress.schemes import Scheme, get_scheme
from greedy_compress.selection.selection import LayerChoice, Selection

__all__ = ["AvailableLayer", "AvailableLayers", "available_layers", "manual_selection"]

_RATIO_OF = ("cost", "rank")


@dataclass(frozen=True)
class AvailableLayer:
    """One layer a scheme can compress, and the values it accepts.

    ``size`` is the knob's full size: channels for pruning schemes (output channels for
    filter pruning, input channels for channel pruning), the full rank for SVD schemes.
    ``ranks`` is the largest value of each explicit rank manual mode accepts (``(size,)``;
    Tucker: ``(R_in, R_out)``); ``accepts`` says what a value may be, with its range.
    ``cost`` is the cost of everything the scheme changes at this layer. ``config`` is what
    a ``config_list`` gave the layer (``min_ratio`` / ``max_ratio`` / ``ratio``; empty: no
    bound).
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    size: int
    knob: str
    accepts: str
    cost: Cost
    ranks: tuple[int, ...] = ()
    config: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AvailableLayers:
    """What :func:`available_layers` found: usable layers in network order, and the rest."""

    scheme: str
    layers: dict[str, AvailableLayer]
    skipped: dict[str, str] = field(default_factory=dict)

    def to_table(self) -> str:
        """A readable listing to fill values in from."""
        lines = [f"scheme {self.scheme}: {len(self.layers)} layer(s)"]
        width = max((len(n) for n in self.layers), default=4)
        for layer in self.layers.values():
            config = "".join(f", {key} {value:g}" for key, value in layer.config.items())
            lines.append(
                f"  {layer.name:<{width}}  {layer.kind:<6} {layer.in_channels:>5} -> "
                f"{layer.out_channels:<5} {layer.knob} {layer.size:>5}  accepts {layer.accepts}"
                + (f" (config_list{config})" if config else "")
            )
        for name, reason in self.skipped.items():
            lines.append(f"  {name:<{width}}  skipped: {reason}")
        return "\n".join(lines)


def _prepared(
    model: nn.Module,
    scheme: Scheme,
    example: torch.Tensor,
    ignore: Iterable[str],
    details: Mapping[str, object] | None,
) -> ModelProfile:
    profile = profile_model(model, example, ignore=ignore)
    return scheme.prepare(model, example_input=example, profile=profile, details=details) or profile


def _listing_details(model: nn.Module, scheme: Scheme) -> dict[str, object] | None:
    if scheme.manual_values == "indices":  # list every layer, whatever indices are set
        return {"indices": {name: [] for name, _ in model.named_modules() if name}}
    return None


def available_layers(
    model: nn.Module,
    *,
    scheme: str | Scheme,
    example_input: torch.Tensor | None = None,
    input_shape: Sequence[int] | None = None,
    ignore: Iterable[str] = (),
    cost: CostMetric = "mac",
    config_list: ConfigList | None = None,
) -> AvailableLayers:
    """List the layers ``scheme`` can compress, their channel counts and accepted values.

    With ``config_list`` (see :mod:`greedy_compress.dictionary.bounds`), only the layers it
    chooses are listed, each with the bounds or fixed ratio it gives; the others are
    listed as skipped.

    Example:
        >>> print(available_layers(model, scheme="filter_pruning_l2",
        ...                        input_shape=(1, 1, 8, 8)).to_table())
        scheme filter_pruning_l2: 4 layer(s)
          features.0   conv2d     1 -> 32    output channels    32  accepts a ratio in (0, 1] ...
        ...
    """
    owner = "available_layers"
    scheme = get_scheme(scheme, owner)
    metric = check_metric(cost, owner, analytic=True)
    chosen = None if config_list is None else config_bounds(model, config_list, owner=owner)
    example = make_example_input(example_input, input_shape, owner, like=model)
    if scheme.manual_values == "indices":
        scheme = type(scheme)()  # a fresh one: list every layer, whatever indices are set
    profile = _prepared(model, scheme, example, ignore, _listing_details(model, scheme))
    knob = scheme.rank_unit
    layers, skipped = {}, dict(profile.unusable)
    for name, info in profile.layers.items():
        reason = scheme.unsupported_reason(info, metric)
        if reason is not None:
            skipped[name] = reason
            continue
        if not compresses(chosen, name):
            skipped[name] = "not chosen by the config_list"
            continue
        size = scheme.max_rank(info)
        layers[name] = AvailableLayer(
            name=name,
            kind=info.kind,
            in_channels=info.in_channels,
            out_channels=info.out_channels,
            size=size,
            knob=knob,
            accepts=_accepts(scheme, info, metric),
            cost=info.cost,
            ranks=scheme.mode_ranks(info),
            config={} if chosen is None else dict(chosen[name]),
        )
    return AvailableLayers(scheme=scheme.name, layers=layers, skipped=skipped)


def _accepts(scheme: Scheme, info: LayerInfo, metric: CostMetric) -> str:
    """What manual mode accepts for one layer, with the allowed ranges."""
    size, knob = scheme.max_rank(info), scheme.rank_unit
    ratio = f"a ratio in (0, 1] of its {metric} cost"
    if scheme.manual_values == "indices":
        return f"a list of channel indices in [0, {size}) to remove (not all)"
    if scheme.manual_values == "rank":
        return f"a rank in [1, {size}] (an int) or {ratio}"
    if scheme.manual_values == "ranks":
        tops = scheme.mode_ranks(info)
        if len(tops) == 2:
            return f"two ranks (in rank in [1, {tops[0]}], out rank in [1, {tops[1]}]) or {ratio}"
        return f"{len(tops)} ranks in " + ", ".join(f"[1, {t}]" for t in tops) + f" or {ratio}"
    return f"{ratio} (or of its {knob} with ratio_of='rank')"


def _check_ranks(
    name: str, value: object, layer: AvailableLayer, mode: str, owner: str
) -> tuple[int, ...] | None:
    """The explicit ranks ``value`` gives (None: it is a ratio, checked by the caller).

    Raises:
        InvalidParameterError: not a value the scheme accepts, or out of range; the message
            names the layer, the value and the range.
    """
    if isinstance(value, float) or mode not in ("rank", "ranks"):
        return None
    tops = layer.ranks if mode == "ranks" else (layer.size,)
    given: Sequence[object] = (
        value if mode == "ranks" and isinstance(value, (tuple, list)) else (value,)
    )
    if (
        len(given) != len(tops)
        or any(isinstance(r, bool) or not isinstance(r, int) for r in given)
        or not all(1 <= r <= top for r, top in zip(given, tops, strict=True))  # type: ignore[operator]
    ):
        raise bad_parameter(
            f"values[{name!r}]", owner, f"for layer {name!r} {layer.accepts}", value
        )
    return tuple(int(r) for r in given)  # type: ignore[call-overload]


def _check_indices(name: str, value: object, size: int, owner: str) -> list[int]:
    allowed = f"a list of distinct channel indices in [0, {size}) for layer {name!r}, not all"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise bad_parameter(f"values[{name!r}]", owner, allowed, value)
    items = list(value)
    if any(isinstance(i, bool) or not isinstance(i, int) for i in items):
        raise bad_parameter(f"values[{name!r}]", owner, allowed, value)
    if len(set(items)) != len(items) or any(not 0 <= i < size for i in items):
        raise bad_parameter(f"values[{name!r}]", owner, allowed, value)
    if len(items) >= size:
        raise bad_parameter(
            f"values[{name!r}]", owner, f"leaving at least one of the {size} channels", value
        )
    return sorted(items)


def _check_ratio(name: str, value: object, owner: str) -> float:
    return check_ratio(value, f"values[{name!r}]", owner)


def manual_selection(
    model: nn.Module,
    values: Mapping[str, float | Sequence[int]],
    *,
    scheme: str | Scheme,
    example_input: torch.Tensor | None = None,
    input_shape: Sequence[int] | None = None,
    cost: CostMetric = "mac",
    ratio_of: str = "cost",
    multiplicity: int = 1,
) -> Selection:
    """Turn hand-chosen per-layer values into a selection, validating every layer first.

    Args:
        model: the model to compress.
        values: ``{layer name: value}``; layers not named stay. A value is a ratio in
            (0, 1] (a float), one int rank (SVD schemes, CP), two ranks ``(in rank, out
            rank)`` (Tucker), or for ``filter_pruning_index`` the list of output-channel
            indices to remove (see :func:`available_layers` for each layer's range).
        scheme: a scheme name or instance (see :func:`available_layers`).
        example_input: a tensor the model accepts; or give ``input_shape``.
        input_shape: shape of a zero input, batch dimension included.
        cost: ``"mac"`` or ``"memory"``: what a ratio is a fraction of.
        ratio_of: ``"cost"`` (the fraction of the layer's cost kept, as in the search) or
            ``"rank"`` (the fraction of its channels/rank kept).
        multiplicity: ranks/channel counts are rounded down to a multiple of this.

    Returns:
        A :class:`Selection` (solver ``"manual"``) for :func:`apply_selection`.

    Example:
        >>> selection = manual_selection(model, {"features.0": 0.5, "features.3": 0.25},
        ...                              scheme="filter_pruning_l2",
        ...                              input_shape=(1, 1, 8, 8), ratio_of="rank")
        >>> small = apply_selection(model, selection)
        >>> small.features[0].out_channels, small.features[3].out_channels
        (16, 16)
        >>> tucker = manual_selection(model, {"features.3": (8, 16)}, scheme="tucker",
        ...                           input_shape=(1, 1, 8, 8))
        >>> [conv.out_channels for conv in apply_selection(model, tucker).features[3]]
        [8, 16, 64]
    """
    owner = "manual_selection"
    scheme = get_scheme(scheme, owner)
    metric = check_metric(cost, owner, analytic=True)
    ratio_of = check_choice(ratio_of, _RATIO_OF, "ratio_of", owner)
    multiplicity = check_positive_int(multiplicity, "multiplicity", owner)
    example = make_example_input(example_input, input_shape, owner, like=model)
    if not isinstance(values, Mapping) or not values:
        raise bad_parameter("values", owner, "a non-empty dict {layer name: value}", values)
    listing = available_layers(model, scheme=scheme, example_input=example, cost=metric)
    for name in values:
        if name not in listing.layers:
            if name in listing.skipped:
                raise bad_parameter(
                    "values",
                    owner,
                    f"layers {scheme.name} can compress ({name!r}: {listing.skipped[name]})",
                    name,
                )
            known = ", ".join(list(listing.layers)[:8]) or "none"
            raise bad_parameter("values", owner, f"names of layers such as {known}", name)
    index_mode = scheme.manual_values == "indices"
    indices: dict[str, list[int]] = {}
    ratios: dict[str, float] = {}
    explicit: dict[str, tuple[int, ...]] = {}
    for name, value in values.items():
        if index_mode:
            indices[name] = _check_indices(name, value, listing.layers[name].size, owner)
            continue
        ranks = _check_ranks(name, value, listing.layers[name], scheme.manual_values, owner)
        if ranks is None:
            ratios[name] = _check_ratio(name, value, owner)
        else:
            explicit[name] = ranks
    # Validated everything: now the costs, on the scheme prepared with these values.
    details: dict[str, object] = {
        "input_shape": list(example.shape),
        "model": architecture_hash(model),
    }
    if index_mode:
        details["indices"] = indices
    profile = _prepared(model, scheme, example, (), details if index_mode else None)
    choices: dict[str, LayerChoice] = {}
    kept = profile.model_cost.get(metric)
    for name in values:
        info: LayerInfo = profile.layers[name]
        size = scheme.max_rank(info)
        ranks = explicit.get(name)
        if index_mode:
            rank = size - len(indices[name])
        elif ranks is not None:
            rank = max(ranks)
        elif ratios[name] == 1.0:
            continue
        elif ratio_of == "cost":
            rank = scheme.rank_for_ratio(info, ratios[name], metric, multiplicity)
        else:
            rank = max(1, math.floor(ratios[name] * size + 1e-9))
            rank = min(size, max(multiplicity, rank // multiplicity * multiplicity))
        built = scheme.cost(info, rank) if ranks is None else scheme.cost_at_ranks(info, ranks)
        new_cost = built.get(metric)
        if not index_mode and new_cost > info.cost.get(metric):
            what = (
                f"{rank} {scheme.rank_unit}s, multiplicity {multiplicity}"
                if ranks is None
                else f"ranks {list(ranks)}"
            )
            raise bad_parameter(
                f"values[{name!r}]",
                owner,
                f"a value whose rank compresses the layer ({what}, keep "
                f"{new_cost / info.cost.get(metric):.0%} of its {metric} cost; lower the value"
                + (" or the multiplicity" if ranks is None else "")
                + ", or leave the layer out)",
                values[name],
            )
        kept += new_cost - info.cost.get(metric)
        # Nothing was evaluated: no predicted score.
        several = ranks is not None and len(ranks) > 1  # Tucker's two: recorded as given
        choices[name] = LayerChoice(
            new_cost / info.cost.get(metric), rank, None, ranks=ranks if several else None
        )
    total = profile.model_cost.get(metric)
    exact = scheme.exact_costs()
    if exact is not None:  # exact even when pruned layers are adjacent
        kept = exact.cost(
            profile.model_cost, {name: choice.rank for name, choice in choices.items()}
        ).get(metric)
    return Selection(
        scheme=scheme.name,
        solver="manual",
        cost_metric=metric,
        target=kept / total,
        predicted_ratio=kept / total,
        choices=choices,
        details=details,
    )
