"""The solver interface: (dictionary, target) -> per-layer choices. Solvers are pure."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from greedy_compress._util.constraints import bad_parameter, check_open_unit
from greedy_compress._util.io import atomic_write_json, read_json
from greedy_compress.dictionary.scores import EvalScores
from greedy_compress.errors import ScoresFormatError, TargetUnreachableError
from greedy_compress.model.cost import CostMetric, check_metric
from greedy_compress.selection.monotone import fit_options, non_monotone

__all__ = ["LayerChoice", "LayerOption", "Selection", "Solver", "layer_options"]

SELECTION_FORMAT = "greedy-compress/selection"
SELECTION_VERSION = 1


@dataclass(frozen=True)
class LayerOption:
    """One choice for one layer; ``rank`` None means "leave the layer alone".

    ``cost`` is in the metric being solved for; ``score`` is -inf when the evaluator gave
    no finite score. ``scheme`` names the option's scheme in a mixed-scheme dictionary
    (None: the dictionary's scheme).
    """

    ratio: float
    rank: int | None
    cost: int
    score: float
    scheme: str | None = None


@dataclass(frozen=True)
class LayerChoice:
    """What a solver chose for one layer it compresses.

    ``predicted_score`` is None when the choice was made without evaluation (the VBMF and
    SLAMP recommendations).
    """

    ratio: float  # real kept ratio of the layer's cost, after rank rounding
    rank: int
    predicted_score: float | None  # None for recommendations, which evaluate nothing
    scheme: str | None = None  # this layer's scheme when it differs per layer (mixed)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON (``scheme`` only when set: older files read the same)."""
        data: dict[str, Any] = {
            "ratio": self.ratio,
            "rank": self.rank,
            "predicted_score": self.predicted_score,
        }
        if self.scheme is not None:
            data["scheme"] = self.scheme
        return data


@dataclass(frozen=True)
class Selection:
    """Per-layer ranks chosen to meet a target; layers not in ``choices`` stay as they are.

    Plain data: it serializes to JSON and, with the model, rebuilds the compressed model.
    """

    scheme: str
    solver: str
    metric: CostMetric
    target: float
    predicted_ratio: float
    choices: dict[str, LayerChoice]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON, with a format name and version."""
        return {
            "format": SELECTION_FORMAT,
            "format_version": SELECTION_VERSION,
            "scheme": self.scheme,
            "solver": self.solver,
            "metric": self.metric,
            "target": self.target,
            "predicted_ratio": self.predicted_ratio,
            "choices": {name: c.to_dict() for name, c in self.choices.items()},
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Selection:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or data.get("format") != SELECTION_FORMAT:
            raise ScoresFormatError(f"{source} is not a greedy-compress selection file.")
        if data.get("format_version") != SELECTION_VERSION:
            raise ScoresFormatError(
                f"{source} has format_version {data.get('format_version')!r}; "
                f"this greedy-compress reads version {SELECTION_VERSION}."
            )
        try:
            return cls(
                scheme=data["scheme"],
                solver=data["solver"],
                metric=data["metric"],
                target=float(data["target"]),
                predicted_ratio=float(data["predicted_ratio"]),
                choices={
                    name: LayerChoice(
                        float(c["ratio"]),
                        int(c["rank"]),
                        None if c["predicted_score"] is None else float(c["predicted_score"]),
                        None if c.get("scheme") is None else str(c["scheme"]),
                    )
                    for name, c in data["choices"].items()
                },
                details=dict(data.get("details", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ScoresFormatError(f"{source} is malformed: {error!r}") from error

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the selection as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Selection:
        """Read a selection written by :meth:`save`."""
        return cls.from_dict(read_json(path), source=os.fspath(path))


def layer_options(
    scores: EvalScores, metric: CostMetric, *, monotone: bool = False
) -> dict[str, list[LayerOption]]:
    """Each scored layer's options, cheapest first, "leave alone" (ratio 1) included.

    Candidates that round to the same rank appear once; candidates that do not lower the
    layer's cost are left out. With ``monotone=True`` each layer's scores are replaced by
    their isotonic fit (:func:`greedy_compress.selection.monotone.fit_options`), so noise that
    makes a layer score higher when compressed harder cannot mislead a solver.
    """
    options: dict[str, list[LayerOption]] = {}
    for name, layer in scores.layers.items():
        original = layer.info.cost.get(metric)
        items = [LayerOption(1.0, None, original, scores.baseline)]
        seen_ranks = set()
        for entry in layer.entries:
            # A candidate that saves nothing (rank rounding can do that) is never an option.
            if (entry.scheme, entry.rank) in seen_ranks or entry.cost.get(metric) >= original:
                continue
            seen_ranks.add((entry.scheme, entry.rank))
            items.append(
                LayerOption(
                    ratio=entry.cost.get(metric) / original,
                    rank=entry.rank,
                    cost=entry.cost.get(metric),
                    score=float("-inf") if entry.score is None else entry.score,
                    scheme=entry.scheme,
                )
            )
        options[name] = sorted(items, key=lambda o: (o.cost, -o.score))
    if monotone:
        options = {name: fit_options(opts, scores.baseline) for name, opts in options.items()}
    return options


class Solver(ABC):
    """Turns a complete dictionary and a target cost ratio into a :class:`Selection`.

    Subclasses set ``name`` and implement :meth:`choose`; :meth:`solve` validates the
    target, checks that it is reachable, brings the choice to within ``budget_tolerance``
    of the budget (:func:`~greedy_compress.selection.solvers._budget.meet_budget`, unless
    ``fill_budget`` is False) and packages the result.
    """

    name: ClassVar[str]
    # Shared exact-budget post-step; instances may turn it off (AIMET's plain method).
    fill_budget: bool = True
    budget_tolerance: float = 0.01

    @abstractmethod
    def choose(
        self, options: Mapping[str, list[LayerOption]], *, fixed_cost: int, budget: float
    ) -> tuple[dict[str, LayerOption], dict[str, Any]]:
        """Pick one option per layer with ``fixed_cost + sum(costs) <= budget``.

        ``options`` come from :func:`layer_options` (cheapest first); costs are in the
        metric being solved for. Returns the choice per layer and solver details.
        """

    def solve(
        self,
        scores: EvalScores,
        *,
        target: float,
        metric: CostMetric | None = None,
        monotone: bool = False,
    ) -> Selection:
        """Choose per-layer ranks so the model keeps at most ``target`` of its cost.

        ``monotone=True`` solves on monotone fits of the layers' score curves (see
        :func:`layer_options`). Either way ``details["non_monotone"]`` lists the layers
        whose measured curves were not monotone.

        Raises:
            InvalidParameterError: ``target`` not in (0, 1), or an unknown metric.
            TargetUnreachableError: even the cheapest candidates keep more than ``target``;
                the message states the smallest reachable ratio.
        """
        owner = f"{type(self).__name__}.solve"
        target = check_open_unit(target, "target", owner)
        metric = scores.metric if metric is None else check_metric(metric, owner)
        if not scores.is_complete:
            raise ScoresFormatError(
                f"The dictionary is incomplete (missing {', '.join(scores.missing)}); "
                "finish building it before solving."
            )
        if not isinstance(monotone, bool):
            raise bad_parameter("monotone", owner, "True or False", monotone)
        measured = layer_options(scores, metric)
        options = layer_options(scores, metric, monotone=True) if monotone else measured
        total = scores.model_cost.get(metric)
        fixed = total - sum(layer.info.cost.get(metric) for layer in scores.layers.values())
        cheapest = fixed + sum(opts[0].cost for opts in options.values())
        if cheapest > target * total:
            raise TargetUnreachableError(
                f"Target {target:g} is out of reach: with every layer at its smallest candidate "
                f"the model keeps {cheapest / total:.4f} of its {metric} cost. "
                f"Use a target >= {cheapest / total:.4f}, smaller candidates, or another scheme."
            )
        chosen, details = self.choose(options, fixed_cost=fixed, budget=target * total)
        if self.fill_budget:
            from greedy_compress.selection.solvers._budget import meet_budget  # imports this module

            chosen, budget_details = meet_budget(
                options,
                chosen,
                fixed_cost=fixed,
                budget=target * total,
                tolerance=self.budget_tolerance,
            )
            details = {**details, **budget_details}
        details = {**details, "monotone_fit": monotone, "non_monotone": non_monotone(measured)}
        kept = fixed + sum(option.cost for option in chosen.values())
        return Selection(
            scheme=scores.scheme,
            solver=self.name,
            metric=metric,
            target=target,
            predicted_ratio=kept / total,
            choices={
                name: LayerChoice(
                    ratio=o.ratio, rank=o.rank, predicted_score=o.score, scheme=o.scheme
                )
                for name, o in chosen.items()
                if o.rank is not None
            },
            details=details,
        )
