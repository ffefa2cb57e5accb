"""Spatial SVD: a kh x kw conv becomes a kh x 1 conv (in -> r) then a 1 x kw conv (r -> out).

The kernel ``W[o, c, i, j]`` is read as a matrix with rows (c, i) and columns (o, j); its
rank-r SVD gives the vertical conv (from the left factor) and the horizontal conv (from the
right factor). Stride, padding and dilation split by dimension, so the pair computes
exactly the original at full rank. A 1x1 conv (or a kh x 1 / 1 x kw one) is taken too, as
AIMET does: there the split is the weight SVD, two 1x1 convs through a rank-r bottleneck, so
MobileNet- and EfficientNet-style models (mostly pointwise convs) reach their targets.
"""

from __future__ import annotations

import torch
from torch import nn

from greedy_compress.model.cost import Cost
from greedy_compress.model.profile import LayerInfo
from greedy_compress.schemes._base import Factorization, Scheme
from greedy_compress.schemes._separable import split_conv_pair
from greedy_compress.schemes._svd import SplitSVD

__all__ = ["SpatialSVD", "spatial_svd"]


class _SpatialSVDFactorization(Factorization):
    def __init__(self, module: nn.Conv2d) -> None:
        self.module = module
        out_ch, in_ch, kh, kw = module.weight.shape
        matrix = module.weight.permute(1, 2, 0, 3).reshape(in_ch * kh, out_ch * kw)
        self.svd = SplitSVD(matrix)

    def build(self, rank: int) -> nn.Sequential:
        module = self.module
        out_ch, in_ch, kh, kw = module.weight.shape
        vertical, horizontal = split_conv_pair(
            module, channels=(in_ch, rank, out_ch), bias=module.bias is not None
        )
        left, right = self.svd.factors(rank)  # (in*kh, r), (r, out*kw)
        with torch.no_grad():
            vertical.weight.copy_(left.reshape(in_ch, kh, rank).permute(2, 0, 1).unsqueeze(-1))
            horizontal.weight.copy_(right.reshape(rank, out_ch, kw).permute(1, 0, 2).unsqueeze(2))
            if module.bias is not None and horizontal.bias is not None:
                horizontal.bias.copy_(module.bias)
        return nn.Sequential(vertical, horizontal)


class SpatialSVD(Scheme):
    """Spatial SVD for ``nn.Conv2d`` with ``groups=1``, 1x1 convs included."""

    name = "spatial_svd"

    def skip_reason(self, layer: LayerInfo) -> str | None:
        if layer.kind != "conv2d":
            return f"{layer.kind} layer; spatial SVD needs a 2-D convolution"
        if layer.groups != 1:
            return f"grouped conv (groups={layer.groups}); spatial SVD needs groups=1"
        return None

    def max_rank(self, layer: LayerInfo) -> int:
        kh, kw = layer.kernel_size
        return min(layer.in_channels * kh, layer.out_channels * kw)

    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        kh, kw = layer.kernel_size
        batch, _, out_h, out_w = layer.output_shape
        mid_w = layer.input_shape[3]  # the kh x 1 conv never pads, strides or dilates the width
        vertical = batch * out_h * mid_w * rank * layer.in_channels * kh
        horizontal = batch * out_h * out_w * layer.out_channels * rank * kw
        params = rank * layer.in_channels * kh + layer.out_channels * rank * kw
        return Cost(
            macs=vertical + horizontal, params=params + (layer.out_channels if layer.bias else 0)
        )

    def factorize(self, module: nn.Module) -> Factorization:
        return _SpatialSVDFactorization(module)  # type: ignore[arg-type]


def spatial_svd(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """Split a kh x kw ``conv`` into a kh x 1 conv with ``rank`` outputs and a 1 x kw conv.

    Example:
        >>> pair = spatial_svd(nn.Conv2d(8, 16, 3, padding=1), 4)
        >>> [tuple(m.kernel_size) for m in pair]
        [(3, 1), (1, 3)]
        >>> [tuple(m.kernel_size) for m in spatial_svd(nn.Conv2d(8, 16, 1), 4)]  # weight SVD
        [(1, 1), (1, 1)]
    """
    return _SpatialSVDFactorization(conv).build(rank)
