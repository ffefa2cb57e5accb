"""New modules made like existing ones: same kind, geometry, dtype and device.

Every scheme and the graph's pruning build smaller layers from a layer they replace; they
do it here, once, so conv geometry (stride, padding, dilation, padding mode) is copied the
same way everywhere.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

__all__ = ["Conv", "conv_like", "factory_of", "weight_of"]

Conv = nn.Conv1d | nn.Conv2d


def factory_of(module: nn.Module) -> dict[str, Any]:
    """``device`` and ``dtype`` of ``module``'s first parameter (empty if it has none)."""
    first = next(iter(module.parameters()), None)
    return {} if first is None else {"device": first.device, "dtype": first.dtype}


def weight_of(module: nn.Module) -> torch.Tensor:
    """``module.weight`` as a tensor.

    Raises:
        TypeError: the module has no weight tensor.
    """
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return weight


def conv_like(
    module: Conv,
    in_channels: int,
    out_channels: int,
    *,
    bias: bool,
    pointwise: bool = False,
    groups: int = 1,
) -> Conv:
    """A conv of ``module``'s kind with new channel counts: its kernel and geometry, or a
    plain 1x1 (``pointwise``). Fresh weights; ``module`` is not modified.

    Example:
        >>> conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        >>> new = conv_like(conv, 4, 2, bias=False)
        >>> new.kernel_size, new.stride, new.padding, new.bias is None
        ((3, 3), (2, 2), (1, 1), True)
        >>> conv_like(conv, 2, 8, bias=True, pointwise=True).kernel_size
        (1, 1)
    """
    kind = type(module)
    if pointwise:
        return kind(in_channels, out_channels, 1, bias=bias, **factory_of(module))
    geometry = cast(Any, module)  # torch types kernel_size etc. as per-dimension tuples
    return kind(
        in_channels,
        out_channels,
        geometry.kernel_size,
        stride=geometry.stride,
        padding=geometry.padding,
        dilation=geometry.dilation,
        groups=groups,
        bias=bias,
        padding_mode=module.padding_mode,
        **factory_of(module),
    )
