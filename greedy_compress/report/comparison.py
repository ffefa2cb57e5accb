"""Several selections of one dictionary side by side: solved by every solver, compared per
layer, with measured scores where the caller has them. Nothing is evaluated here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from greedy_compress._util.constraints import bad_parameter, check_open_unit
from greedy_compress.dictionary import EvalScores
from greedy_compress.report.analysis import SelectionData, selection_data
from greedy_compress.selection import GreedySolver, Selection, Solver, available_solvers, get_solver

__all__ = ["StrategyComparison", "compare_selections", "selections_by_solver"]


@dataclass(frozen=True)
class StrategyComparison:
    """Several selections of one dictionary side by side (layers in network order)."""

    layers: tuple[str, ...]
    strategies: tuple[SelectionData, ...]

    def best(self) -> SelectionData:
        """The strategy with the highest measured score, else the highest predicted one."""
        measured = [(s.measured_score, s) for s in self.strategies if s.measured_score is not None]
        if measured:
            return max(measured, key=lambda pair: pair[0])[1]
        predicted = [
            (s.predicted_score, s) for s in self.strategies if s.predicted_score is not None
        ]
        return max(predicted, key=lambda pair: pair[0])[1] if predicted else self.strategies[0]


def selections_by_solver(
    scores: EvalScores, *, target: float, solvers: Sequence[str | Solver] | None = None
) -> dict[str, Selection]:
    """Solve one target with several solvers, labelled for legends.

    By default: every registered solver (``available_solvers()``, so solvers added later
    appear on their own) plus AIMET's plain greedy, ``GreedySolver(fill_budget=False)``,
    labelled ``"greedy (no fill)"``.

    Example:
        >>> list(selections_by_solver(scores, target=0.5))
        ['greedy', 'knapsack', 'greedy (no fill)']
    """
    target = check_open_unit(target, "target", "selections_by_solver")
    if solvers is None:
        chosen: list[tuple[str, Solver]] = [
            (name, get_solver(name, "selections_by_solver")) for name in available_solvers()
        ]
        chosen.append(("greedy (no fill)", GreedySolver(fill_budget=False)))
    else:
        chosen = []
        for item in solvers:
            solver = get_solver(item, "selections_by_solver")
            chosen.append((item if isinstance(item, str) else solver.name, solver))
    labels = _unique([label for label, _ in chosen])
    return {
        label: solver.solve(scores, target=target)
        for label, (_, solver) in zip(labels, chosen, strict=True)
    }


def _unique(labels: Sequence[str]) -> list[str]:
    """The labels, with " (2)", " (3)"... appended to repeats so legends stay distinct."""
    result: list[str] = []
    for label in labels:
        unique, number = label, 2
        while unique in result:
            unique, number = f"{label} ({number})", number + 1
        result.append(unique)
    return result


def compare_selections(
    scores: EvalScores,
    selections: Mapping[str, Selection] | Sequence[Selection],
    *,
    measured: Mapping[str, float] | None = None,
) -> StrategyComparison:
    """Lay several selections of one dictionary side by side.

    Args:
        scores: the dictionary they were solved from.
        selections: ``{label: selection}`` (e.g. from :func:`selections_by_solver`), or a
            sequence labelled ``"<solver> @ <target>"``.
        measured: real scores by label, where you evaluated the compressed models.

    Example:
        >>> comparison = compare_selections(scores, selections_by_solver(scores, target=0.5))
        >>> [s.label for s in comparison.strategies]
        ['greedy', 'knapsack', 'greedy (no fill)']
    """
    owner = "compare_selections"
    if isinstance(selections, Mapping):
        labelled = list(selections.items())
    elif isinstance(selections, Sequence) and not isinstance(selections, (str, bytes)):
        labelled = [("", s) for s in selections]
    else:
        labelled = []
    if not labelled or not all(isinstance(s, Selection) for _, s in labelled):
        raise bad_parameter(
            "selections", owner, "a non-empty mapping or sequence of Selection", selections
        )
    if not isinstance(selections, Mapping):
        names = _unique([f"{s.solver} @ {s.target:g}" for _, s in labelled])
        labelled = [(name, s) for name, (_, s) in zip(names, labelled, strict=True)]
    measured = dict(measured or {})
    unknown = sorted(set(measured) - {label for label, _ in labelled})
    if unknown:
        raise bad_parameter("measured", owner, "keyed by the selections' labels", unknown)
    strategies = tuple(
        selection_data(scores, s, label=label, measured_score=measured.get(label))
        for label, s in labelled
    )
    return StrategyComparison(
        layers=tuple(n for n in scores.planned if n in scores.layers), strategies=strategies
    )
