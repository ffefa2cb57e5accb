"""The channel-dependency graph: which modules' channels must change together.

A *channel group* is a set of channels that must be pruned as one: the output channels of
the layers that produce them (several when residual adds tie them), every BatchNorm and
depthwise conv they pass through, and the input channels of every layer that reads them.
A module's input or output is described by a *layout*: the groups laid side by side along
the channel dimension (several after a concatenation), each channel spanning ``block``
features once flattened into a Linear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChannelGroup", "DependencyGraph", "Layout", "ModuleUse", "Segment"]


@dataclass(frozen=True)
class Segment:
    """``size`` consecutive channels of group ``group``, each spanning ``block`` features."""

    group: int
    size: int
    block: int = 1


Layout = tuple[Segment, ...]


def layout_width(layout: Layout) -> int:
    """Number of features a layout spans (channels times blocks)."""
    return sum(s.size * s.block for s in layout)


@dataclass(frozen=True)
class ModuleUse:
    """How one module touches channel groups.

    ``role`` is ``"conv"`` / ``"linear"`` (reads ``inputs``, writes a new group),
    ``"depthwise"`` or ``"norm"`` (carries its input channels through: ``outputs == inputs``).
    ``positions`` is the number of output vectors per pass, ``kernel`` the number of kernel
    taps, ``bias`` and ``affine`` whether it has a bias / a norm's scale and shift: enough
    for its exact cost with any channels removed, without the module itself.
    """

    name: str
    role: str
    inputs: Layout
    outputs: Layout
    positions: int
    kernel: int = 1
    bias: bool = False
    affine: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON (layouts as ``[group, size, block]`` triples)."""
        return {
            "role": self.role,
            "inputs": [[s.group, s.size, s.block] for s in self.inputs],
            "outputs": [[s.group, s.size, s.block] for s in self.outputs],
            "positions": self.positions,
            "kernel": self.kernel,
            "bias": self.bias,
            "affine": self.affine,
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> ModuleUse:
        """Inverse of :meth:`to_dict`."""

        def layout(items: Any) -> Layout:
            return tuple(Segment(int(g), int(s), int(b)) for g, s, b in items)

        return cls(
            name=name,
            role=str(data["role"]),
            inputs=layout(data["inputs"]),
            outputs=layout(data["outputs"]),
            positions=int(data["positions"]),
            kernel=int(data["kernel"]),
            bias=bool(data["bias"]),
            affine=bool(data["affine"]),
        )


@dataclass
class ChannelGroup:
    """Channels pruned together, with every module they touch.

    ``blocked`` says why the channels cannot be changed safely (model input or output, an
    operation the graph does not understand, ...), or is None when they can.
    """

    id: int
    size: int
    producers: list[str] = field(default_factory=list)
    carriers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    blocked: str | None = None

    @property
    def members(self) -> list[str]:
        """Every module changed when the group is pruned, without duplicates, in order."""
        return list(dict.fromkeys(self.producers + self.carriers + self.consumers))


@dataclass
class DependencyGraph:
    """Channel groups of a traced model and how each Conv/Linear/BatchNorm uses them.

    Example:
        >>> from greedy_compress.graph import build_graph
        >>> graph = build_graph(model, example_input)
        >>> graph.output_group("features.0").consumers
        ['features.3']
    """

    groups: dict[int, ChannelGroup]
    modules: dict[str, ModuleUse]
    blocked_modules: dict[str, str] = field(default_factory=dict)

    def output_group(self, name: str) -> ChannelGroup | None:
        """The group of a Conv/Linear's output channels (None if it has no own group)."""
        use = self.modules.get(name)
        if use is None or use.role not in ("conv", "linear"):
            return None
        return self.groups[use.outputs[0].group]

    def input_group(self, name: str) -> ChannelGroup | None:
        """The group of a module's input channels when they come from one group only."""
        use = self.modules.get(name)
        if use is None or len(use.inputs) != 1:
            return None
        return self.groups[use.inputs[0].group]

    def block_reason(self, name: str) -> str | None:
        """Why a module's channels cannot be touched at all, or None."""
        return self.blocked_modules.get(name)
