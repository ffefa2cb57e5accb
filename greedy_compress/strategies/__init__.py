"""Strategies: ways to choose per-layer ratios that evaluate real models, unlike the solvers.

A solver (:mod:`greedy_compress.solvers`) only reads the dictionary; a strategy also builds
and scores candidate models, so it sees how compressed layers interact, at the price of one
evaluation per model tried.
"""

from __future__ import annotations

from greedy_compress.strategies.optuna_search import SearchResult, optuna_search

__all__ = ["SearchResult", "optuna_search"]
