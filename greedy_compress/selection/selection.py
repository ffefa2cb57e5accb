"""The selection: the artefact phase 2 hands to phase 3. Per layer, a rank to build (and its
scheme in a mixed selection); plain data, saved as versioned JSON.

Two ratios are never confused: a candidate's *asked* ratio (the grid point of the
dictionary) and the *kept* ratio (the fraction of the layer's cost really kept after rank
rounding). A selection only holds kept ratios.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from greedy_compress._util.io import atomic_write_json, read_json
from greedy_compress.dictionary import EvalScores
from greedy_compress.errors import ScoresFormatError, ScoresMismatchError
from greedy_compress.model.cost import CostMetric
from greedy_compress.schemes import Scheme, get_scheme

__all__ = [
    "SELECTION_FORMAT",
    "SELECTION_VERSION",
    "LayerChoice",
    "Selection",
    "build_details",
    "layer_schemes",
    "predicted_score",
]

SELECTION_FORMAT = "greedy-compress/selection"
SELECTION_VERSION = 3  # 3: a choice may record explicit per-mode ranks (Tucker's two)
_READABLE = (1, 2, 3)


@dataclass(frozen=True)
class LayerChoice:
    """What a selection does to one layer it compresses.

    Attributes:
        kept_ratio: the fraction of the layer's cost kept (after rank rounding).
        rank: the rank (or channel count) to build.
        predicted_score: the dictionary's score of the model with only this layer so
            compressed; None when the choice was made without one (recommendations,
            manual mode).
        scheme: this layer's scheme in a mixed-scheme selection; None: the selection's.
        ranks: explicit per-mode ranks to build instead of ``rank`` (manual Tucker: the in
            and out rank; see :meth:`~greedy_compress.schemes.Scheme.mode_ranks`), ``rank``
            then being the largest of them; None: ``rank`` says it all.
    """

    kept_ratio: float
    rank: int
    predicted_score: float | None
    scheme: str | None = None
    ranks: tuple[int, ...] | None = None

    @property
    def build_rank(self) -> int | tuple[int, ...]:
        """What the scheme builds: the explicit ``ranks`` when set, else ``rank``."""
        return self.rank if self.ranks is None else self.ranks

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON (``scheme`` only when set)."""
        data: dict[str, Any] = {
            "kept_ratio": self.kept_ratio,
            "rank": self.rank,
            "predicted_score": self.predicted_score,
        }
        if self.scheme is not None:
            data["scheme"] = self.scheme
        if self.ranks is not None:
            data["ranks"] = list(self.ranks)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerChoice:
        """Inverse of :meth:`to_dict` (also reads format version 1's ``ratio``)."""
        score = data["predicted_score"]
        kept = data["kept_ratio"] if "kept_ratio" in data else data["ratio"]
        ranks = data.get("ranks")
        return cls(
            kept_ratio=float(kept),
            rank=int(data["rank"]),
            predicted_score=None if score is None else float(score),
            scheme=None if data.get("scheme") is None else str(data["scheme"]),
            ranks=None if ranks is None else tuple(int(r) for r in ranks),
        )


