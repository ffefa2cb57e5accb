"""Where a tensor's channels are: the value the graph builder tracks per traced node.

A :class:`Value` is a layout (the channel groups side by side) and the tensor dimensions
holding it: one dimension usually (1 for conv feature maps, the last for token layouts), or
several after a reshape split the channels (``(heads, head_dim)`` in attention, ``(3, heads,
head_dim)`` for a fused qkv projection), listed major to minor. A tensor with no tracked
value does not depend on any channel count that pruning could change (the model's input, a
buffer, attention scores before they are split by heads, anything made from those).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from greedy_compress.graph.dependency import Layout, layout_width

__all__ = ["Value", "reshape_groups"]


@dataclass(frozen=True)
class Value:
    """``layout`` spread over tensor dims ``dims`` (major to minor) of sizes ``sizes``."""

    layout: Layout
    dims: tuple[int, ...]
    sizes: tuple[int, ...]

    @classmethod
    def along(cls, layout: Layout, dim: int) -> Value:
        """``layout`` in one tensor dimension."""
        return cls(layout, (dim,), (layout_width(layout),))

    @property
    def dim(self) -> int | None:
        """The channel dimension when there is exactly one."""
        return self.dims[0] if len(self.dims) == 1 else None

    def moved(self, mapping: dict[int, int]) -> Value:
        """The same channels after the tensor's dims moved (``old dim -> new dim``)."""
        return Value(self.layout, tuple(mapping[d] for d in self.dims), self.sizes)

    def shifted(self, start: int, by: int) -> Value:
        """Dims at or after ``start`` moved by ``by`` (a dim inserted or removed before)."""
        return Value(self.layout, tuple(d + by if d >= start else d for d in self.dims), self.sizes)


def reshape_groups(
    before: tuple[int, ...], after: tuple[int, ...]
) -> list[tuple[list[int], list[int]]] | None:
    """Pair consecutive dims of a reshape whose sizes multiply to the same product.

    A size-1 dim facing a larger one is a group of its own: inserting or dropping it moves
    nothing (MaxViT's grid partition of a 7x7 map into 7x7 windows of 1x1).

    Example:
        >>> reshape_groups((2, 3, 8), (2, 3, 2, 4))
        [([0], [0]), ([1], [1]), ([2], [2, 3])]
        >>> reshape_groups((2, 4, 3), (8, 3))
        [([0, 1], [0]), ([2], [1])]
        >>> reshape_groups((2, 4, 1, 1, 8), (2, 4, 1, 8))
        [([0], [0]), ([1], [1]), ([2], [2]), ([3], []), ([4], [3])]
    """
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(before) or j < len(after):
        one_left = i < len(before) and before[i] == 1
        one_right = j < len(after) and after[j] == 1
        if one_left != one_right:
            if one_left:
                groups.append(([i], []))
                i += 1
            else:
                groups.append(([], [j]))
                j += 1
            continue
        left: list[int] = []
        right: list[int] = []
        product_left = product_right = 1
        if i < len(before):
            left.append(i)
            product_left *= before[i]
            i += 1
        if j < len(after):
            right.append(j)
            product_right *= after[j]
            j += 1
        while product_left != product_right:
            if product_left < product_right and i < len(before):
                left.append(i)
                product_left *= before[i]
                i += 1
            elif product_right < product_left and j < len(after):
                right.append(j)
                product_right *= after[j]
                j += 1
            else:
                return None
        groups.append((left, right))
    if math.prod(before) != math.prod(after):
        return None
    return groups


def reshaped(value: Value, before: tuple[int, ...], after: tuple[int, ...]) -> Value | str:
    """Where ``value``'s channels are after reshaping ``before`` into ``after``, or why the
    reshape mixes them with other dimensions (a string).

    Channel dims that are reshaped among themselves keep their major-to-minor order (a split
    into heads, a merge back); channels merged with the dims after them become blocks of
    features (a flatten into a Linear), and split back. Anything else reorders or mixes
    channels.

    Example:
        >>> from greedy_compress.graph.dependency import Segment
        >>> heads = reshaped(Value.along((Segment(0, 8),), 2), (2, 5, 8), (2, 5, 2, 4))
        >>> heads.dims, heads.sizes
        ((2, 3), (2, 4))
        >>> flat = reshaped(Value.along((Segment(0, 8),), 1), (2, 8, 3, 3), (2, 72))
        >>> flat.dims, flat.layout
        ((1,), (Segment(group=0, size=8, block=9),))
    """
    groups = reshape_groups(before, after)
    if groups is None:
        return "a reshape torch accepts but this model of it does not"
    channel = set(value.dims)
    order = {d: i for i, d in enumerate(value.dims)}
    pieces: list[tuple[int, list[int]]] = []
    layout = value.layout
    for left, right in groups:
        inside = [d for d in left if d in channel]
        if not inside:
            continue
        if len(inside) == len(left):
            factors = [order[d] for d in left]
            if factors != list(range(factors[0], factors[0] + len(factors))):
                return "reshapes channels in another order (a channel shuffle)"
            dims = [j for j in right if after[j] != 1] or right[:1]
            if not dims:
                return "drops a channel dimension of size 1"
            pieces.append((factors[0], dims))
        elif len(value.dims) == 1 and left[0] == value.dims[0] and len(right) == 1:
            spread = math.prod(before[d] for d in left[1:])
            layout = tuple(type(s)(s.group, s.size, s.block * spread) for s in layout)
            pieces.append((0, right))
        elif len(value.dims) == 1 and left == [value.dims[0]] and len(right) > 1:
            spread = math.prod(after[j] for j in right[1:])
            if any(s.block % spread for s in layout):
                return "splits channels from the features they span"
            layout = tuple(type(s)(s.group, s.size, s.block // spread) for s in layout)
            pieces.append((0, right[:1]))
        else:
            return "merges channels with other dimensions"
    found = tuple(d for _, ds in sorted(pieces) for d in ds)
    return Value(layout, found, tuple(after[d] for d in found))
