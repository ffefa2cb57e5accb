"""Sharding the eval-score dictionary across processes and machines with torch.distributed.

Under ``torchrun`` (any backend; gloo on CPU), every rank plans the same work, a list of
(layer, rank) evaluations still missing, and takes every ``world_size``-th item. Each rank
writes what it finishes to its own *part file* (atomic JSON beside the dictionary, in
``<scores_path>.parts/``) after every pass, so a rank that dies loses at most the pass it
was scoring. At the end the ranks exchange their results (as JSON, over the process group,
so no shared file system is needed) and every rank returns the same complete dictionary;
rank 0 writes it. A rerun, with any number of ranks, reads the parts and does only what
is missing.

Outside a process group a build is one shard of one:

    >>> current_shard(None, "example")
    Shard(rank=0, world=1)
    >>> Shard(rank=1, world=3).take([("a", 1), ("a", 2), ("b", 1), ("b", 2)])
    [('a', 2)]

docs/fast-and-sharded-builds.md shows a script run under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist

from greedy_compress._util.constraints import bad_parameter
from greedy_compress._util.io import atomic_write_json, read_json
from greedy_compress.dictionary.scores import fingerprint_differences
from greedy_compress.errors import GreedyCompressError, ScoresFormatError, ScoresMismatchError

__all__ = [
    "PART_FORMAT_NAME",
    "Known",
    "Shard",
    "all_gather_json",
    "current_shard",
    "part_path",
    "read_parts",
    "remove_parts",
    "write_part",
]

PART_FORMAT_NAME = "greedy-compress/eval-scores-part"
PART_FORMAT_VERSION = 1

Item = tuple[str, int]  # (layer name, rank)


@dataclass(frozen=True)
class Shard:
    """This process's place among the workers: ``rank`` of ``world`` (0 of 1 alone)."""

    rank: int = 0
    world: int = 1

    def take(self, items: list[Item]) -> list[Item]:
        """This shard's share of ``items``: every ``world``-th, starting at ``rank``."""
        return items[self.rank :: self.world]


def current_shard(distributed: bool | None, owner: str) -> Shard:
    """The shard to build, from the torch.distributed process group.

    Args:
        distributed: None: shard when a process group with more than one rank is
            initialized; True: require one; False: build everything in this process.
        owner: the calling function, for the error message.

    Raises:
        InvalidParameterError: ``distributed`` is not None/True/False.
        GreedyCompressError: ``distributed=True`` without an initialized process group.
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise bad_parameter("distributed", owner, "None, True or False", distributed)
    ready = dist.is_available() and dist.is_initialized()
    if distributed is None:
        distributed = ready and dist.get_world_size() > 1
    elif distributed and not ready:
        raise GreedyCompressError(
            f"{owner}(distributed=True) needs an initialized torch.distributed process group: "
            "launch with torchrun and call torch.distributed.init_process_group('gloo') first."
        )
    if not distributed:
        return Shard()
    return Shard(rank=dist.get_rank(), world=dist.get_world_size())


def all_gather_json(value: Any) -> list[Any]:
    """Every rank's ``value`` (JSON-serializable), in rank order; no pickle involved."""
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    data = json.dumps(value, allow_nan=False).encode("utf-8")
    size = torch.tensor([len(data)], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    buffer = torch.zeros(longest, dtype=torch.uint8, device=device)
    buffer[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    gathered = [torch.empty_like(buffer) for _ in sizes]
    dist.all_gather(gathered, buffer)
    return [
        json.loads(bytes(g[: int(s.item())].cpu().tolist()).decode("utf-8"))
        for g, s in zip(gathered, sizes, strict=True)
    ]


@dataclass
class Known:
    """Scores finished so far: the baseline and ``(layer, rank) -> score`` (None = failed)."""

    baseline: float | None = None
    scores: dict[Item, float | None] = field(default_factory=dict)

    def update(self, other: Known) -> None:
        """Add ``other``'s scores (and its baseline when this one has none)."""
        if self.baseline is None:
            self.baseline = other.baseline
        self.scores.update(other.scores)

    def to_json(self) -> dict[str, Any]:
        """Plain data: ``{"baseline": b, "entries": [[layer, rank, score], ...]}``."""
        return {
            "baseline": self.baseline,
            "entries": [[layer, rank, score] for (layer, rank), score in self.scores.items()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Known:
        """Inverse of :meth:`to_json`."""
        baseline = data["baseline"]
        return cls(
            baseline=None if baseline is None else float(baseline),
            scores={
                (str(layer), int(rank)): None if score is None else float(score)
                for layer, rank, score in data["entries"]
            },
        )


def parts_dir(scores_path: str | os.PathLike[str]) -> Path:
    """The folder holding the part files of ``scores_path``."""
    path = Path(scores_path)
    return path.with_name(path.name + ".parts")


def part_path(scores_path: str | os.PathLike[str], rank: int) -> Path:
    """The part file rank ``rank`` writes for ``scores_path``."""
    return parts_dir(scores_path) / f"part-{rank}.json"


def write_part(
    scores_path: str | os.PathLike[str], rank: int, fingerprint: Mapping[str, Any], known: Known
) -> None:
    """Atomically write rank ``rank``'s finished scores beside ``scores_path``."""
    atomic_write_json(
        part_path(scores_path, rank),
        {
            "format": PART_FORMAT_NAME,
            "format_version": PART_FORMAT_VERSION,
            "fingerprint": dict(fingerprint),
            **known.to_json(),
        },
    )


def _read_part(path: Path, fingerprint: Mapping[str, Any]) -> Known:
    try:
        data = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ScoresFormatError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or data.get("format") != PART_FORMAT_NAME:
        raise ScoresFormatError(f"{path} is not a greedy-compress part file.")
    if data.get("format_version") != PART_FORMAT_VERSION:
        raise ScoresFormatError(
            f"{path} has format_version {data.get('format_version')!r}; this greedy-compress "
            f"reads version {PART_FORMAT_VERSION}."
        )
    found = data.get("fingerprint", {})
    differing = fingerprint_differences(found, fingerprint)
    if differing:
        raise ScoresMismatchError(
            f"{path} was made for a different model or setting ({', '.join(differing)} "
            "differ). Use another scores path, or delete its .parts folder to rebuild."
        )
    try:
        return Known.from_json(data)
    except (KeyError, TypeError, ValueError) as error:
        raise ScoresFormatError(f"{path} is malformed: {error!r}") from error


def read_parts(
    scores_path: str | os.PathLike[str], fingerprint: Mapping[str, Any]
) -> dict[int, Known]:
    """The part files beside ``scores_path`` (any number of ranks), by the rank that wrote them.

    Raises:
        ScoresFormatError: a part file is not valid.
        ScoresMismatchError: a part file was made for another model or setting.
    """
    folder = parts_dir(scores_path)
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.iterdir()):
        match = re.fullmatch(r"part-(\d+)\.json", path.name)
        if match:
            found[int(match.group(1))] = _read_part(path, fingerprint)
    return found


def remove_parts(
    scores_path: str | os.PathLike[str], ranks: list[int], *, leftovers: bool = False
) -> None:
    """Delete the part files of ``ranks`` (once the merged dictionary is saved), and the
    folder when it is empty.

    With ``leftovers`` (only once no rank writes any more), also delete the temporary files
    a killed rank may have left behind mid-write.
    """
    for rank in ranks:
        part_path(scores_path, rank).unlink(missing_ok=True)
    folder = parts_dir(scores_path)
    if leftovers and folder.is_dir():
        for path in folder.glob(".part-*.tmp"):
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (another rank's part) or already gone
        folder.rmdir()