@dataclass(frozen=True)
class Selection:
    """Per-layer ranks chosen to meet a target; layers not in ``choices`` stay as they are.

    Attributes:
        scheme: the scheme the ranks are for (``"mixed"``: each choice names its own).
        solver: what made it (``"greedy"``, ``"knapsack"``, ``"optuna"``, ``"vbmf"``, ...).
        cost_metric: what ``target`` and ``predicted_ratio`` are fractions of.
        target: the fraction of the model's cost asked for.
        predicted_ratio: the fraction kept, exact for the model the dictionary describes.
        choices: per compressed layer, by fully-qualified name.
        details: what the solver adds (budget notes, the input shape, ...).

    Example:
        >>> selection = select(scores, target=0.5)
        >>> round(selection.predicted_ratio, 2), selection.cost_metric
        (0.5, 'mac')
    """

    scheme: str
    solver: str
    cost_metric: CostMetric
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
            "cost_metric": self.cost_metric,
            "target": self.target,
            "predicted_ratio": self.predicted_ratio,
            "choices": {name: c.to_dict() for name, c in self.choices.items()},
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Selection:
        """Inverse of :meth:`to_dict`; reads format versions 1 to 3.

        Raises:
            ScoresFormatError: not a selection, another format version, or malformed.
        """
        if not isinstance(data, dict) or data.get("format") != SELECTION_FORMAT:
            raise ScoresFormatError(f"{source} is not a greedy-compress selection file.")
        version = data.get("format_version")
        if version not in _READABLE:
            raise ScoresFormatError(
                f"{source} has format_version {version!r}; this greedy-compress reads "
                f"versions {', '.join(map(str, _READABLE))}."
            )
        try:
            return cls(
                scheme=str(data["scheme"]),
                solver=str(data["solver"]),
                cost_metric=data["cost_metric" if version != 1 else "metric"],
                target=float(data["target"]),
                predicted_ratio=float(data["predicted_ratio"]),
                choices={
                    str(name): LayerChoice.from_dict(c) for name, c in data["choices"].items()
                },
                details=dict(data.get("details", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ScoresFormatError(f"{source} is malformed: {error!r}") from error

    def with_details(self, **details: Any) -> Selection:
        """A copy with ``details`` added to (or replacing) the selection's details."""
        return dataclasses.replace(self, details={**self.details, **details})

    def with_replay(self, record: Mapping[str, Any]) -> Selection:
        """A copy that records what :func:`~greedy_compress.apply_selection` reported in
        ``record`` (the kept channels of pruned layers), so it rebuilds with no data."""
        if not record:
            return self
        return self.with_details(replay={**self.details.get("replay", {}), **record})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the selection as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Selection:
        """Read a selection written by :meth:`save`."""
        return cls.from_dict(read_json(path), source=os.fspath(path))


def predicted_score(scores: EvalScores, selection: Selection) -> float | None:
    """The dictionary's prediction for the combined model: single-layer changes added up.

    ``baseline + sum(choice score - baseline)`` over the compressed layers: each layer's
    effect is measured with the others untouched, and the effects are assumed to add up
    (layers interact, so this is an estimate). -inf when a chosen candidate failed; None
    when some choice carries no score (recommendations, manual mode: nothing was evaluated).

    Raises:
        ScoresMismatchError: the selection names layers the dictionary lacks, or was made
            for another scheme.

    Example:
        >>> round(predicted_score(scores, select(scores, target=0.5)), 4) <= scores.baseline
        True
    """
    unknown = [name for name in selection.choices if name not in scores.layers]
    if selection.scheme != scores.scheme or unknown:
        problem = (
            f"layers {', '.join(map(repr, unknown))} are not in the dictionary"
            if unknown
            else f"it was made with scheme {selection.scheme!r}, the dictionary with "
            f"{scores.scheme!r}"
        )
        raise ScoresMismatchError(f"The selection does not come from this dictionary: {problem}.")
    changes = [choice.predicted_score for choice in selection.choices.values()]
    if any(change is None for change in changes):
        return None
    return scores.baseline + sum(s - scores.baseline for s in changes if s is not None)


def build_details(scores: EvalScores) -> dict[str, Any]:
    """What a selection made from ``scores`` records so it can be built alone: the model's
    architecture (it is refused for another), the input shape (schemes that trace the
    model) and the rank multiplicity (schemes that round several sizes together)."""
    found: dict[str, Any] = {}
    if "architecture" in scores.fingerprint:  # apply_selection refuses other models
        found["model"] = scores.fingerprint["architecture"]
    if "input_shape" in scores.fingerprint:
        found["input_shape"] = list(scores.fingerprint["input_shape"])
    multiplicity = scores.fingerprint.get("multiplicity", 1)
    if multiplicity != "auto" and int(multiplicity) != 1:  # "auto": measured ranks, no rounding
        found["multiplicity"] = int(multiplicity)
    if "scheme_settings" in scores.fingerprint:  # checked when the selection is built
        found["scheme_settings"] = scores.fingerprint["scheme_settings"]
    return found


def layer_schemes(
    choices: Mapping[str, LayerChoice],
    default: str,
    *,
    scheme: str | Scheme | None = None,
    owner: str,
    multiplicity: int = 1,
) -> dict[str, Scheme]:
    """The scheme that builds each chosen layer, resolved (and validated) up front.

    A choice's own scheme (mixed selections) wins over ``default``, the selection's scheme.
    ``scheme`` overrides the scheme of that name (an unregistered or configured scheme
    instance); without a name given anywhere it stands for ``default``. Layers of one
    scheme share one instance.

    Raises:
        InvalidParameterError: a scheme name that is not registered.

    Example:
        >>> schemes = layer_schemes(select(scores, target=0.5).choices, "spatial_svd",
        ...                         owner="example")
        >>> {s.name for s in schemes.values()}
        {'spatial_svd'}
    """
    override = None if scheme is None else get_scheme(scheme, owner).with_multiplicity(multiplicity)
    schemes: dict[str, Scheme] = {} if override is None else {override.name: override}
    resolved = {}
    for name, choice in choices.items():
        wanted = choice.scheme
        if wanted is None:
            wanted = default if override is None else override.name
        if wanted not in schemes:
            schemes[wanted] = get_scheme(wanted, owner).with_multiplicity(multiplicity)
        resolved[name] = schemes[wanted]
    return resolved
