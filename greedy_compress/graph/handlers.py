"""Layer-type handlers: what each module type does to channels, and how to slice it.

Supporting a new module type in the channel graph is one handler and one
:func:`register_handler` line (Torch-Pruning's per-type pruner registry): :meth:`visit`
says how the module maps its input layout to its output layout (and records its
:class:`ModuleUse`), :meth:`prune` builds the smaller module. Costs need no handler: they
follow from the :class:`ModuleUse` alone (see :func:`greedy_compress.graph.prune.module_cost`).

Handlers are looked up along the module's class hierarchy, so a subclass of a registered
type is handled like it unless it registers its own.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import fx, nn

from greedy_compress.graph.dependency import Layout, ModuleUse, Segment
from greedy_compress.model.modules import weight_of

if TYPE_CHECKING:
    from greedy_compress.graph.build import GraphBuilder

__all__ = [
    "ModuleHandler",
    "Shape",
    "flatten_layout",
    "handler_for",
    "register_handler",
]

Shape = tuple[int, ...] | None


class ModuleHandler(ABC):
    """How one module type touches channels.

    ``visit`` is called for each call of such a module in the traced graph, with the layout
    of its first input (None when unknown) and the input and output shapes. It returns the
    output layout, after recording the module's use with ``builder.record`` (modules that
    produce or carry channels) or blocking what it does not understand with
    ``builder.unknown``.
    """

    #: Modules that only act on each channel separately may be called many times.
    reusable: bool = False

    @abstractmethod
    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Layout | None:
        """The output layout of one call of ``module`` (named ``name``)."""

    def prune(
        self,
        module: nn.Module,
        use: ModuleUse,
        keep_in: torch.Tensor | None,
        keep_out: torch.Tensor | None,
    ) -> nn.Module:
        """A new, smaller module keeping input features ``keep_in`` and output features
        ``keep_out`` (None: all); ``module`` is not modified."""
        raise NotImplementedError(f"{type(self).__name__} does not prune {type(module).__name__}")


_HANDLERS: dict[type[nn.Module], ModuleHandler] = {}

H = TypeVar("H", bound=type[ModuleHandler])


def register_handler(*module_types: type[nn.Module]) -> Callable[[H], H]:
    """Class decorator: handle ``module_types`` (and their subclasses) with this handler.

    Example:
        >>> @register_handler(nn.PixelShuffle)
        ... class Opaque(ModuleHandler):
        ...     def visit(self, builder, node, name, module, inputs, in_shape, out_shape):
        ...         return builder.unknown(node, f"module {name}")
        >>> type(handler_for(nn.PixelShuffle(2))).__name__
        'Opaque'
        >>> del _HANDLERS[nn.PixelShuffle]
    """

    def add(cls: H) -> H:
        for module_type in module_types:
            _HANDLERS[module_type] = cls()
        return cls

    return add


def handler_for(module: nn.Module) -> ModuleHandler | None:
    """The handler of ``module``'s type (or its nearest registered base class), if any."""
    for cls in type(module).__mro__:
        if cls in _HANDLERS:
            return _HANDLERS[cls]
    return None


def _factory(module: nn.Module) -> dict[str, Any]:
    weight = next(iter(module.parameters()), None)
    return {"device": weight.device, "dtype": weight.dtype} if weight is not None else {}


def _take(tensor: torch.Tensor, index: torch.Tensor | None, dim: int = 0) -> torch.Tensor:
    tensor = tensor.detach()
    if index is not None:
        tensor = tensor.index_select(dim, index.to(tensor.device))
    return tensor.clone()


def _positions(out_shape: tuple[int, ...], channels: int) -> int:
    return math.prod(out_shape) // channels


@register_handler(
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.Upsample,
)
class Channelwise(ModuleHandler):
    """Stateless modules acting on each channel separately: output layout = input layout."""

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
    ) -> Layout | None:
        return inputs if inputs is not None else builder.unknown(node, f"module {name}")


