"""Phase 2, selection: per-layer choices that meet a target, from a dictionary (solvers,
the exact-cost step, repair, the Optuna search in :mod:`.optuna_search`) or without one
(recommendations, manual mode). Every path ends in a :class:`Selection`.

Example:
    >>> selection = GreedySolver().solve(scores, target=0.5)
    >>> sorted(selection.choices) == sorted(scores.layers) or len(selection.choices) > 0
    True
"""

from __future__ import annotations

from greedy_compress.selection.budget import fill_budget, meet_budget
from greedy_compress.selection.end_to_end import EndToEndCheck, SelectionTried, check_end_to_end
from greedy_compress.selection.exact_cost import (
    choices_cost,
    meet_exact_cost,
    reachable_ratio,
    selection_ratio,
)
from greedy_compress.selection.latency_check import (
    LatencyCheck,
    LatencyRound,
    asked_target,
    check_latency,
    meet_latency,
)
from greedy_compress.selection.manual import (
    AvailableLayer,
    AvailableLayers,
    available_layers,
    manual_selection,
)
from greedy_compress.selection.max_drop import MaxDrop, check_max_drop
from greedy_compress.selection.options import LayerOption, fit_options, layer_options, non_monotone
from greedy_compress.selection.recommend import (
    recommend_global_threshold,
    recommend_slamp,
    recommend_vbmf,
)
from greedy_compress.selection.refine import Refinement, refine_two_level, with_measured
from greedy_compress.selection.repair import RepairResult, RepairStep, repair_selection
from greedy_compress.selection.selection import (
    LayerChoice,
    Selection,
    layer_schemes,
    predicted_score,
)
from greedy_compress.selection.solvers import (
    GreedySolver,
    KnapsackSolver,
    Solver,
    available_solvers,
    get_solver,
    register_solver,
)

__all__ = [
    "AvailableLayer",
    "AvailableLayers",
    "EndToEndCheck",
    "GreedySolver",
    "KnapsackSolver",
    "LatencyCheck",
    "LatencyRound",
    "LayerChoice",
    "LayerOption",
    "MaxDrop",
    "Refinement",
    "RepairResult",
    "RepairStep",
    "Selection",
    "SelectionTried",
    "Solver",
    "asked_target",
    "available_layers",
    "available_solvers",
    "check_end_to_end",
    "check_latency",
    "check_max_drop",
    "choices_cost",
    "fill_budget",
    "fit_options",
    "get_solver",
    "layer_options",
    "layer_schemes",
    "manual_selection",
    "meet_budget",
    "meet_exact_cost",
    "meet_latency",
    "non_monotone",
    "predicted_score",
    "reachable_ratio",
    "recommend_global_threshold",
    "recommend_slamp",
    "recommend_vbmf",
    "refine_two_level",
    "register_solver",
    "repair_selection",
    "selection_ratio",
    "with_measured",
]
