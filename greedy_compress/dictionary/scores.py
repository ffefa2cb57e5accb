"""The eval-score dictionary: for each layer and candidate ratio, the model's score with only
that layer compressed. Plain data, saved as versioned JSON (never pickle)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from greedy_compress._util.io import (
    NonFiniteJSONError,
    atomic_write_json,
    content_hash,
    read_json,
)
from greedy_compress._version import __version__
from greedy_compress.dictionary.bounds import LayerBounds, bounds_from_json, bounds_to_json
from greedy_compress.dictionary.latency_table import LatencyTable
from greedy_compress.errors import ScoresFormatError, ScoresMismatchError
from greedy_compress.graph import ChannelCosts
from greedy_compress.model.cost import Cost, CostMetric
from greedy_compress.model.modules import factory_of
from greedy_compress.model.profile import LayerInfo
from greedy_compress.schemes import Candidate, scheme_class

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "EvalScores", "LayerScores", "ScoreEntry"]

FORMAT_NAME = "greedy-compress/eval-scores"
FORMAT_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)  # 1: no kept_ratio, exact_costs; 2: no bounds (ignored by it)


@dataclass(frozen=True)
class ScoreEntry(Candidate):
    """A scored candidate: the model's score with only this layer compressed this way.

    ``score`` is None when the evaluator returned a non-finite value (the compressed model
    broke); solvers treat that as worse than any score. ``scheme`` is set only in a
    mixed-scheme dictionary (:func:`greedy_compress.dictionary.mixed.combine_scores`), where
    entries of several schemes share a layer; it is None when the dictionary's scheme applies.
    In a two-level dictionary (:func:`greedy_compress.dictionary.two_level.build_two_level_scores`)
    ``measured`` is False where ``score`` was predicted from ``proxy``, the candidate's
    relative layer-output error on calibration data, instead of evaluated.
    """

    score: float | None = None
    scheme: str | None = None
    measured: bool = True
    proxy: float | None = None

    @classmethod
    def scored(cls, candidate: Candidate, score: float | None) -> ScoreEntry:
        """``candidate`` with its score."""
        return cls(
            asked_ratio=candidate.asked_ratio,
            rank=candidate.rank,
            cost=candidate.cost,
            kept_ratio=candidate.kept_ratio,
            score=score,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON (``scheme`` only when set)."""
        data: dict[str, Any] = {
            "asked_ratio": self.asked_ratio,
            "rank": self.rank,
            "kept_ratio": self.kept_ratio,
            "cost": self.cost.to_dict(),
            "score": self.score,
        }
        if self.scheme is not None:
            data["scheme"] = self.scheme
        if not self.measured:  # written only when predicted: exact files are unchanged
            data["measured"] = False
        if self.proxy is not None:
            data["proxy"] = self.proxy
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreEntry:
        """Inverse of :meth:`to_dict` (also reads format version 1's ``ratio`` and
        ``real_ratio``)."""
        score = data["score"]
        return cls(
            asked_ratio=float(data["asked_ratio"] if "asked_ratio" in data else data["ratio"]),
            rank=int(data["rank"]),
            kept_ratio=float(data["kept_ratio"] if "kept_ratio" in data else data["real_ratio"]),
            cost=Cost.from_dict(data["cost"]),
            score=None if score is None else float(score),
            scheme=None if data.get("scheme") is None else str(data["scheme"]),
            measured=bool(data.get("measured", True)),
            proxy=None if data.get("proxy") is None else float(data["proxy"]),
        )


