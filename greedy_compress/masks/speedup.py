"""Speedup: structured masks (whole output channels) become a really smaller dense model.

Channels whose producing filters are masked whole are removed from every module they touch,
through the channel graph the pruning schemes use (:func:`greedy_compress.graph.
group_replacements`); other masks are baked into the weights. The result holds no masks.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from greedy_compress.graph import build_graph, group_replacements
from greedy_compress.model.mask import bake_parametrizations, model_masks
from greedy_compress.model.swap import replace_modules

__all__ = ["speedup"]


def _zero_channels(masks: dict[str, torch.Tensor], name: str) -> set[int] | None:
    weight = masks.get(f"{name}.weight")
    if weight is None:
        return None
    zero = (weight.flatten(1).amax(dim=1) == 0).nonzero().flatten().tolist()
    bias = masks.get(f"{name}.bias")
    return {c for c in zero if bias is None or bias[c] == 0}


def speedup(model: nn.Module, example_input: torch.Tensor) -> nn.Module:
    """A copy of ``model`` with every channel whose filters are all masked removed; the
    model itself is not modified.

    A channel is removed when every layer producing it (residual adds tie several) masks
    its filter and bias whole; its BatchNorm, depthwise convs and readers shrink with it.
    Channel groups the graph cannot change (model outputs, unknown operations) keep their
    masked channels.

    Example:
        >>> import copy
        >>> from greedy_compress.masks import FPGMPruner
        >>> pruner = FPGMPruner(copy.deepcopy(model), [{"sparsity": 0.5, "op_types": ["Conv2d"]}])
        >>> small = speedup(pruner.compress(), example_input)
        >>> small.features[3].in_channels, small.features[3].out_channels
        (16, 32)
    """
    masks = model_masks(model)
    result = copy.deepcopy(model)
    for module in list(result.modules()):
        bake_parametrizations(module)
    graph = build_graph(result, example_input)
    done: set[int] = set()
    for name in list(graph.modules):
        group = graph.output_group(name)
        if group is None or group.blocked is not None or group.id in done:
            continue
        zero: set[int] | None = None
        for producer in group.producers:
            channels = _zero_channels(masks, producer)
            zero = channels if zero is None else zero & (channels or set())
            if not zero:
                break
        if not zero or len(zero) >= group.size:
            continue
        done.add(group.id)
        keep = [c for c in range(group.size) if c not in zero]
        replace_modules(result, group_replacements(result, graph, group, keep))
        graph = build_graph(result, example_input)
    return result
