"""Prune one channel group: the exact cost of the result, and the smaller dense modules.

Pruning a group edits every module it touches: producers lose output channels, BatchNorms
and depthwise convs lose entries, consumers lose input channels (or blocks of input features
after a flatten). The new modules are ordinary, smaller ``nn.Conv*d`` / ``nn.Linear`` /
``nn.BatchNorm*d`` holding the kept weights, never masks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from greedy_compress.model.cost import Cost
from greedy_compress.graph.dependency import ChannelGroup, DependencyGraph, Layout, ModuleUse

__all__ = [
    "ORIGINAL_OUTPUTS",
    "group_cost",
    "group_replacements",
    "layout_keep",
    "module_cost",
    "pruned_cost",
]


def _width(layout: Layout, removed: Mapping[int, int]) -> int:
    return sum((s.size - removed.get(s.group, 0)) * s.block for s in layout)


def module_cost(use: ModuleUse, module: nn.Module, removed: Mapping[int, int]) -> Cost:
    """Exact MACs and parameters of ``module`` once ``removed[g]`` channels of each group
    ``g`` go."""
    fan_in, fan_out = _width(use.inputs, removed), _width(use.outputs, removed)
    if use.role == "norm":
        assert isinstance(module, nn.modules.batchnorm._BatchNorm)
        return Cost(0, 2 * fan_out if module.affine else 0)
    bias = getattr(module, "bias", None) is not None
    kernel = math.prod(getattr(module, "kernel_size", ()) or (1,))
    if use.role == "depthwise":
        return Cost(use.positions * fan_out * kernel, fan_out * kernel + (fan_out if bias else 0))
    weights = fan_out * fan_in * kernel
    return Cost(use.positions * weights, weights + (fan_out if bias else 0))


def group_cost(model: nn.Module, graph: DependencyGraph, group: ChannelGroup, kept: int) -> Cost:
    """Summed cost of every module the group touches when ``kept`` of its channels remain.

    Example:
        >>> group_cost(net, graph, graph.output_group("conv1"), kept=4)  # doctest: +SKIP
        Cost(macs=..., params=...)
    """
    removed = {group.id: group.size - kept}
    total = Cost(0, 0)
    for name in group.members:
        total = total + module_cost(graph.modules[name], model.get_submodule(name), removed)
    return total


def pruned_cost(
    model: nn.Module, graph: DependencyGraph, model_cost: Cost, kept: Mapping[int, int]
) -> Cost:
    """Exact cost of the whole model once each group ``g`` keeps ``kept[g]`` channels.

    Unlike summing per-group costs, this counts a layer whose input and output groups are
    both pruned once, at the product of the two.

    Example:
        >>> pruned_cost(net, graph, measure_cost(net, x), {3: 4, 5: 8})  # doctest: +SKIP
    """
    removed = {g: graph.groups[g].size - k for g, k in kept.items()}
    touched = dict.fromkeys(m for g in kept for m in graph.groups[g].members)
    total = model_cost
    for name in touched:
        use, module = graph.modules[name], model.get_submodule(name)
        total = total - module_cost(use, module, {}) + module_cost(use, module, removed)
    return total


def layout_keep(layout: Layout, group: int, keep: Sequence[int]) -> torch.Tensor:
    """Feature indices a layout keeps when only channels ``keep`` of ``group`` stay."""
    kept: list[int] = []
    offset = 0
    for segment in layout:
        if segment.group == group:
            for channel in keep:
                start = offset + channel * segment.block
                kept.extend(range(start, start + segment.block))
        else:
            kept.extend(range(offset, offset + segment.size * segment.block))
        offset += segment.size * segment.block
    return torch.tensor(kept, dtype=torch.long)


def _param(tensor: torch.Tensor, index: torch.Tensor | None, dim: int = 0) -> torch.Tensor:
    tensor = tensor.detach()
    if index is not None:
        tensor = tensor.index_select(dim, index.to(tensor.device))
    return tensor.clone()


def _new_like(module: nn.Module, fan_in: int, fan_out: int, groups: int) -> nn.Module:
    """A fresh module of ``module``'s kind and settings with new channel counts."""
    weight = next(iter(module.parameters()), None)
    factory = {"device": weight.device, "dtype": weight.dtype} if weight is not None else {}
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        new: nn.Module = type(module)(
            fan_out,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            **factory,
        )
    elif isinstance(module, nn.Linear):
        new = nn.Linear(fan_in, fan_out, bias=module.bias is not None, **factory)
    else:
        assert isinstance(module, (nn.Conv1d, nn.Conv2d))
        new = type(module)(
            fan_in,
            fan_out,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
            **factory,
        )
    return new.train(module.training)


def _sliced(module: nn.Module, use: ModuleUse, group: int, keep: Sequence[int]) -> nn.Module:
    touches_in = any(s.group == group for s in use.inputs)
    touches_out = any(s.group == group for s in use.outputs)
    keep_in = layout_keep(use.inputs, group, keep) if touches_in else None
    keep_out = layout_keep(use.outputs, group, keep) if touches_out else None
    if use.role == "norm":
        assert isinstance(module, nn.modules.batchnorm._BatchNorm)
        size = module.num_features if keep_out is None else int(keep_out.numel())
        new = _new_like(module, size, size, 1)
        with torch.no_grad():
            for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
                index = None if key == "num_batches_tracked" else keep_out
                getattr(new, key).copy_(_param(tensor, index))
        return new
    weight = module.weight
    if use.role == "depthwise":
        new_weight = _param(weight, keep_out)
        channels = new_weight.shape[0]
        new = _new_like(module, channels, channels, channels)
    else:
        new_weight = _param(_param(weight, keep_out, 0), keep_in, 1)
        new = _new_like(module, new_weight.shape[1], new_weight.shape[0], 1)
    with torch.no_grad():
        new.weight.copy_(new_weight)
        if module.bias is not None:
            new.bias.copy_(_param(module.bias, keep_out))
    new.weight.requires_grad_(weight.requires_grad)
    return new


ORIGINAL_OUTPUTS = "_greedy_compress_original_outputs"
"""Attribute a pruned module carries: which of the original module's outputs it still has."""


def _track_outputs(new: nn.Module, old: nn.Module, keep_out: torch.Tensor | None) -> nn.Module:
    previous = getattr(old, ORIGINAL_OUTPUTS, None)
    if keep_out is None:
        kept = previous
    else:
        kept = keep_out.tolist() if previous is None else [previous[i] for i in keep_out.tolist()]
    if kept is not None:
        object.__setattr__(new, ORIGINAL_OUTPUTS, kept)
    return new


def group_replacements(
    model: nn.Module, graph: DependencyGraph, group: ChannelGroup, keep: Sequence[int]
) -> dict[str, nn.Module]:
    """New, smaller modules for every module of ``group``, keeping channels ``keep``.

    ``keep`` are channel positions in the group (``0 <= c < group.size``); the originals are
    not modified.

    Example:
        >>> group = graph.output_group("0")                              # doctest: +SKIP
        >>> replace_modules(net, group_replacements(net, graph, group, [0, 2]))  # doctest: +SKIP
    """
    keep = sorted(int(c) for c in keep)
    replacements = {}
    for name in group.members:
        module, use = model.get_submodule(name), graph.modules[name]
        keep_out = (
            layout_keep(use.outputs, group.id, keep)
            if any(s.group == group.id for s in use.outputs)
            else None
        )
        replacements[name] = _track_outputs(_sliced(module, use, group.id, keep), module, keep_out)
    return replacements
