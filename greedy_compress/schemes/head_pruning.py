"""Head pruning: remove whole attention heads.

Each attention unit (``nn.MultiheadAttention``, or hand-written attention with q/k/v/o
Linears or a fused qkv) is one layer whose rank is the number of heads kept. A head goes
from everything laid out per head: its query, key and value rows, the output projection's
columns reading it, and per-head parameters (a relative position bias table). Heads are
ranked by the squared L2 norm of all their weights (each module normalized, as NNI's
``l2weight``), the weakest removed; the result is a smaller attention with fewer heads of
the same width (``nn.MultiheadAttention`` becomes a
:class:`~greedy_compress.model.attention.Attention`; a hand-written module is given its new
head count where its ``forward`` needs it, see :mod:`greedy_compress.graph.rewrite`).
"""

from __future__ import annotations

import torch
from torch import nn

from greedy_compress.graph import ChannelGroup, DependencyGraph
from greedy_compress.model.profile import LayerInfo
from greedy_compress.schemes._attention import AttentionPruning

__all__ = ["HeadPruning"]


class HeadPruning(AttentionPruning):
    """Prune whole heads of every attention module, ranked by their weights' L2 norm.

    Example:
        >>> from greedy_compress.demo.models import TinyViT
        >>> vit = TinyViT(num_heads=4).eval()
        >>> selection = manual_selection(vit, {"blocks.0.self_attention": 0.5},
        ...     scheme="head_pruning", input_shape=(1, 3, 16, 16), ratio_of="rank")
        >>> apply_selection(vit, selection).blocks[0].self_attention.num_heads
        2
    """

    name = "head_pruning"
    rank_unit = "heads"

    def group_for(self, graph: DependencyGraph, name: str) -> tuple[ChannelGroup | None, str]:
        unit = self.unit(graph, name)
        if unit is None:
            return None, "not an attention module of the traced model"
        heads = graph.groups[unit.heads]
        if heads.blocked is not None:
            return None, f"its heads cannot change: {heads.blocked}"
        if heads.size < 2:
            return None, "it has a single head"
        return heads, ""

    def rank_step(self, layer: LayerInfo) -> int:
        return 1

    def rank_channels(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup, name: str
    ) -> list[int]:
        importance = torch.zeros(group.size, dtype=torch.float64)
        for split in self.head_groups(graph, group):
            per_channel = self.importance_rows(graph, split)
            importance += per_channel.reshape(group.size, -1).sum(dim=1)
        order = torch.sort(importance, descending=True, stable=True)
        return order.indices.tolist()