@dataclass(frozen=True)
class LayerScores:
    """One layer's shape facts and its scored candidates, ordered by ratio."""

    info: LayerInfo
    entries: tuple[ScoreEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {"info": self.info.to_dict(), "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerScores:
        """Inverse of :meth:`to_dict`."""
        return cls(
            info=LayerInfo.from_dict(data["info"]),
            entries=tuple(ScoreEntry.from_dict(e) for e in data["entries"]),
        )


@dataclass(frozen=True)
class EvalScores:
    """An eval-score dictionary, complete or partial.

    Attributes:
        fingerprint: what the scores depend on (see :mod:`greedy_compress.dictionary.fingerprint`).
        baseline: score of the uncompressed model.
        model_cost: measured cost of the uncompressed model.
        planned: the layers to score, in network order.
        layers: the layers scored so far.
        skipped: layers the scheme cannot compress, with the reason.
        exact_costs: how a whole selection is priced when the layers' costs interact
            (pruning: :class:`~greedy_compress.graph.ChannelCosts`); None when they add up.
        latency: what a latency build measured (:class:`LatencyTable`; costs then carry
            ``latency_ns``); None when no latency was measured.
        bounds: per layer, what a ``config_list`` leaves the solvers (not fingerprinted).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "scores.json"
        >>> scores.save(path)
        >>> EvalScores.load(path) == scores
        True
        >>> scores.table()["features.3"][1.0] == scores.baseline
        True
    """

    fingerprint: dict[str, Any]
    baseline: float
    model_cost: Cost
    planned: tuple[str, ...]
    layers: dict[str, LayerScores] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    exact_costs: ChannelCosts | None = None
    latency: LatencyTable | None = None
    bounds: dict[str, LayerBounds] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        """Name of the scheme the scores were made with."""
        return str(self.fingerprint["scheme"])

    @property
    def cost_metric(self) -> CostMetric:
        """The cost metric ranks were chosen for (``"mac"``, ``"memory"`` or ``"latency"``)."""
        metric: CostMetric = self.fingerprint["cost"]
        return metric

    def example_input(self, like: nn.Module | None = None) -> torch.Tensor:
        """Zeros of the input shape the dictionary was built with, made like ``like``'s
        parameters (dtype and device): enough for schemes that trace the model."""
        factory = {} if like is None else factory_of(like)
        return torch.zeros(tuple(self.fingerprint["input_shape"]), **factory)

    def fixed_cost(self, metric: CostMetric) -> int:
        """The model's cost outside the scored layers, in ``metric`` (additive view)."""
        scored = sum(layer.info.cost.get(metric) for layer in self.layers.values())
        return self.model_cost.get(metric) - scored

    @property
    def is_complete(self) -> bool:
        """True once every planned layer has been scored."""
        return all(name in self.layers for name in self.planned)

    @property
    def predicted(self) -> int:
        """How many entries were predicted rather than measured (0: an exact dictionary)."""
        return sum(not e.measured for layer in self.layers.values() for e in layer.entries)

    @property
    def missing(self) -> list[str]:
        """Planned layers not scored yet, in network order."""
        return [name for name in self.planned if name not in self.layers]

    def table(self) -> dict[str, dict[float, float | None]]:
        """``{layer: {kept_ratio: score}}`` including ratio 1.0 (the baseline)."""
        return {
            name: {**{e.kept_ratio: e.score for e in layer.entries}, 1.0: self.baseline}
            for name, layer in self.layers.items()
        }

    def to_table(self) -> str:
        """A human-readable summary: settings, then score per layer and candidate."""
        fp = self.fingerprint
        lines = [
            f"scheme {self.scheme}, cost metric {self.cost_metric}, "
            f"multiplicity {fp.get('multiplicity')}",
            f"evaluator {fp.get('evaluator')}, input shape {fp.get('input_shape')}",
            f"baseline score {self.baseline:.4f}; model {self.model_cost.macs:,} MACs, "
            f"{self.model_cost.params:,} params",
            f"layers scored {len(self.layers)} of {len(self.planned)}"
            + ("" if self.is_complete else f" (missing: {', '.join(self.missing)})"),
        ]
        if self.predicted:
            total = sum(len(layer.entries) for layer in self.layers.values())
            lines.append(
                f"two-level: {total - self.predicted} of {total} scores measured, "
                f"{self.predicted} predicted from the layer-output proxy"
            )
        width = max([len("layer"), *(len(name) for name in self.layers)])
        metric = self.cost_metric
        for name, layer in self.layers.items():
            share = layer.info.cost.get(metric) / max(1, self.model_cost.get(metric))
            lines.append(f"{name:<{width}}  ({share:.1%} of model {self.cost_metric})")
            for entry in layer.entries:
                score = "failed" if entry.score is None else f"{entry.score:.4f}"
                scheme = "" if entry.scheme is None else f"{entry.scheme} "
                source = "" if entry.measured else " (predicted)"
                lines.append(
                    f"  {scheme}asked {entry.asked_ratio:.2f} -> kept {entry.kept_ratio:.3f}, "
                    f"rank {entry.rank:>4}: {score}{source}"
                )
        for name, reason in self.skipped.items():
            lines.append(f"skipped {name}: {reason}")
        lines += [f"config_list {name}: {b.describe()}" for name, b in self.bounds.items()]
        if self.latency is not None:
            settings = fp.get("latency", {})
            lines.append(
                f"latency measured at batch {settings.get('batch_size')}, "
                f"threads {settings.get('threads')}, {settings.get('device')}: model "
                f"{self.latency.model_ns:,} ns"
            )
            lines += self.latency.notes()
        return "\n".join(lines)

    def with_layer(self, name: str, layer: LayerScores) -> EvalScores:
        """A copy with ``layer`` added (the dictionary itself stays immutable)."""
        return dataclasses.replace(self, layers={**self.layers, name: layer})

    # Serialization

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON, with the format name, version and a checksum over the
        content (so a hand-edited file is noticed)."""
        data = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "greedy_compress_version": __version__,
            "fingerprint": self.fingerprint,
            "baseline": self.baseline,
            "model_cost": self.model_cost.to_dict(),
            "planned": list(self.planned),
            "layers": {name: layer.to_dict() for name, layer in self.layers.items()},
            "skipped": dict(self.skipped),
            "exact_costs": None if self.exact_costs is None else self.exact_costs.to_dict(),
            **({} if self.latency is None else {"latency": self.latency.to_dict()}),
            **({"bounds": bounds_to_json(self.bounds)} if self.bounds else {}),
        }
        return {**data, "checksum": _checksum(data)}

    @classmethod
    def from_dict(
        cls,
        data: Any,
        source: str = "<dict>",
        *,
        resuming: bool = False,
        accept_edits: bool = False,
    ) -> EvalScores:
        """Inverse of :meth:`to_dict`; raises :class:`ScoresFormatError` on anything else.

        The checksum must match the content: an edited score, baseline, rank or cost is
        refused unless ``accept_edits`` (a deliberate choice; saving the dictionary again
        then writes a checksum for the edited content). Version 1 files (no checksum) are
        read too, except those of schemes whose costs interact (pruning), which lacked the
        exact pricing: ``build_eval_scores`` upgrades them (``resuming=True``) without
        evaluating anything again.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ScoresFormatError(f"{source} is not a greedy-compress eval-score file.")
        version = data.get("format_version")
        if version not in _READABLE_VERSIONS:
            raise ScoresFormatError(
                f"{source} has format_version {version!r}; this greedy-compress reads "
                f"versions {', '.join(map(str, _READABLE_VERSIONS))}."
            )
        if version != 1 and not accept_edits:
            _check_checksum(data, source)
        if version == 1 and not resuming and _costs_interact(data):
            raise ScoresFormatError(
                f"{source} was written by an older greedy-compress that did not record how "
                "pruned layers' costs compound. Pass it to build_eval_scores with the same "
                "model and settings (scores_path=...): it is upgraded without evaluating "
                "anything again."
            )
        try:
            baseline = float(data["baseline"])
            if not math.isfinite(baseline):
                raise ValueError("baseline is not finite")
            return cls(
                fingerprint=dict(data["fingerprint"]),
                baseline=baseline,
                model_cost=Cost.from_dict(data["model_cost"]),
                planned=tuple(data["planned"]),
                layers={n: LayerScores.from_dict(v) for n, v in data["layers"].items()},
                skipped=dict(data["skipped"]),
                exact_costs=None
                if data.get("exact_costs") is None
                else ChannelCosts.from_dict(data["exact_costs"]),
                latency=None
                if data.get("latency") is None
                else LatencyTable.from_dict(data["latency"]),
                bounds=bounds_from_json(data.get("bounds", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ScoresFormatError(f"{source} is malformed: {error!r}") from error

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the dictionary to ``path`` atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expect: Mapping[str, Any] | None = None,
        resuming: bool = False,
        accept_edits: bool = False,
    ) -> EvalScores:
        """Read a dictionary; with ``expect`` (a fingerprint), check it was made for that.

        ``accept_edits=True`` reads a file whose content no longer matches its checksum
        (edited by hand): a deliberate choice, see :meth:`from_dict`.

        Raises:
            ScoresFormatError: not a readable file, not strict JSON, not a format version
                we read, or edited after it was written.
            ScoresMismatchError: ``expect`` given and some fingerprint fields differ.
        """
        source = os.fspath(path)
        try:
            data = read_json(path)
        except NonFiniteJSONError as error:
            raise ScoresFormatError(f"{source} is not strict JSON: {error}") from error
        except json.JSONDecodeError as error:
            raise ScoresFormatError(f"{source} is not valid JSON: {error}") from error
        except UnicodeDecodeError as error:
            raise ScoresFormatError(f"{source} is not a text file: {error}") from error
        except IsADirectoryError:
            raise ScoresFormatError(f"{source} is a directory, not a dictionary file") from None
        except OSError as error:
            raise ScoresFormatError(f"{source} cannot be read: {error.strerror}") from error
        scores = cls.from_dict(data, source=source, resuming=resuming, accept_edits=accept_edits)
        if expect is not None:
            scores.check_fingerprint(expect, source=os.fspath(path))
        return scores

    def check_fingerprint(self, expect: Mapping[str, Any], source: str = "the dictionary") -> None:
        """Raise :class:`ScoresMismatchError` naming every field that differs from ``expect``.

        An evaluator that cannot show its data (``evaluator_data`` None, on either side: a
        plain callable, e.g. a wrapper declaring the same ``name``) is checked by its name
        and the baseline score alone.
        """
        differing = [
            f"{key!r} (file: {self.fingerprint.get(key)!r}, now: {expect[key]!r})"
            for key in fingerprint_differences(self.fingerprint, expect)
        ]
        if differing:
            raise ScoresMismatchError(
                f"{source} was made for a different model or setting: "
                + "; ".join(differing)
                + ". Use another scores path, or delete the file to rebuild it."
            )


def fingerprint_differences(saved: Mapping[str, Any], expect: Mapping[str, Any]) -> list[str]:
    """The fields of ``expect`` that ``saved`` has otherwise (the data digest only when
    both sides know it)."""
    return [
        key
        for key in expect
        if saved.get(key) != expect[key]
        and not (key == "evaluator_data" and None in (saved.get(key), expect[key]))
    ]


def _checksum(data: Mapping[str, Any]) -> str:
    content = {k: v for k, v in data.items() if k not in ("checksum", "greedy_compress_version")}
    return content_hash(content)


def _check_checksum(data: Mapping[str, Any], source: str) -> None:
    if data.get("checksum") != _checksum(data):
        raise ScoresFormatError(
            f"{source} was edited after it was written (its checksum does not match its "
            "content). To use it as edited, load it with EvalScores.load(path, "
            "accept_edits=True), or accept it once with `greedy-compress scores accept "
            f"{source}`; otherwise delete it to rebuild."
        )


def _costs_interact(data: Mapping[str, Any]) -> bool:
    """Whether a file's scheme prices selections exactly (a registered pruning scheme)."""
    name = data.get("fingerprint", {}).get("scheme") if isinstance(data, Mapping) else None
    scheme = scheme_class(name) if isinstance(name, str) else None
    return scheme is not None and scheme.costs_interact
