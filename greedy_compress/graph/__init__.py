"""Channel dependencies of a model, from torch.fx tracing (used by the pruning schemes)."""

from __future__ import annotations

from greedy_compress.graph.dependency import (
    ChannelGroup,
    DependencyGraph,
    Layout,
    ModuleUse,
    Segment,
)
from greedy_compress.graph.prune import group_cost, group_replacements, pruned_cost
from greedy_compress.graph.trace import build_graph, trace_model

__all__ = [
    "ChannelGroup",
    "DependencyGraph",
    "Layout",
    "ModuleUse",
    "Segment",
    "build_graph",
    "group_cost",
    "group_replacements",
    "pruned_cost",
    "trace_model",
]
