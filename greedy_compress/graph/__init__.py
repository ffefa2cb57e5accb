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
    finish_replacements,
    group_cost,
    group_keeps,
    group_replacements,
    keeps_replacements,
    module_cost,
    view_replacements,
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
    "finish_replacements",
    "group_cost",
    "group_keeps",
    "group_replacements",
    "handler_for",
    "keeps_replacements",
    "module_cost",
    "register_handler",
    "view_replacements",
]
