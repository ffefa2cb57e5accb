"""Channel groups while the graph is built: a union-find that can also split a group into
consecutive pieces (a slice or chunk of the channels) or into equal parts (heads).

Groups are tied (union) by residual adds, matmuls and the like; a group is *refined* into
pieces when only part of its channels go somewhere (``x[:, :c]``, ``chunk``, a fused qkv
split into q, k and v), and later ties align the pieces of both sides. A group split into
heads records its number of parts and the *part group* (one channel per head) that pairs
heads across groups. Blocking a group blocks its pieces and, for a group split into heads,
its part group too.
"""

from __future__ import annotations

import itertools

from greedy_compress.graph.dependency import Layout, Segment

__all__ = ["Groups"]


class Groups:
    """Union-find over group ids with sizes, block reasons, pieces and parts."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.blocked: list[str | None] = []
        self.pieces: dict[int, list[int]] = {}
        self.parts: dict[int, int] = {}
        self.part_group: dict[int, int] = {}

    def new(self, size: int, blocked: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.blocked.append(blocked)
        return len(self.parent) - 1

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    # blocking --------------------------------------------------------------------------

    def block(self, item: int, reason: str) -> None:
        """Nothing about these channels may change (pieces and heads included)."""
        root = self.find(item)
        for piece in self.pieces.get(root, ()):
            self.block(piece, reason)
        if self.blocked[root] is None:
            self.blocked[root] = reason
        if root in self.part_group:
            self.block_own(self.part_group[root], reason)

    def block_own(self, item: int, reason: str) -> None:
        """Block this group's own size only (for a group split into heads: the channels per
        head, not the number of heads)."""
        root = self.find(item)
        for piece in self.pieces.get(root, ()):
            self.block_own(piece, reason)
        if self.blocked[root] is None:
            self.blocked[root] = reason

    # pieces ----------------------------------------------------------------------------

    def leaves(self, item: int) -> list[int]:
        """The unrefined groups that make up ``item``, in channel order."""
        root = self.find(item)
        if root not in self.pieces:
            return [root]
        return [leaf for piece in self.pieces[root] for leaf in self.leaves(piece)]

    def refine(self, item: int, offsets: list[int]) -> None:
        """Split ``item`` so that a piece starts at each channel offset in ``offsets``."""
        root = self.find(item)
        cuts = sorted({o for o in offsets if 0 < o < self.size[root]})
        if not cuts:
            return
        if root in self.pieces:
            start = 0
            for piece in list(self.pieces[root]):
                size = self.size[self.find(piece)]
                inner = [c - start for c in cuts if start < c < start + size]
                self.refine(piece, inner)
                start += size
            return
        if root in self.parts:  # splitting heads apart: not modelled
            self.block(root, "sliced across its heads")
        bounds = [0, *cuts, self.size[root]]
        self.pieces[root] = [
            self.new(b - a, self.blocked[root]) for a, b in itertools.pairwise(bounds)
        ]

    def expand(self, layout: Layout) -> Layout:
        """``layout`` with every segment resolved to its root and refined groups replaced by
        their pieces."""
        out: list[Segment] = []
        for segment in layout:
            for leaf in self.leaves(segment.group):
                out.append(Segment(leaf, self.size[leaf], segment.block))
        return tuple(out)

    # ties ------------------------------------------------------------------------------

    def _boundaries(self, item: int) -> list[int]:
        offsets, start = [], 0
        for leaf in self.leaves(item):
            start += self.size[leaf]
            offsets.append(start)
        return offsets[:-1]

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if a in self.pieces or b in self.pieces:
            cuts = sorted(set(self._boundaries(a)) | set(self._boundaries(b)))
            self.refine(a, cuts)
            self.refine(b, cuts)
            for left, right in zip(self.leaves(a), self.leaves(b), strict=True):
                self.union(left, right)
            a, b = self.find(a), self.find(b)
            self.pieces.pop(b, None)
        self.parent[b] = a
        if self.blocked[a] is None:
            self.blocked[a] = self.blocked[b]
        parts_a, parts_b = self.parts.pop(a, None), self.parts.pop(b, None)
        group_a, group_b = self.part_group.pop(a, None), self.part_group.pop(b, None)
        if parts_a is not None and parts_b is not None and parts_a != parts_b:
            self.block(a, f"split into {parts_a} and into {parts_b} heads")
        parts = parts_a if parts_a is not None else parts_b
        if parts is not None:
            self.parts[a] = parts
            if group_a is not None and group_b is not None:
                self.union(group_a, group_b)
            self.part_group[a] = group_a if group_a is not None else group_b  # type: ignore[assignment]

    # heads -----------------------------------------------------------------------------

    def split_parts(self, item: int, parts: int) -> int:
        """Mark ``item`` as ``parts`` equal parts (heads); return its part group."""
        root = self.find(item)
        if root in self.pieces:
            self.block(root, "split into heads across several channel groups")
            return self.new(parts, "split into heads across several channel groups")
        if root in self.parts:
            if self.parts[root] != parts:
                self.block(root, f"split into {self.parts[root]} and into {parts} heads")
            return self.find(self.part_group[root])
        self.parts[root] = parts
        group = self.new(parts)
        self.part_group[root] = group
        if self.blocked[root] is not None:
            self.blocked[group] = self.blocked[root]
        return group

    def parts_of(self, item: int) -> tuple[int, int | None]:
        """(number of parts, part group root or None) of ``item``'s root."""
        root = self.find(item)
        if root not in self.parts:
            return 1, None
        return self.parts[root], self.find(self.part_group[root])
