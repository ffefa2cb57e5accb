"""Layer-type handlers: what each module type does to channels, and how to slice it.

Supporting a new module type in the channel graph is one handler and one
:func:`register_handler` line (Torch-Pruning's per-type pruner registry): :meth:`visit`
says how the module maps its input layout to its output layout (and records its
:class:`ModuleUse`), :meth:`prune` builds the smaller module. Costs need no handler: they
follow from the :class:`ModuleUse` alone (see :func:`greedy_compress.graph.prune.module_cost`).

Handlers are looked up along the module's class hierarchy, so a subclass of a registered
type is handled like it unless it registers its own. ``visit`` gets the layout of its first
input when that input's channels are in dimension 1 (the channels-first case most module
types handle); handlers of layers that work on any layout (LayerNorm on tokens, a Linear on
``(..., features)``) read :meth:`GraphBuilder.value` and return a
:class:`~greedy_compress.graph.values.Value`. The built-in layer handlers are in
:mod:`greedy_compress.graph.layer_handlers`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import fx, nn

from greedy_compress.graph.dependency import Layout, ModuleUse

if TYPE_CHECKING:
    from greedy_compress.graph.build import GraphBuilder

__all__ = [
    "ModuleHandler",
    "Shape",
    "handler_for",
    "register_handler",
]

Shape = tuple[int, ...] | None


class ModuleHandler(ABC):
    """How one module type touches channels.

    ``visit`` is called for each call of such a module in the traced graph, with the layout
    of its first input (None when unknown or not in dimension 1) and the input and output
    shapes. It returns the output layout (in dimension 1) or a ``Value``, after recording the
    module's use with ``builder.record`` (modules that produce or carry channels) or
    blocking what it does not understand with ``builder.unknown``.
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
    ) -> Layout | Any:
        """The output layout (or ``Value``) of one call of ``module`` (named ``name``)."""

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


def _carry(builder: GraphBuilder, node: fx.Node) -> Any:
    return builder.value(node.args[0] if node.args else None)


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
)
class Channelwise(ModuleHandler):
    """Stateless modules acting on each element: the output's channels are the input's."""

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
        return _carry(builder, node)


@register_handler(
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
class Spatial(ModuleHandler):
    """Pooling and resampling act on the trailing spatial dims: channels must be elsewhere."""

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
        value = _carry(builder, node)
        if value is None or in_shape is None:
            return value
        one = "1d" in type(module).__name__.lower()
        spatial = 1 if one else 2 if not isinstance(module, nn.Upsample) else len(in_shape) - 2
        if any(d >= len(in_shape) - spatial for d in value.dims):
            return builder.unknown(node, f"module {name} over the channels")
        return value


@register_handler(nn.Softmax, nn.LogSoftmax)
class Softmax(ModuleHandler):
    """Normalizes along ``dim``: channels must be elsewhere."""

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
        value = _carry(builder, node)
        dim = getattr(module, "dim", None)
        if value is None or in_shape is None:
            return value
        if dim is None or dim % len(in_shape) in value.dims:
            return builder.unknown(node, f"module {name} over the channels")
        return value


from greedy_compress.graph import layer_handlers as _layer_handlers  # noqa: E402  (registers)

del _layer_handlers
