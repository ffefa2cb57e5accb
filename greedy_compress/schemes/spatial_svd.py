"""Spatial SVD: a kh x kw conv becomes a kh x 1 conv (in -> r) then a 1 x kw conv (r -> out).

The kernel ``W[o, c, i, j]`` is read as a matrix with rows (c, i) and columns (o, j); its
rank-r SVD gives the vertical conv (from the left factor) and the horizontal conv (from the
right factor). Stride, padding and dilation split by dimension, so the pair computes
exactly the original at full rank. A 1x1 conv (or a kh x 1 / 1 x kw one) is taken too, as
AIMET does: there the split is the weight SVD, two 1x1 convs through a rank-r bottleneck, so
MobileNet- and EfficientNet-style models (mostly pointwise convs) reach their targets.

Data-aware (``SpatialSVD(data_aware=True, data=...)``): the vertical conv reads each input
channel's kh vertical taps, so the matrix's rows are whitened by the Cholesky factor ``S`` of
those (channel, tap) inputs' second moment (the patch moment averaged over the horizontal
taps) before the SVD, and ``S⁻ᵀ`` goes into the vertical factor afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from greedy_compress.model.cost import Cost
from greedy_compress.model.profile import LayerInfo
from greedy_compress.model.statistics import InputMoment
from greedy_compress.schemes._base import Factorization
from greedy_compress.schemes._data_aware import DataAwareScheme
from greedy_compress.schemes._separable import split_conv_pair
from greedy_compress.schemes._svd import SplitSVD, WhitenedSVD

__all__ = ["SpatialSVD", "spatial_svd"]


def vertical_moment(moment: InputMoment, kh: int, kw: int) -> InputMoment:
    """The second moment of a kh x kw conv's (channel, vertical tap) inputs: the patch
    moment's blocks for equal horizontal taps, averaged (the channel moment for each tap
    when the moment is channel-wise)."""
    if moment.channel_wise:
        return InputMoment(moment.matrix, moment.rows, moment.channels, kh, channel_wise=True)
    channels = moment.channels
    blocks = moment.matrix.reshape(channels, kh, kw, channels, kh, kw)
    rows = blocks.diagonal(dim1=2, dim2=5).mean(dim=-1).reshape(channels * kh, channels * kh)
    return InputMoment(rows, moment.rows, channels, kh)


class _SpatialSVDFactorization(Factorization):
    def __init__(
        self, module: nn.Conv2d, moment: InputMoment | None = None, damping: float = 0.0
    ) -> None:
        self.module = module
        out_ch, in_ch, kh, kw = module.weight.shape
        matrix = module.weight.permute(1, 2, 0, 3).reshape(in_ch * kh, out_ch * kw)
        self.svd: SplitSVD | WhitenedSVD
        if moment is None:
            self.svd = SplitSVD(matrix)
        else:  # whiten the rows: the transposed matrix multiplies the (channel, tap) inputs
            rows = vertical_moment(moment, kh, kw)
            taps = kh if rows.channel_wise else 1
            whitened = WhitenedSVD(matrix.T, rows.cholesky(damping), taps=taps)
            self.svd = SplitSVD.from_factors(whitened.right.T, whitened.left.T)

    def output_error(self, rank: int, moment: InputMoment, original: nn.Module) -> float | None:
        """From the factors' product, the dense kernel the two convs amount to."""
        weight = self.module.weight.detach().to(torch.float64)
        out_ch, in_ch, kh, kw = weight.shape
        left, right = (f.detach().to(torch.float64) for f in self.svd.factors(rank))
        dense = (left @ right).reshape(in_ch, kh, out_ch, kw).permute(2, 0, 1, 3)
        return moment.error(weight - dense)

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


class SpatialSVD(DataAwareScheme):
    """Spatial SVD for ``nn.Conv2d`` with ``groups=1``, 1x1 convs included.

    Args:
        data_aware: whiten by the layer's input statistics on calibration ``data`` (see
            the module docstring) instead of decomposing the kernel alone (the default).
        data: calibration batches or a :class:`~greedy_compress.model.statistics.Calibration`
            (needed when ``data_aware``).
        damping: added to the inputs' second moment (fraction of its mean diagonal).
    """

    name = "spatial_svd"
    manual_values = "rank"  # NetsPresso: one rank

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

    def decompose(self, module: nn.Module, moment: InputMoment | None) -> Factorization:
        return _SpatialSVDFactorization(module, moment, self.damping)  # type: ignore[arg-type]


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
