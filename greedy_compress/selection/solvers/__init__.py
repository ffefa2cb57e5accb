"""Solvers turn an eval-score dictionary and a target into per-layer ranks.

Adding one: write a module with a :class:`Solver` subclass implementing ``choose`` and add one
``_SOLVERS.register`` line below (or call :func:`register_solver`).
"""

from __future__ import annotations

from greedy_compress._util.registry import Registry
from greedy_compress.selection.solvers.base import Solver
from greedy_compress.selection.solvers.greedy import GreedySolver, pick_at_threshold
from greedy_compress.selection.solvers.knapsack import KnapsackSolver

__all__ = [
    "GreedySolver",
    "KnapsackSolver",
    "Solver",
    "available_solvers",
    "get_solver",
    "pick_at_threshold",
    "register_solver",
]

_SOLVERS: Registry[Solver] = Registry("solver", Solver)
_SOLVERS.register(GreedySolver)
_SOLVERS.register(KnapsackSolver)

register_solver = _SOLVERS.register
available_solvers = _SOLVERS.names


def get_solver(solver: str | Solver, owner: str = "get_solver") -> Solver:
    """Return a solver instance from its name (or the instance itself).

    Example:
        >>> get_solver("greedy").name
        'greedy'
    """
    return _SOLVERS.get(solver, owner)
