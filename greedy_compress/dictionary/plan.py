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
        cheapest = {
            name: min(options, key=lambda c: c.cost.get(metric))
            for name, options in self.candidates.items()
        }
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
        if self.settings.measures_latency:  # device, threads, batch size, torch, timer
            found["latency"] = self.settings.latency_meter.describe(self.example)
        return found

    def assemble(
        self,
        fingerprint: dict[str, Any],
        baseline: float,
        scores: Mapping[tuple[str, int], float | None],
    ) -> EvalScores:
        """The dictionary of every planned layer whose candidates are all in ``scores``."""
        layers = {}
        for name in self.planned:
            if all((name, c.rank) in scores for c in self.candidates[name]):
                entries = tuple(
                    ScoreEntry.scored(c, scores[(name, c.rank)]) for c in self.candidates[name]
                )
                layers[name] = LayerScores(info=self.profile.layers[name], entries=entries)
        return EvalScores(
            fingerprint=fingerprint,
            baseline=baseline,
            model_cost=self.profile.model_cost,
            planned=tuple(self.planned),
            layers=layers,
            skipped=self.skipped,
            exact_costs=self.exact_costs,
            latency=self.latency,
        )

    def check_saved(self, saved: EvalScores, source: str) -> None:
        """Refuse a saved dictionary whose layers, ranks or costs are not what this model
        and scheme give (an edited file, or a change this fingerprint does not see)."""
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
    # Latency is measured once the layers are planned: ranks are chosen by MACs until then.
    metric, multiplicity = rank_metric(settings.cost), settings.rank_multiplicity
    scheme = get_scheme(scheme, owner).with_multiplicity(multiplicity)
    scheme.check_ready()
    example = settings.example_for(model, owner)
    profile = profile_model(model, example, ignore=settings.ignore)
    profile = scheme.prepare(model, example_input=example, profile=profile) or profile
    planned, skipped = [], dict(profile.unusable)
    candidates: dict[str, list[Candidate]] = {}
    for name, layer in profile.layers.items():
        reason = scheme.unsupported_reason(layer, metric)
        if reason is None:
            reason = scheme.rounding_reason(layer, multiplicity, metric)
        if reason is not None:
            skipped[name] = reason
            continue
        planned.append(name)
        candidates[name] = scheme.candidates(layer, settings.ratios, metric, multiplicity)
    if not planned:
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
    )
