"""A kh x kw convolution's geometry split into a kh x 1 conv followed by a 1 x kw conv.

Stride, padding and dilation act on each spatial dimension independently, so the vertical
conv takes the first dimension's and the horizontal conv the second's; the pair then
covers exactly the original receptive fields. Spatial SVD and CP both build on this.
"""

from __future__ import annotations

from torch import nn

from greedy_compress.model.modules import factory_of

__all__ = ["split_conv_pair"]


def _split_padding(padding: tuple[int, ...] | str) -> tuple[tuple[int, int] | str, ...]:
    if isinstance(padding, str):  # "same" / "valid" apply per dimension unchanged
        return padding, padding
    return (padding[0], 0), (0, padding[1])


def split_conv_pair(
    module: nn.Conv2d,
    *,
    channels: tuple[int, int, int],
    groups: int = 1,
    bias: bool = False,
) -> tuple[nn.Conv2d, nn.Conv2d]:
    """A kh x 1 conv (in -> mid) and a 1 x kw conv (mid -> out) with ``module``'s geometry.

    Args:
        module: the conv whose kernel size, stride, padding, dilation and padding mode split.
        channels: ``(in, mid, out)`` channel counts of the pair.
        groups: groups of both convs (``mid`` for CP's depthwise pair).
        bias: whether the horizontal conv has a bias.

    Example:
        >>> v, h = split_conv_pair(nn.Conv2d(4, 8, 3, stride=2), channels=(4, 2, 8))
        >>> v.kernel_size, v.stride, h.kernel_size, h.stride
        ((3, 1), (2, 1), (1, 3), (1, 2))
    """
    kh, kw = module.kernel_size
    in_channels, mid_channels, out_channels = channels
    pad_v, pad_h = _split_padding(module.padding)
    factory = factory_of(module)
    vertical = nn.Conv2d(
        in_channels,
        mid_channels,
        (kh, 1),
        stride=(module.stride[0], 1),
        padding=pad_v,
        dilation=(module.dilation[0], 1),
        groups=groups,
        bias=False,
        padding_mode=module.padding_mode,
        **factory,
    )
    horizontal = nn.Conv2d(
        mid_channels,
        out_channels,
        (1, kw),
        stride=(1, module.stride[1]),
        padding=pad_h,
        dilation=(1, module.dilation[1]),
        groups=groups,
        bias=bias,
        padding_mode=module.padding_mode,
        **factory,
    )
    return vertical, horizontal
