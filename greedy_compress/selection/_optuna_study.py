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
from greedy_compress.errors import GreedyCompressError

__all__ = [
    "HAS_SET_CONSTRAINT",
    "default_study_name",
    "make_sampler",
    "open_storage",
    "open_study",
    "study_identity",
]

_OWNER = "optuna_search"


def open_storage(storage: Any) -> Any:
    """None (memory), an RDB URL, a journal file path, or an Optuna storage object."""
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if isinstance(storage, (str, os.PathLike)) and os.fspath(storage):
        text = os.fspath(storage)
        if "://" in text:
            return text  # an RDB URL: Optuna opens it when the study is created
        if os.path.isdir(text):
            raise bad_parameter(
                "storage", _OWNER, "a journal file path, not a directory (or an RDB URL)", text
            )
        try:  # Optuna >= 4
            from optuna.storages.journal import JournalFileBackend as Backend
        except ImportError:  # pragma: no cover - Optuna 3
            from optuna.storages import JournalFileStorage as Backend
        try:
            return optuna.storages.JournalStorage(Backend(text))
        except Exception as error:  # a file that is not an Optuna journal, or unreadable
            raise GreedyCompressError(
                f"Cannot open the Optuna journal {text!r}: {_first_line(error)}. Use another "
                "storage path, or delete the file to start a new study."
            ) from None
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


def _first_line(error: BaseException) -> str:
    text = str(error).splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def study_identity(scores: EvalScores, evaluator_identity: str, target: float, metric: str) -> str:
    """What a study's trials depend on: the dictionary (its fingerprint names the model,
    the scheme and the dictionary's evaluator and data), the search's own evaluator and
    data, the target and the metric."""
    key = json.dumps(
        [scores.fingerprint, evaluator_identity, target, metric], sort_keys=True, default=str
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def default_study_name(identity: str) -> str:
    """Workers given the same dictionary, evaluator and target join the same study."""
    return "greedy-compress-" + identity[:12]


def open_study(
    *, storage: Any, sampler: optuna.samplers.BaseSampler, name: str, identity: str
) -> optuna.Study:
    """Create or join the study ``name``; a study made for other inputs is refused.

    Raises:
        GreedyCompressError: the storage cannot be opened (a bad URL, a file that is not a
            journal), or the study of that name was made with another dictionary, evaluator,
            data or target.
    """
    try:
        study = optuna.create_study(
            storage=storage,
            sampler=sampler,
            study_name=name,
            direction="maximize",
            load_if_exists=True,
        )
    except Exception as error:  # sqlalchemy and journal errors: a storage the user gave
        raise GreedyCompressError(
            f"Cannot open the Optuna storage {storage!r}: {_first_line(error)}."
        ) from None
    found = study.user_attrs.get("greedy_compress_inputs")
    if found is None:
        study.set_user_attr("greedy_compress_inputs", identity)
    elif found != identity:
        raise GreedyCompressError(
            f"The Optuna study {name!r} in this storage was made for another dictionary, "
            "evaluator, data or target: its trials do not score this search. Use another "
            "study_name or storage."
        )
    return study
