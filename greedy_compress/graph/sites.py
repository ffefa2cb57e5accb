"""Calls whose size arguments follow the channels: the *sites* a pruned model must update.

When a reshape splits or merges channel dimensions (``x.view(B, N, heads, head_dim)``,
``out.reshape(B, N, C)``), pruning changes the sizes it must be called with. A size given as
``-1``, or read from the same channels (``x.shape[-1]`` of the tensor reshaped), follows by
itself; a constant or a size read from other channels (``C`` of the block's input,
``self.num_heads``) does not. ``scaled_dot_product_attention`` without ``scale`` is a site
too: its default scale is ``1 / sqrt(head_dim)``, which changes with the head dim. Each
:class:`SizeSite` records, per output dimension holding channels, what its size counts
(:class:`Factor`) and what each size argument reads, so that a pruning can tell which calls
no longer fit (:meth:`SizeSite.stale`) and :mod:`greedy_compress.graph.rewrite` can give them
new sizes.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from torch import fx

from greedy_compress.graph.dependency import Layout
from greedy_compress.graph.groups import Groups
from greedy_compress.graph.values import Value

if TYPE_CHECKING:
    from greedy_compress.graph.build import GraphBuilder

__all__ = ["Factor", "SizeSite", "record_cut", "record_sdpa_scale", "record_site"]


@dataclass(frozen=True)
class Factor:
    """What a dimension's size counts.

    ``kind`` is ``"width"`` (all features of ``layout``), ``"parts"`` (the number of heads of
    the groups in ``groups``), ``"per_part"`` (channels per head of each of ``groups``,
    equal), ``"each"`` (the width of each of ``groups``, equal) or ``"pieces"`` (a fixed
    count ``count``: q, k and v side by side).
    """

    kind: str
    layout: Layout = ()
    groups: tuple[int, ...] = ()
    count: int = 0

    def resolved(self, uf: Groups) -> Factor:
        return replace(
            self,
            layout=uf.expand(self.layout),
            groups=tuple(dict.fromkeys(uf.find(g) for g in self.groups)),
        )


@dataclass(frozen=True)
class SizeSite:
    """One call with size arguments that touch channel dimensions.

    Attributes:
        node: the traced node's name.
        module: the module whose ``forward`` makes the call ("" for the model's own).
        kind: ``"reshape"`` (``view``, ``reshape``, ``unflatten``), ``"sdpa_scale"``,
            ``"pieces"`` (``chunk``, ``split`` along the channels: piece i's width is
            ``factors[i]``) or ``"slice"`` (``x[:, a:b]``: ``factors`` 0, 1, 2 are the widths
            before, in and after the slice).
        sizes: the size of each output dimension on the example input (the pieces' widths).
        factors: output dim -> what its size counts (its channel dims).
        auto: output dims given as ``-1``.
        reads: output dim -> the channel sizes its argument reads (``x.shape[-1]``...).
        position: ``((op, target), n)``: the n-th such call in the module's own forward.
        dim: the channel dim a ``"pieces"`` or ``"slice"`` site cuts.
        slot: the index item of a ``"slice"`` site that cuts the channels (-1: the index).
    """

    node: str
    module: str
    kind: str
    sizes: tuple[int, ...]
    factors: dict[int, Factor] = field(default_factory=dict)
    auto: frozenset[int] = frozenset()
    reads: dict[int, tuple[Factor, ...]] = field(default_factory=dict)
    position: tuple[tuple[str, str], int] = (("", ""), 0)
    dim: int = 0
    slot: int = -1

    def resolved(self, uf: Groups) -> SizeSite:
        return replace(
            self,
            factors={d: f.resolved(uf) for d, f in self.factors.items()},
            reads={d: tuple(f.resolved(uf) for f in fs) for d, fs in self.reads.items()},
        )

    def follows(self, dim: int) -> bool:
        """Whether output dim ``dim``'s argument follows its channels by itself."""
        return dim in self.auto or self.reads.get(dim) == (self.factors[dim],)

    def watched(self) -> list[Factor]:
        """Factors whose change makes this call stale: channel dims that do not follow,
        and every channel size an argument reads."""
        found = [f for d, f in self.factors.items() if not self.follows(d)]
        for dim, read in self.reads.items():
            if dim in self.factors and self.follows(dim):
                continue
            found.extend(read)
        return found

    def describe(self) -> str:
        """A short description for block reasons."""
        where = f"in {self.module}" if self.module else "in the model's own forward"
        if self.kind == "sdpa_scale":
            return f"scaled_dot_product_attention {self.node} {where} without a scale"
        if self.kind == "pieces":
            return f"{self.node} {where} splits the channels into {list(self.sizes)}"
        if self.kind == "slice":
            begin = self.sizes[0]
            return f"{self.node} {where} slices channels {begin}:{begin + self.sizes[1]}"
        return f"{self.node} {where} reshapes to sizes {list(self.sizes)}"


def module_of(node: fx.Node) -> str:
    """The module whose own ``forward`` makes the call ("" for the model's)."""
    return _module_of(node)


def _module_of(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack")
    return str(next(reversed(stack))) if stack else ""


def factors_of(builder: GraphBuilder, value: Value) -> dict[int, Factor]:
    """What each of ``value``'s channel dims counts."""
    layout = builder.uf.expand(value.layout)
    if len(value.dims) == 1:
        return {value.dims[0]: Factor("width", layout=layout)}
    groups = tuple(s.group for s in layout)
    if len(layout) > 1:  # a stack of pieces: q, k, v
        inner = {
            value.dims[-1]: Factor("per_part" if len(value.dims) > 2 else "each", groups=groups)
        }
        middle = {d: Factor("parts", groups=groups) for d in value.dims[1:-1]}
        return {value.dims[0]: Factor("pieces", count=value.sizes[0]), **middle, **inner}
    return {
        value.dims[0]: Factor("parts", groups=groups, count=value.sizes[0]),
        value.dims[1]: Factor("per_part", groups=groups),
    }


def _reads(builder: GraphBuilder, arg: Any) -> tuple[Factor, ...] | None:
    """The channel sizes a size argument reads, or None when it reads something unknown."""
    if not isinstance(arg, fx.Node):
        return ()
    source: tuple[Any, Any] | None = None
    args: Any = arg.args
    if arg.op == "call_function" and arg.target is operator.getitem:
        base, index = args[0], args[1]
        if isinstance(base, fx.Node) and isinstance(index, int):
            shape = (
                base.op == "call_function" and base.target is getattr and base.args[1] == "shape"
            )
            size = base.op == "call_method" and base.target == "size" and len(base.args) == 1
            if shape or size:
                source = (base.args[0], index)
    elif arg.op == "call_method" and arg.target == "size" and len(args) == 2:
        source = (args[0], args[1])
    if source is not None:
        tensor, index = source
        value = builder.value(tensor)
        meta = tensor.meta.get("tensor_meta") if isinstance(tensor, fx.Node) else None
        if value is None or meta is None:
            return ()
        dim = int(index) % len(meta.shape)
        return (factors_of(builder, value)[dim],) if dim in value.dims else ()
    if arg.op == "call_function" and arg.target in (
        operator.floordiv,
        operator.mul,
        operator.add,
        operator.sub,
        operator.truediv,
    ):
        found: list[Factor] = []
        for part in arg.args:
            read = _reads(builder, part)
            if read is None:
                return None
            found.extend(read)
        return tuple(found)
    return None


def _size_args(node: fx.Node, ndim: int) -> dict[int, Any] | None:
    """Output dim -> its size argument, for view / reshape / unflatten calls."""
    args: Any = node.args
    if node.target == "unflatten":
        dim, given = args[1], args[2]
        if not isinstance(dim, int) or not isinstance(given, (list, tuple)):
            return None
        start = dim % (ndim - len(given) + 1)
        return {start + i: size for i, size in enumerate(given)}
    sizes: Any = args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
        sizes = tuple(sizes[0])
    if "shape" in node.kwargs:
        sizes = tuple(node.kwargs["shape"])  # type: ignore[arg-type]
    return dict(enumerate(sizes)) if len(sizes) == ndim else None


def record_site(builder: GraphBuilder, node: fx.Node, value: Value, after: tuple[int, ...]) -> None:
    """Note a reshape whose output holds channels in ``value``."""
    args = _size_args(node, len(after))
    factors = factors_of(builder, value)
    auto: set[int] = set()
    reads: dict[int, tuple[Factor, ...]] = {}
    for dim in range(len(after)):
        arg = args.get(dim) if args is not None else None
        if arg == -1:
            auto.add(dim)
            continue
        read = _reads(builder, arg) if args is not None else ()
        if read is None:  # an argument made in a way we cannot follow: it reads everything
            read = tuple(factors.values())
        if read:
            reads[dim] = read
    builder.sites.append(
        SizeSite(
            node.name,
            _module_of(node),
            "reshape",
            after,
            factors,
            frozenset(auto),
            reads,
            builder.position[node],
        )
    )


def record_cut(
    builder: GraphBuilder, node: fx.Node, kind: str, parts: list[Layout], dim: int, slot: int = -1
) -> None:
    """Note a ``chunk`` / ``split`` (``kind="pieces"``) or a slice (``"slice"``) of the
    channels into ``parts``: sizes it was called with that pruning makes stale."""
    layouts = [builder.uf.expand(part) for part in parts]
    builder.sites.append(
        SizeSite(
            node.name,
            _module_of(node),
            kind,
            tuple(sum(s.size * s.block for s in part) for part in layouts),
            {i: Factor("width", layout=part) for i, part in enumerate(layouts)},
            position=builder.position[node],
            dim=dim,
            slot=slot,
        )
    )


def record_sdpa_scale(builder: GraphBuilder, node: fx.Node, query: Value) -> None:
    """``scaled_dot_product_attention`` with its default scale, which follows the head dim."""
    factor = factors_of(builder, query).get(query.dims[-1])
    if factor is not None and factor.kind in ("per_part", "width"):
        builder.sites.append(
            SizeSite(
                node.name,
                _module_of(node),
                "sdpa_scale",
                (),
                {-1: factor},
                position=builder.position[node],
            )
        )


def _lazy(uf: Groups, factor: Factor) -> Factor:
    """A split into heads whose heads were never used is decided now: pieces if one was
    selected (q, k and v side by side), else equal parts."""
    if factor.kind not in ("parts", "per_part") or len(factor.groups) != 1:
        return factor
    root = uf.find(factor.groups[0])
    if root in uf.pieces:
        if factor.kind == "parts":
            return Factor("pieces", count=len(uf.pieces[root]))
        return Factor("each", groups=tuple(uf.leaves(root)))
    if factor.kind == "parts" and root not in uf.parts:
        uf.split_parts(root, factor.count)
    return factor


def settle(uf: Groups, sites: list[SizeSite], calls: dict[str, int]) -> list[SizeSite]:
    """Decide the lazy head splits, and block what calls that cannot be rewritten would
    make stale: calls in the model's own forward, or in a module called other than once."""
    settled = []
    for site in sites:
        site = replace(
            site,
            factors={d: _lazy(uf, f) for d, f in site.factors.items()},
            reads={d: tuple(_lazy(uf, f) for f in fs) for d, fs in site.reads.items()},
        )
        settled.append(site)
        if site.module and calls.get(site.module, 0) == 1:
            continue
        why = "the model's own forward" if not site.module else "a module called more than once"
        reason = f"{site.describe()}: sizes in {why} cannot be rewritten"
        for factor in site.watched():
            if factor.kind == "width":
                for segment in factor.layout:
                    uf.block(segment.group, reason)
            elif factor.kind == "parts":
                for group in factor.groups:
                    _, heads = uf.parts_of(group)
                    if heads is not None:
                        uf.block_own(heads, reason)
            elif factor.kind in ("per_part", "each"):
                for group in factor.groups:
                    uf.block_own(group, reason)
    return settled
