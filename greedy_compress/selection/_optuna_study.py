"""Setting up the Optuna study of :func:`~greedy_compress.selection.optuna_search.optuna_search`:
storage, sampler, the budget constraint and the default study name."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import optuna

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.dictionary import EvalScores

__all__ = ["HAS_SET_CONSTRAINT", "default_study_name", "make_sampler", "open_storage"]

_OWNER = "optuna_search"


def open_storage(storage: Any) -> Any:
    """None (memory), an RDB URL, a journal file path, or an Optuna storage object."""
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if isinstance(storage, (str, os.PathLike)):
        text = os.fspath(storage)
        if "://" in text:
            return text  # an RDB URL: Optuna opens it
        try:  # Optuna >= 4
            from optuna.storages.journal import JournalFileBackend as Backend
        except ImportError:  # pragma: no cover - Optuna 3
            from optuna.storages import JournalFileStorage as Backend
        return optuna.storages.JournalStorage(Backend(text))
    raise bad_parameter(
        "storage",
        _OWNER,
        "None, an RDB URL such as 'sqlite:///study.db', a journal file path, or an optuna storage",
        storage,
    )


HAS_SET_CONSTRAINT = hasattr(optuna.trial.Trial, "set_constraint")


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [float(trial.user_attrs.get("over_budget", 0.0))]


def make_sampler(sampler: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    # Optuna >= 5 reads constraints set on the trial; older versions need constraints_func.
    extra: dict[str, Any] = {} if HAS_SET_CONSTRAINT else {"constraints_func": _constraints}
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **extra)
    if sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **extra)
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise bad_parameter("sampler", _OWNER, "'tpe', 'nsga2', 'random' or an optuna sampler", sampler)


def default_study_name(scores: EvalScores, target: float, metric: str) -> str:
    # Workers given the same dictionary and target join the same study by default.
    key = json.dumps([scores.fingerprint, target, metric], sort_keys=True, default=str)
    return "greedy-compress-" + hashlib.sha256(key.encode()).hexdigest()[:12]
