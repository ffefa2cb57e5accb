"""What a dictionary build will do, worked out before anything is evaluated.

Profiling the model, preparing the scheme and computing every candidate's rank and cost are
cheap; they tell which layers are scored, what the smallest reachable cost is and whether the
example input even fits the model. :func:`plan_dictionary` does only that, so
:func:`~greedy_compress.compress` can refuse an unreachable target before the expensive part.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.dictionary.bounds import (
    LEAVE_ALONE,
    LayerBounds,
    compresses,
    config_bounds,
    named_layers,
)
from greedy_compress.dictionary.evaluator import Evaluator
from greedy_compress.dictionary.fingerprint import make_fingerprint
from greedy_compress.dictionary.latency_table import LatencyTable
from greedy_compress.dictionary.scores import EvalScores, LayerScores, ScoreEntry
from greedy_compress.dictionary.settings import BuildSettings
from greedy_compress.errors import (
    NoCompressibleLayerError,
    ScoresMismatchError,
    TargetUnreachableError,
)
from greedy_compress.graph import ChannelCosts
from greedy_compress.model.cost import Cost, CostMetric
from greedy_compress.model.profile import ModelProfile, profile_model
from greedy_compress.schemes import Candidate, Scheme, get_scheme

__all__ = ["DictionaryPlan", "plan_dictionary", "rank_metric"]

_NAMES_SHOWN = 3
_LEFT_OUT = "not chosen by the config_list"


def rank_metric(metric: CostMetric) -> CostMetric:
    """The metric ranks are chosen and layers planned by: MACs stand in for latency, which
    is measured afterwards (:mod:`~greedy_compress.dictionary.latency`)."""
    return "mac" if metric == "latency" else metric


def _analytic(cost: Cost) -> Cost:
    return dataclasses.replace(cost, latency_ns=None)


def _no_layer_error(scheme: Scheme, skipped: Mapping[str, str]) -> NoCompressibleLayerError:
    """One short message (counts per reason, a few names each); the full list on the error."""
    if not skipped:
        summary = "it has no Conv1d, Conv2d or Linear layer"
    else:
        by_reason = Counter(skipped.values())
        parts = []
        for reason, count in by_reason.most_common():
            names = [n for n, r in skipped.items() if r == reason][:_NAMES_SHOWN]
            more = ", ..." if count > len(names) else ""
            parts.append(f"{count} x {reason} ({', '.join(names)}{more})")
        summary = f"{len(skipped)} layers skipped: " + "; ".join(parts)
    return NoCompressibleLayerError(
        f"The model has no layer that scheme {scheme.name!r} can compress: {summary}. "
        "Every layer and its reason: error.skipped.",
        dict(skipped),
    )


@dataclass
class DictionaryPlan:
    """The layers a build scores and their candidates, with nothing evaluated yet.

    Attributes:
        scheme: the prepared scheme.
        settings: the build settings.
        example: the example input the model was profiled with.
        profile: the model's profile (layer costs cover every module the scheme changes).
        planned: the layers to score, in network order.
        skipped: layers left out, with the reason.
        candidates: per planned layer, its candidate at every asked ratio.
        exact_costs: how a selection is priced when the layers' costs interact.
        latency: the latency measurements (:func:`~greedy_compress.dictionary.latency.
            plan_latency` sets them and the candidates' ``latency_ns``); None before, and
            for builds that measure no latency.
        bounds: per planned layer, what the ``config_list`` leaves the solver (layers
            without an entry are unbounded).
        left_out: layers the scheme can compress that the ``config_list`` does not choose;
            their candidates are in ``candidates`` so a saved dictionary that scored them
            stays usable (they are kept, left alone).
        extra: per layer, the fixed ratio added to its candidates (off the grid).
    """

    scheme: Scheme
    settings: BuildSettings
    example: torch.Tensor
    profile: ModelProfile
    planned: list[str]
    skipped: dict[str, str]
    candidates: dict[str, list[Candidate]]
    exact_costs: ChannelCosts | None
    latency: LatencyTable | None = None
    bounds: dict[str, LayerBounds] = dataclasses.field(default_factory=dict)
    left_out: tuple[str, ...] = ()
    extra: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    @property
    def cost_metric(self) -> CostMetric:
        """The metric ratios are fractions of."""
        return self.settings.cost

    def reachable_ratio(self, cost: CostMetric | None = None) -> float:
        """The smallest fraction of the model's cost any selection of these candidates
        keeps: every planned layer at its cheapest candidate, priced exactly (latency,
        once measured, additively).

        Example:
            >>> plan = plan_dictionary(model, scheme="spatial_svd", settings=BuildSettings(
            ...     input_shape=(1, 1, 8, 8)), owner="example")
            >>> 0.0 < plan.reachable_ratio() < 0.2
            True
        """
        metric = self.cost_metric if cost is None else cost
        cheapest = {}
        for name in self.planned:
            allowed = self.allowed(name)
            if allowed:
                cheapest[name] = min(allowed, key=lambda c: c.cost.get(metric))
        total = self.profile.model_cost
        if self.exact_costs is not None and metric != "latency":
            kept = self.exact_costs.cost(total, {n: c.rank for n, c in cheapest.items()})
        else:
            kept = total
            for name, candidate in cheapest.items():
                layer_cost = self.profile.layers[name].cost
                if candidate.cost.get(metric) < layer_cost.get(metric):
                    kept = kept - layer_cost + candidate.cost
        return kept.get(metric) / max(1, total.get(metric))

    def allowed(self, name: str) -> list[Candidate]:
        """The candidates of planned layer ``name`` its bounds allow (leaving it alone
        is not a candidate)."""
        bounds = self.bounds.get(name)
        return [
            c
            for c in self.candidates[name]
            if bounds is None or bounds.allows(c.kept_ratio, c.rank)
        ]

    def check_reachable(self, target: float) -> None:
        """Refuse a ``target`` (fraction of the plan's cost metric) that even the smallest
        candidates cannot reach.

        Raises:
            TargetUnreachableError: the message states the smallest reachable ratio.
        """
        reachable = self.reachable_ratio()
        if reachable > target:
            raise TargetUnreachableError(
                f"Target {target:g} is out of reach for {self.scheme.name}: with every layer "
                f"at its smallest candidate the model keeps {reachable:.4f} of its "
                f"{self.cost_metric} cost. Use a target >= {reachable:.4f}, smaller "
                "candidates, or another scheme."
            )

    def fingerprint(
        self, model: nn.Module, evaluator: Evaluator, data: str | None
    ) -> dict[str, Any]:
        """What the scores depend on (see
        :func:`~greedy_compress.dictionary.fingerprint.make_fingerprint`)."""
        found = make_fingerprint(
            model,
            scheme=self.scheme.name,
            metric=self.cost_metric,
            multiplicity=self.settings.multiplicity,
            candidates=self.settings.ratios,
            evaluator=evaluator,
            input_shape=self.example.shape,
            evaluator_data=data,
        )
        if self.scheme.settings():  # e.g. a pruning scheme's data and sample count
            found["scheme_settings"] = self.scheme.settings()
        if self.extra:  # fixed ratios off the grid: more candidates than the grid gives
            found["extra_candidates"] = self.extra
        if self.settings.measures_latency:  # device, threads, batch size, torch, timer
            found["latency"] = self.settings.latency_meter.describe(self.example)
        return found

    def assemble(
        self,
        fingerprint: dict[str, Any],
        baseline: float,
        scores: Mapping[tuple[str, int], float | None],
    ) -> EvalScores:
        """The dictionary of every planned layer whose candidates are all in ``scores``, with
        the bounds; layers the config list leaves out but ``scores`` holds (an earlier
        build scored them) are kept, bounded to be left alone."""
        layers = {}
        for name in self.candidates:  # network order
            if all((name, c.rank) in scores for c in self.candidates[name]):
                entries = tuple(
                    ScoreEntry.scored(c, scores[(name, c.rank)]) for c in self.candidates[name]
                )
                layers[name] = LayerScores(info=self.profile.layers[name], entries=entries)
        kept_out = [name for name in self.left_out if name in layers]
        return EvalScores(
            fingerprint=fingerprint,
            baseline=baseline,
            model_cost=self.profile.model_cost,
            planned=tuple(self.planned),
            layers=layers,
            skipped={
                **self.skipped,
                **{n: _LEFT_OUT for n in self.left_out if n not in layers},
            },
            exact_costs=self.exact_costs,
            latency=self.latency,
            bounds={**self.bounds, **dict.fromkeys(kept_out, LEAVE_ALONE)},
        )

    def check_saved(self, saved: EvalScores, source: str) -> None:
        """Refuse a saved dictionary whose layers, ranks or costs are not what this model
        and scheme give (an edited file, or a change this fingerprint does not see)."""
        made_with = saved.fingerprint.get("extra_candidates", {})
        if made_with != self.extra:
            raise ScoresMismatchError(
                f"{source} was built with the fixed config_list ratios {made_with or 'none'} "
                f"off the candidate grid, this build with {self.extra or 'none'}: each adds "
                "its own candidate. Use another scores path, or put fixed ratios on the grid "
                "(candidates=[...]) to share one dictionary."
            )
        for name, layer in saved.layers.items():
            dropped = self.latency is not None and name in self.skipped  # all slower now
            if name not in self.candidates and not dropped:
                raise ScoresMismatchError(
                    f"{source} scores layer {name!r}, which this model and scheme do not plan."
                )
            info = self.profile.layers[name]
            expected = [(c.rank, c.cost) for c in self.candidates.get(name, [])]
            found = [(e.rank, e.cost) for e in layer.entries]
            if self.latency is not None:
                # Latencies are measurements (timed again when the saved ones do not cover
                # the plan, so candidates may be dropped differently): each saved rank's
                # MACs and parameters must be what the scheme gives.
                found = [(e.rank, _analytic(e.cost)) for e in layer.entries]
                expected = [(r, _analytic(self.scheme.cost(info, r))) for r, _ in found]
            if found != expected or _analytic(layer.info.cost) != _analytic(info.cost):
                raise ScoresMismatchError(
                    f"{source} gives layer {name!r} ranks and costs {found} (layer cost "
                    f"{layer.info.cost}); this model and scheme give {expected} (layer cost "
                    f"{self.profile.layers[name].cost}). Delete the file to rebuild it."
                )


def plan_dictionary(
    model: nn.Module, *, scheme: str | Scheme, settings: BuildSettings, owner: str
) -> DictionaryPlan:
    """Profile ``model``, prepare ``scheme`` and work out every candidate; no evaluation.

    Raises:
        InvalidParameterError: a bad ``ignore`` name or example input setting.
        ModelInputError: the model fails on the example input.
        NoCompressibleLayerError: no layer the scheme can compress (a short summary; the
            full list is the error's ``skipped``).
    """
    if not isinstance(settings, BuildSettings):
        raise bad_parameter("settings", owner, "a BuildSettings", settings)
    # The config list is checked against the model's module names first: nothing has run.
    chosen = (
        None
        if settings.config_list is None
        else config_bounds(model, settings.config_list, owner=owner)
    )
    # Latency is measured once the layers are planned: ranks are chosen by MACs until then.
    metric, multiplicity = rank_metric(settings.cost), settings.rank_multiplicity
    scheme = get_scheme(scheme, owner).with_multiplicity(multiplicity)
    scheme.check_ready()
    example = settings.example_for(model, owner)
    profile = profile_model(model, example, ignore=settings.ignore)
    profile = scheme.prepare(model, example_input=example, profile=profile) or profile
    planned, skipped, left_out = [], dict(profile.unusable), []
    candidates: dict[str, list[Candidate]] = {}
    bounds: dict[str, LayerBounds] = {}
    extra: dict[str, list[float]] = {}
    named = set() if settings.config_list is None else named_layers(settings.config_list)
    for name, layer in profile.layers.items():
        reason = scheme.unsupported_reason(layer, metric)
        if reason is None:
            reason = scheme.rounding_reason(layer, multiplicity, metric)
        config = None if chosen is None else chosen.get(name)
        if reason is not None:
            if name in named and config is not None and _forces_compression(config):
                raise bad_parameter(
                    "config_list",
                    owner,
                    f"entries whose named layers {scheme.name} can compress ({name!r}: {reason})",
                    settings.config_list,
                )
            skipped[name] = reason
            continue
        candidates[name] = scheme.candidates(layer, settings.ratios, metric, multiplicity)
        if not compresses(chosen, name):
            left_out.append(name)
            continue
        planned.append(name)
        if config is None:
            continue
        if config.get("ratio") is not None:
            # Rounded down to a multiple, at least one: it compresses (else the layer
            # would have a rounding reason), so a fixed ratio always lands.
            fixed = scheme.candidate(layer, config["ratio"], metric, multiplicity)
            if fixed.rank not in {c.rank for c in candidates[name]}:
                extra[name] = [fixed.asked_ratio]
                candidates[name] = sorted([*candidates[name], fixed], key=lambda c: c.asked_ratio)
            bounds[name] = LayerBounds(fixed.kept_ratio, fixed.kept_ratio, rank=fixed.rank)
        else:
            found = LayerBounds.from_settings(config)
            if found is not None:
                bounds[name] = found
                _check_satisfiable(name, found, candidates[name], settings.config_list, owner)
    if not planned:
        if chosen is not None and left_out:
            raise bad_parameter(
                "config_list",
                owner,
                "entries that choose at least one layer to compress (they leave out "
                + ", ".join(left_out[:_NAMES_SHOWN])
                + (", ..." if len(left_out) > _NAMES_SHOWN else "")
                + ")",
                settings.config_list,
            )
        raise _no_layer_error(scheme, skipped)
    return DictionaryPlan(
        scheme=scheme,
        settings=settings,
        example=example,
        profile=profile,
        planned=planned,
        skipped=skipped,
        candidates=candidates,
        exact_costs=scheme.exact_costs(),
        bounds=bounds,
        left_out=tuple(left_out),
        extra=extra,
    )


def _forces_compression(config: Mapping[str, Any]) -> bool:
    fixed, high = config.get("ratio"), config.get("max_ratio")
    return (fixed is not None and fixed < 1.0) or (high is not None and high < 1.0)


def _check_satisfiable(
    name: str, bounds: LayerBounds, options: list[Candidate], config_list: Any, owner: str
) -> None:
    """Refuse bounds no candidate of the layer (nor leaving it alone) meets."""
    if bounds.allows(1.0, None) or any(bounds.allows(c.kept_ratio, c.rank) for c in options):
        return
    kept = ", ".join(f"{c.kept_ratio:.3f}" for c in options)
    raise bad_parameter(
        "config_list",
        owner,
        f"bounds some candidate meets (layer {name!r}, {bounds.describe()}: its candidates "
        f"keep {kept}; widen the bounds or give more candidates)",
        config_list,
    )
