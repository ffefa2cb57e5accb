"""The solver interface: (dictionary, target) -> per-layer choices. Solvers are pure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from greedy_compress._util.constraints import BOOLEAN, check, check_open_unit
from greedy_compress.dictionary import EvalScores
from greedy_compress.errors import ScoresFormatError, TargetUnreachableError
from greedy_compress.model.cost import CostMetric, check_metric
from greedy_compress.selection.budget import meet_budget
from greedy_compress.selection.exact_cost import meet_exact_cost
from greedy_compress.selection.options import LayerOption, layer_options, non_monotone
from greedy_compress.selection.selection import LayerChoice, Selection, build_details

__all__ = ["Solver"]


class Solver(ABC):
    """Turns a complete dictionary and a target cost ratio into a :class:`Selection`.

    Subclasses set ``name`` and implement :meth:`choose`; :meth:`solve` validates the
    target, checks that it is reachable, brings the choice to within ``budget_tolerance``
    of the budget (:func:`~greedy_compress.selection.budget.meet_budget`, unless
    ``fill_budget`` is False), meets the target exactly where layer costs interact
    (:func:`~greedy_compress.selection.exact_cost.meet_exact_cost`) and packages the result.
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

        ``options`` come from :func:`~greedy_compress.selection.options.layer_options`
        (cheapest first); costs are in the metric being solved for. Returns the choice per
        layer and solver details.
        """

    def solve(
        self,
        scores: EvalScores,
        *,
        target: float,
        cost: CostMetric | None = None,
        monotone: bool = False,
    ) -> Selection:
        """Choose per-layer ranks so the model keeps at most ``target`` of its cost.

        ``cost`` is the metric (default: the dictionary's). ``monotone=True`` solves on
        monotone fits of the layers' score curves; either way ``details["non_monotone"]``
        lists the layers whose measured curves were not monotone. The selection's
        ``predicted_ratio`` is exact, also for schemes whose layer costs interact.

        Raises:
            InvalidParameterError: ``target`` not in (0, 1), or an unknown metric.
            ScoresFormatError: the dictionary is incomplete.
            TargetUnreachableError: even the cheapest candidates keep more than ``target``;
                the message states the smallest reachable ratio.

        Example:
            >>> selection = GreedySolver().solve(scores, target=0.5)
            >>> selection.solver, selection.predicted_ratio <= 0.5
            ('greedy', True)
        """
        owner = f"{type(self).__name__}.solve"
        target = check_open_unit(target, "target", owner)
        metric = scores.cost_metric if cost is None else check_metric(cost, owner)
        monotone = check(monotone, BOOLEAN, "monotone", owner)
        if not scores.is_complete:
            raise ScoresFormatError(
                f"The dictionary is incomplete (missing {', '.join(scores.missing)}); "
                "finish building it before solving."
            )
        measured = layer_options(scores, metric)
        options = layer_options(scores, metric, monotone=True) if monotone else measured
        notes: dict[str, Any] = {"monotone_fit": monotone, "non_monotone": non_monotone(measured)}
        notes.update(build_details(scores))

        def additive(asked: float) -> Selection:
            return self._solve_additive(scores, options, metric, asked, notes)

        return meet_exact_cost(
            scores, additive, target=target, options=options, tolerance=self.budget_tolerance
        )

    def _solve_additive(
        self,
        scores: EvalScores,
        options: Mapping[str, list[LayerOption]],
        metric: CostMetric,
        target: float,
        notes: Mapping[str, Any],
    ) -> Selection:
        """The selection for ``target`` with layer costs added up."""
        total = scores.model_cost.get(metric)
        fixed = scores.fixed_cost(metric)
        cheapest = fixed + sum(opts[0].cost for opts in options.values())
        if cheapest > target * total:
            raise TargetUnreachableError(
                f"Target {target:g} is out of reach: with every layer at its smallest candidate "
                f"the model keeps {cheapest / total:.4f} of its {metric} cost. "
                f"Use a target >= {cheapest / total:.4f}, smaller candidates, or another scheme."
            )
        chosen, details = self.choose(options, fixed_cost=fixed, budget=target * total)
        if self.fill_budget:
            chosen, budget_details = meet_budget(
                options,
                chosen,
                fixed_cost=fixed,
                budget=target * total,
                tolerance=self.budget_tolerance,
            )
            details = {**details, **budget_details}
        kept = fixed + sum(option.cost for option in chosen.values())
        return Selection(
            scheme=scores.scheme,
            solver=self.name,
            cost_metric=metric,
            target=target,
            predicted_ratio=kept / total,
            choices={
                name: LayerChoice(o.kept_ratio, o.rank, o.score, o.scheme)
                for name, o in chosen.items()
                if o.rank is not None
            },
            details={**details, **notes},
        )
