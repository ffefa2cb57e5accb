"""The channel-dependency graph: which modules' channels must change together.

A *channel group* is a set of channels that must be pruned as one: the output channels of
the layers that produce them (several when residual adds tie them), every BatchNorm and
depthwise conv they pass through, and the input channels of every layer that reads them.
A module's input or output is described by a *layout*: the groups laid side by side along
the channel dimension (several after a concatenation), each channel spanning ``block``
features once flattened into a Linear.

A group split into heads (attention's q, k and v; a grouped conv's input and output; a
GroupNorm's channels) has ``parts`` equal parts: pruning keeps the same number of channels
in each. Its *part group* counts the parts themselves (one "channel" per head): pruning
that group removes whole heads from every group split by it (head pruning), and from
anything laid out per head (the attention scores, a relative position bias table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ROLES", "ChannelGroup", "DependencyGraph", "Layout", "ModuleUse", "Segment"]


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


ROLES = ("conv", "linear", "depthwise", "norm", "scale", "param", "matmul")
"""What a :class:`ModuleUse` can be: a producer/consumer (``conv``, ``linear``), a carrier
(``depthwise``, ``norm``, ``scale``, ``param``) or an operation priced with the channels
(``matmul``)."""


@dataclass(frozen=True)
class ModuleUse:
    """How one module (or parameter, or operation) touches channel groups.

    ``role`` is ``"conv"`` / ``"linear"`` (reads ``inputs``, writes a new group; a grouped
    conv has ``groups`` > 1), ``"depthwise"``, ``"norm"`` (a scale and a shift per channel
    when ``affine``), ``"scale"`` (one parameter per channel: LayerNorm without bias,
    RMSNorm) or ``"param"`` (a parameter tensor laid out along the channels in dimension
    ``axis``: a layer scale, a class token, a position embedding, a bias table), which all
    carry their input channels (``outputs == inputs``), or ``"matmul"``: an operation of the
    traced graph whose multiply-accumulates scale with the channels it contracts or carries
    (attention's ``Q K^T`` and ``P V``; named ``@node``; no parameters). ``positions`` is
    the number of output vectors per pass (for ``param``: the tensor's elements per channel
    feature), ``kernel`` the number of kernel taps, ``bias`` and ``affine`` whether it has a
    bias / a norm's scale and shift: enough for its exact cost with any channels removed,
    without the module itself.
    """

    name: str
    role: str
    inputs: Layout
    outputs: Layout
    positions: int
    kernel: int = 1
    bias: bool = False
    affine: bool = False
    groups: int = 1
    axis: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON (layouts as ``[group, size, block]`` triples)."""
        extra = {"groups": self.groups} if self.groups != 1 else {}
        if self.role == "param":
            extra["axis"] = self.axis
        return {
            "role": self.role,
            "inputs": [[s.group, s.size, s.block] for s in self.inputs],
            "outputs": [[s.group, s.size, s.block] for s in self.outputs],
            "positions": self.positions,
            "kernel": self.kernel,
            "bias": self.bias,
            "affine": self.affine,
            **extra,
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
            groups=int(data.get("groups", 1)),
            axis=int(data.get("axis", 0)),
        )


@dataclass
class ChannelGroup:
    """Channels pruned together, with every module they touch.

    ``blocked`` says why the channels cannot be changed safely (model input or output, an
    operation the graph does not understand, ...), or is None when they can. A group split
    into heads has ``parts`` > 1 equal parts and ``part_group``, the id of the group of its
    parts (whose ``blocked`` says whether whole heads can go); a part group lists the groups
    it splits in ``parted``. ``operations`` are the traced operations priced with the
    channels (``@node`` names; they change no module).
    """

    id: int
    size: int
    producers: list[str] = field(default_factory=list)
    carriers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    blocked: str | None = None
    parts: int = 1
    part_group: int | None = None
    parted: list[int] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)

    @property
    def members(self) -> list[str]:
        """Every module (or parameter) changed when the group is pruned, without duplicates,
        in order."""
        return list(dict.fromkeys(self.producers + self.carriers + self.consumers))


@dataclass
class DependencyGraph:
    """Channel groups of a traced model and how each Conv/Linear/BatchNorm uses them.

    ``sites`` are the reshapes (and attention calls) whose size arguments follow the channels
    (see :mod:`greedy_compress.graph.sites`); ``attention`` the attention units found (one
    per part group of heads); ``view`` the model the graph names modules in (the model
    itself, or a view with torch's attention modules made traceable, see
    :mod:`greedy_compress.graph.unpack`).

    Example:
        >>> from greedy_compress.graph import build_graph
        >>> graph = build_graph(model, example_input)
        >>> graph.output_group("features.0").consumers
        ['features.3']
    """

    groups: dict[int, ChannelGroup]
    modules: dict[str, ModuleUse]
    blocked_modules: dict[str, str] = field(default_factory=dict)
    sites: list[Any] = field(default_factory=list)
    attention: list[Any] = field(default_factory=list)
    view: Any = field(default=None, repr=False, compare=False)
    traced: Any = field(default=None, repr=False, compare=False)
    site_calls: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    stand_ins: list[str] = field(default_factory=list)
    stacked: list[tuple[int, ...]] = field(default_factory=list)

    def in_model(self, name: str) -> bool:
        """Whether ``name`` is a module of the model itself (not a projection of a traceable
        stand-in for ``nn.MultiheadAttention``)."""
        return not any(name.startswith(p + ".") for p in self.stand_ins)

    def stacked_with(self, group: int) -> list[int]:
        """Groups laid side by side with ``group`` in one reshape (a fused qkv projection
        split into q, k and v): all must keep the same number of channels per head."""
        return [g for tie in self.stacked if group in tie for g in tie if g != group]

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
