"""The channel-dependency graph of a traced model: which channels must be pruned together,
what pruning them costs, and the smaller modules. Used by the pruning schemes.

A new module type is one handler in :mod:`greedy_compress.graph.handlers`.
"""

from __future__ import annotations

from greedy_compress.graph.build import build_graph
from greedy_compress.graph.costs import ChannelCosts
from greedy_compress.graph.dependency import (
    ChannelGroup,
    DependencyGraph,
    Layout,
    ModuleUse,
    Segment,
)
from greedy_compress.graph.handlers import ModuleHandler, handler_for, register_handler
from greedy_compress.graph.prune import (
    ORIGINAL_OUTPUTS,
    group_cost,
    group_replacements,
    module_cost,
)

__all__ = [
    "ORIGINAL_OUTPUTS",
    "ChannelCosts",
    "ChannelGroup",
    "DependencyGraph",
    "Layout",
    "ModuleHandler",
    "ModuleUse",
    "Segment",
    "build_graph",
    "group_cost",
    "group_replacements",
    "handler_for",
    "module_cost",
    "register_handler",
]
