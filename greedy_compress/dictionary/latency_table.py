"""What a latency dictionary measured, saved with it: the model's latency, each planned
layer's original latency and the latency of every rank timed for it.

It is the cache of the latency measurement: a dictionary file holds it from the first save
on (before any layer is scored), so a resumed or reused build prices candidates with the
same measurements instead of timing them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LatencyTable", "LayerLatency"]


@dataclass(frozen=True)
class LayerLatency:
    """One layer's measurements, in integer nanoseconds.

    Attributes:
        original_ns: the layer as it is (every module its scheme changes, timed together).
        ranks: rank -> latency of the compressed layer at that rank (the median ratio to
            the original, timed next to it, times ``original_ns``).
        chosen: with ``multiplicity="auto"``, the rank chosen for each asked ratio; empty
            otherwise.
    """

    original_ns: int
    ranks: dict[int, int]
    chosen: dict[float, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "original_ns": self.original_ns,
            "ranks": {str(rank): ns for rank, ns in sorted(self.ranks.items())},
            "chosen": [[ratio, rank] for ratio, rank in sorted(self.chosen.items())],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerLatency:
        """Inverse of :meth:`to_dict`."""
        return cls(
            original_ns=int(data["original_ns"]),
            ranks={int(rank): int(ns) for rank, ns in data["ranks"].items()},
            chosen={float(ratio): int(rank) for ratio, rank in data.get("chosen", [])},
        )


@dataclass(frozen=True)
class LatencyTable:
    """A dictionary's latency measurements.

    Attributes:
        model_ns: the whole model, timed round robin with the original layers (so the rest
            of the network, which is never compressed, is a fixed cost: ``model_ns`` minus
            the planned layers' ``original_ns``).
        layers: per planned layer, its measurements.
        dropped: with ``cost="latency"``, per layer the candidate ranks dropped because
            they measured no faster than the original layer.
    """

    model_ns: int
    layers: dict[str, LayerLatency]
    dropped: dict[str, list[int]] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """One line per layer with dropped candidates.

        Example:
            >>> table = LatencyTable(100, {"fc": LayerLatency(40, {2: 45, 1: 30})}, {"fc": [2]})
            >>> table.notes()
            ['fc: rank 2 dropped, slower than the original layer (x1.125 of its 40 ns)']
        """
        lines = []
        for name, ranks in self.dropped.items():
            layer = self.layers[name]
            slower = ", ".join(f"x{layer.ranks[r] / max(layer.original_ns, 1):.3f}" for r in ranks)
            lines.append(
                f"{name}: rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} "
                f"dropped, slower than the original layer ({slower} of its "
                f"{layer.original_ns:,} ns)"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "model_ns": self.model_ns,
            "layers": {name: layer.to_dict() for name, layer in self.layers.items()},
            "dropped": {name: list(ranks) for name, ranks in self.dropped.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyTable:
        """Inverse of :meth:`to_dict`."""
        return cls(
            model_ns=int(data["model_ns"]),
            layers={str(n): LayerLatency.from_dict(v) for n, v in data["layers"].items()},
            dropped={str(n): [int(r) for r in v] for n, v in data.get("dropped", {}).items()},
        )
