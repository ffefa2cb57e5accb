"""The built-in handlers of layers with weights: convolutions, Linears, norms, Flatten.

Each records how the layer uses channels (its :class:`ModuleUse`) and builds the smaller
layer when channels go. A Linear reads and writes the last dimension of any tensor (tokens
included); LayerNorm and RMSNorm carry channels in the dimension they normalize; a grouped
conv splits its input and output channels into ``groups`` equal parts (pruning keeps the
same number in each group, and a conv group pairs an input part with an output part);
GroupNorm splits its channels into its groups likewise.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import fx, nn

from greedy_compress.graph.dependency import Layout, ModuleUse
from greedy_compress.graph.handlers import ModuleHandler, Shape, register_handler
from greedy_compress.graph.values import Value, reshaped
from greedy_compress.model.modules import factory_of, weight_of

if TYPE_CHECKING:
    from greedy_compress.graph.build import GraphBuilder

__all__ = ["take"]


def take(tensor: torch.Tensor, index: torch.Tensor | None, dim: int = 0) -> torch.Tensor:
    """A copy of ``tensor`` keeping entries ``index`` of ``dim`` (all when None)."""
    tensor = tensor.detach()
    if index is not None:
        tensor = tensor.index_select(dim, index.to(tensor.device))
    return tensor.clone()


def _load(
    new: nn.Module, old: nn.Module, weight: torch.Tensor, keep_out: torch.Tensor | None
) -> nn.Module:
    """``new`` (in ``old``'s train/eval mode) holding ``weight`` and ``old``'s kept bias."""
    new_weight, old_bias, new_bias = weight_of(new), getattr(old, "bias", None), new.bias
    with torch.no_grad():
        new_weight.copy_(weight)
        if isinstance(old_bias, torch.Tensor) and isinstance(new_bias, torch.Tensor):
            new_bias.copy_(take(old_bias, keep_out))
    new_weight.requires_grad_(weight_of(old).requires_grad)
    return new.train(old.training)


def _grouped_weight(
    weight: torch.Tensor, groups: int, keep_in: torch.Tensor | None, keep_out: torch.Tensor | None
) -> tuple[torch.Tensor, int]:
    """A grouped conv's weight keeping output channels ``keep_out`` and input channels
    ``keep_in`` (each conv group keeping the same number), and its number of groups."""
    out_channels, in_per_group = weight.shape[0], weight.shape[1]
    out_per_group = out_channels // groups
    outs = keep_out.tolist() if keep_out is not None else list(range(out_channels))
    ins = keep_in.tolist() if keep_in is not None else list(range(in_per_group * groups))
    kept_groups = sorted({o // out_per_group for o in outs})
    local = {g: [i - g * in_per_group for i in ins if i // in_per_group == g] for g in kept_groups}
    rows = [weight[o, local[o // out_per_group]] for o in outs]
    return torch.stack(rows).detach().clone(), len(kept_groups)


@register_handler(nn.Conv1d, nn.Conv2d)
class Convolution(ModuleHandler):
    """``groups=1``: makes a new channel group; depthwise: carries its input channels; other
    grouped convs split their input and output channels into ``groups`` parts."""

    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Any:
        assert isinstance(module, (nn.Conv1d, nn.Conv2d))
        layout = builder.layout_on(node.args[0], 1)
        if layout is None or out_shape is None:
            return builder.unknown(node, f"module {name} on channels not in dimension 1")
        positions = math.prod(out_shape) // out_shape[1]
        kernel = math.prod(module.kernel_size)
        bias = module.bias is not None
        groups = module.groups
        if groups == module.in_channels == module.out_channels:
            builder.record(ModuleUse(name, "depthwise", layout, layout, positions, kernel, bias))
            return Value.along(layout, 1)
        outputs = builder.fresh_at(node, 1)
        assert outputs is not None
        if groups > 1:
            expanded = builder.uf.expand(layout)
            if len(expanded) != 1:
                builder.blocked_modules[name] = (
                    f"grouped conv (groups={groups}) on concatenated channels"
                )
                return builder.unknown(
                    node, f"grouped conv {name} (groups={groups}) on concatenated channels"
                )
            heads_in = builder.uf.split_parts(expanded[0].group, groups)
            heads_out = builder.uf.split_parts(outputs.layout[0].group, groups)
            builder.uf.union(heads_in, heads_out)
        use = ModuleUse(
            name, "conv", layout, outputs.layout, positions, kernel, bias, groups=groups
        )
        builder.record(use)
        return outputs

    def prune(
        self,
        module: nn.Module,
        use: ModuleUse,
        keep_in: torch.Tensor | None,
        keep_out: torch.Tensor | None,
    ) -> nn.Module:
        assert isinstance(module, (nn.Conv1d, nn.Conv2d))
        if use.role == "depthwise":
            weight = take(module.weight, keep_out)
            fan_in = fan_out = groups = weight.shape[0]
        elif module.groups > 1:
            weight, groups = _grouped_weight(module.weight, module.groups, keep_in, keep_out)
            fan_out, fan_in = weight.shape[0], weight.shape[1] * groups
        else:
            weight = take(take(module.weight, keep_out, 0), keep_in, 1)
            fan_out, fan_in, groups = weight.shape[0], weight.shape[1], 1
        new = type(module)(
            fan_in,
            fan_out,
            module.kernel_size,  # type: ignore[arg-type]
            stride=module.stride,  # type: ignore[arg-type]
            padding=module.padding,  # type: ignore[arg-type]
            dilation=module.dilation,  # type: ignore[arg-type]
            groups=groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
            **factory_of(module),
        )
        return _load(new, module, weight, keep_out)


@register_handler(nn.Linear)
class Linear(ModuleHandler):
    """A Linear reads its input's last dimension and writes a new group there."""

    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Any:
        assert isinstance(module, nn.Linear)
        layout = builder.layout_on(node.args[0], -1)
        if layout is None or out_shape is None:
            return builder.unknown(node, f"Linear {name} on channels not in its last dimension")
        outputs = builder.fresh_at(node, -1)
        assert outputs is not None
        positions = math.prod(out_shape) // out_shape[-1]
        use = ModuleUse(
            name, "linear", layout, outputs.layout, positions, 1, module.bias is not None
        )
        builder.record(use)
        return outputs

    def prune(
        self,
        module: nn.Module,
        use: ModuleUse,
        keep_in: torch.Tensor | None,
        keep_out: torch.Tensor | None,
    ) -> nn.Module:
        assert isinstance(module, nn.Linear)
        weight = take(take(module.weight, keep_out, 0), keep_in, 1)
        new = nn.Linear(
            weight.shape[1], weight.shape[0], bias=module.bias is not None, **factory_of(module)
        )
        return _load(new, module, weight, keep_out)


def _norm_prune(module: nn.Module, new: nn.Module, keep: torch.Tensor | None) -> nn.Module:
    with torch.no_grad():
        for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
            index = None if key == "num_batches_tracked" else keep
            getattr(new, key).copy_(take(tensor, index))
    return new.train(module.training)


@register_handler(nn.BatchNorm1d, nn.BatchNorm2d)
class BatchNorm(ModuleHandler):
    """Carries its input channels; pruning drops their statistics and affine entries."""

    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Any:
        assert isinstance(module, nn.modules.batchnorm._BatchNorm)
        layout = builder.layout_on(node.args[0], 1)
        if layout is None or out_shape is None:
            return builder.unknown(node, f"module {name} on channels not in dimension 1")
        positions = math.prod(out_shape) // out_shape[1]
        builder.record(
            ModuleUse(name, "norm", layout, layout, positions, 1, False, bool(module.affine))
        )
        return Value.along(layout, 1)

    def prune(
        self,
        module: nn.Module,
        use: ModuleUse,
        keep_in: torch.Tensor | None,
        keep_out: torch.Tensor | None,
    ) -> nn.Module:
        assert isinstance(module, nn.modules.batchnorm._BatchNorm)
        size = module.num_features if keep_out is None else int(keep_out.numel())
        new = type(module)(
            size,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            **factory_of(module),
        )
        return _norm_prune(module, new, keep_out)


@register_handler(nn.LayerNorm, nn.RMSNorm)
class LayerNorm(ModuleHandler):
    """Normalizes the last dims: carries the channels when they are its one normalized dim
    (tokens' features), or when they are not normalized at all."""

    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Any:
        assert isinstance(module, (nn.LayerNorm, nn.RMSNorm))
        value = builder.value(node.args[0])
        if value is None or in_shape is None or out_shape is None:
            return value
        normalized = len(module.normalized_shape)
        first = len(in_shape) - normalized
        if all(d < first for d in value.dims):
            return value  # channels not normalized: its weights are not laid out along them
        if normalized != 1 or value.dims != (len(in_shape) - 1,):
            return builder.unknown(node, f"module {name} normalizing channels with other dims")
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        if weight is None:
            role, affine = "norm", False
        else:
            role, affine = ("norm", True) if bias is not None else ("scale", True)
        positions = math.prod(out_shape) // out_shape[-1]
        builder.record(
            ModuleUse(name, role, value.layout, value.layout, positions, 1, False, affine)
        )
        return value

    def prune(
        self,
        module: nn.Module,
        use: ModuleUse,
        keep_in: torch.Tensor | None,
        keep_out: torch.Tensor | None,
    ) -> nn.Module:
        assert isinstance(module, (nn.LayerNorm, nn.RMSNorm))
        size = module.normalized_shape[0] if keep_out is None else int(keep_out.numel())
        new = copy.copy(module)  # keeps a subclass's own forward (a channels-first norm)
        new._parameters = {}
        new.normalized_shape = (size,)
        for key, tensor in module.named_parameters(recurse=False):
            new.register_parameter(
                key, nn.Parameter(take(tensor, keep_out), requires_grad=tensor.requires_grad)
            )
        return new


@register_handler(nn.GroupNorm)
class GroupNorm(ModuleHandler):
    """Normalizes groups of channels: carries them, each of its groups keeping the same
    number (one group or one per channel: any)."""

    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Any:
        assert isinstance(module, nn.GroupNorm)
        layout = builder.layout_on(node.args[0], 1)
        if layout is None or out_shape is None:
            return builder.unknown(node, f"module {name} on channels not in dimension 1")
        groups = module.num_groups
        if 1 < groups < module.num_channels:
            expanded = builder.uf.expand(layout)
            if len(expanded) != 1:
                return builder.unknown(node, f"GroupNorm {name} over concatenated channels")
            builder.uf.split_parts(expanded[0].group, groups)
        positions = math.prod(out_shape) // out_shape[1]
        builder.record(ModuleUse(name, "norm", layout, layout, positions, 1, False, module.affine))
        return Value.along(layout, 1)

    def prune(
        self,
        module: nn.Module,
        use: ModuleUse,
        keep_in: torch.Tensor | None,
        keep_out: torch.Tensor | None,
    ) -> nn.Module:
        assert isinstance(module, nn.GroupNorm)
        size = module.num_channels if keep_out is None else int(keep_out.numel())
        groups = module.num_groups if module.num_groups < module.num_channels else size
        new = nn.GroupNorm(groups, size, module.eps, module.affine, **factory_of(module))
        return _norm_prune(module, new, keep_out)


@register_handler(nn.Flatten)
class Flatten(ModuleHandler):
    """Flattening (batch, C, ...) into (batch, features) makes each channel a block."""

    reusable = True

    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Any:
        value = builder.value(node.args[0])
        if value is None or in_shape is None or out_shape is None:
            return value
        result = reshaped(value, in_shape, out_shape)
        return (
            builder.unknown(node, f"module {name}: {result}") if isinstance(result, str) else result
        )