@register_handler(nn.Conv1d, nn.Conv2d)
class Convolution(ModuleHandler):
    """``groups=1``: makes a new channel group; depthwise: carries its input channels;
    other grouped convs tie channels across groups, which the graph does not model."""

    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Layout | None:
        assert isinstance(module, (nn.Conv1d, nn.Conv2d))
        if inputs is None or out_shape is None:
            return builder.unknown(node, f"module {name}")
        positions = _positions(out_shape, out_shape[1])
        kernel = math.prod(module.kernel_size)
        bias = module.bias is not None
        if module.groups == 1:
            return builder.produce(node, name, "conv", inputs, positions, kernel, bias)
        if module.groups == module.in_channels == module.out_channels:
            builder.record(ModuleUse(name, "depthwise", inputs, inputs, positions, kernel, bias))
            return inputs
        builder.blocked_modules[name] = f"grouped conv (groups={module.groups})"
        return builder.unknown(
            node, f"grouped conv {name} (groups={module.groups}) ties channels across groups"
        )

    def prune(
        self,
        module: nn.Module,
        use: ModuleUse,
        keep_in: torch.Tensor | None,
        keep_out: torch.Tensor | None,
    ) -> nn.Module:
        assert isinstance(module, (nn.Conv1d, nn.Conv2d))
        if use.role == "depthwise":
            weight = _take(module.weight, keep_out)
            fan_in = fan_out = groups = weight.shape[0]
        else:
            weight = _take(_take(module.weight, keep_out, 0), keep_in, 1)
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
            **_factory(module),
        )
        return _load(new, module, weight, keep_out)


@register_handler(nn.Linear)
class Linear(ModuleHandler):
    """A Linear on (batch, features) makes a new channel group."""

    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Layout | None:
        assert isinstance(module, nn.Linear)
        if inputs is None or in_shape is None or out_shape is None:
            return builder.unknown(node, f"module {name}")
        if len(in_shape) != 2:
            builder.blocked_modules[name] = "Linear on a tensor with more than 2 dimensions"
            return builder.unknown(node, f"Linear {name} on {len(in_shape)}-D input")
        positions = _positions(out_shape, out_shape[-1])
        bias = module.bias is not None
        return builder.produce(node, name, "linear", inputs, positions, 1, bias)

    def prune(
        self,
        module: nn.Module,
        use: ModuleUse,
        keep_in: torch.Tensor | None,
        keep_out: torch.Tensor | None,
    ) -> nn.Module:
        assert isinstance(module, nn.Linear)
        weight = _take(_take(module.weight, keep_out, 0), keep_in, 1)
        new = nn.Linear(
            weight.shape[1], weight.shape[0], bias=module.bias is not None, **_factory(module)
        )
        return _load(new, module, weight, keep_out)


def _load(
    new: nn.Module, old: nn.Module, weight: torch.Tensor, keep_out: torch.Tensor | None
) -> nn.Module:
    """``new`` (in ``old``'s train/eval mode) holding ``weight`` and ``old``'s kept bias."""
    new_weight, old_bias, new_bias = weight_of(new), getattr(old, "bias", None), new.bias
    with torch.no_grad():
        new_weight.copy_(weight)
        if isinstance(old_bias, torch.Tensor) and isinstance(new_bias, torch.Tensor):
            new_bias.copy_(_take(old_bias, keep_out))
    new_weight.requires_grad_(weight_of(old).requires_grad)
    return new.train(old.training)


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
    ) -> Layout | None:
        assert isinstance(module, nn.modules.batchnorm._BatchNorm)
        if inputs is None or out_shape is None:
            return builder.unknown(node, f"module {name}")
        positions = _positions(out_shape, out_shape[1])
        use = ModuleUse(name, "norm", inputs, inputs, positions, 1, False, bool(module.affine))
        builder.record(use)
        return inputs

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
            **_factory(module),
        )
        with torch.no_grad():
            for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
                index = None if key == "num_batches_tracked" else keep_out
                getattr(new, key).copy_(_take(tensor, index))
        return new.train(module.training)


@register_handler(nn.Flatten)
class Flatten(ModuleHandler):
    """Flattening (batch, C, ...) into (batch, features) makes each channel a block."""

    def visit(
        self,
        builder: GraphBuilder,
        node: fx.Node,
        name: str,
        module: nn.Module,
        inputs: Layout | None,
        in_shape: Shape,
        out_shape: Shape,
    ) -> Layout | None:
        if inputs is None or in_shape is None or out_shape is None:
            return builder.unknown(node, f"module {name}")
        return flatten_layout(builder, node, inputs, in_shape, out_shape)


def flatten_layout(
    builder: GraphBuilder,
    node: fx.Node,
    inputs: Layout,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
) -> Layout | None:
    """The layout after flattening (the module and ``torch.flatten`` / ``view`` alike)."""
    if len(in_shape) == 2 and out_shape == in_shape:
        return inputs
    if len(out_shape) == 2 and out_shape[0] == in_shape[0] and len(in_shape) > 2:
        spatial = math.prod(in_shape[2:])
        return tuple(Segment(s.group, s.size, s.block * spatial) for s in inputs)
    return builder.unknown(node, f"reshape to {list(out_shape)}")
