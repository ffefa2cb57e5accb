"""The dense weight a compressed layer amounts to, found by probing it with unit patches.

Every decomposition replaces a layer by a chain of Linears, or of convs whose kernels tile
the original receptive field (k x k then 1x1; kh x 1 then 1 x kw; 1x1, k x k, 1x1 ...), so the
chain computes a linear map of the same input patch as the layer, plus a bias. Feeding it
each unit patch, with every padding removed so that one patch gives one output, reads that
map off as one dense weight of the layer's shape; no scheme needs code of its own for it.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["equivalent_weight"]


def _without_padding(module: nn.Module) -> nn.Module:
    probe = copy.deepcopy(module).to(torch.float64)
    for conv in probe.modules():
        if isinstance(conv, (nn.Conv1d, nn.Conv2d)):
            dims = len(conv.kernel_size)
            conv.padding = (0,) * dims
            conv.padding_mode = "zeros"
            conv._reversed_padding_repeated_twice = [0, 0] * dims
    return probe


def equivalent_weight(module: nn.Module, original: nn.Module) -> torch.Tensor | None:
    """The dense weight (``original.weight``'s shape, float64) that ``module`` applies to
    each input patch of ``original``, or None when ``module`` is not such a map.

    Example:
        >>> from greedy_compress.schemes import spatial_svd
        >>> conv = nn.Conv2d(4, 6, 3, padding=1)
        >>> dense = equivalent_weight(spatial_svd(conv, 12), conv)
        >>> torch.allclose(dense, conv.weight.double(), atol=1e-5)
        True
    """
    weight = getattr(original, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return None
    if isinstance(original, nn.Linear):
        inputs = torch.eye(original.in_features, dtype=torch.float64)
        origin = torch.zeros(1, original.in_features, dtype=torch.float64)
    elif isinstance(original, (nn.Conv1d, nn.Conv2d)) and original.groups == 1:
        kernel = tuple(original.kernel_size)
        span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, original.dilation, strict=True))
        features = original.in_channels * math.prod(kernel)
        # Unit patch f = channel * taps + tap, channel-major like weight.reshape(out, -1).
        taps = math.prod(kernel)
        order = [(f % taps, f // taps) for f in range(features)]
        inputs = torch.zeros(features, original.in_channels, *span, dtype=torch.float64)
        positions = list(torch.cartesian_prod(*(torch.arange(k) for k in kernel)).reshape(taps, -1))
        for f, (tap, channel) in enumerate(order):
            spot = [int(t) * d for t, d in zip(positions[tap], original.dilation, strict=True)]
            inputs[tuple([f, channel, *spot])] = 1.0
        origin = torch.zeros(1, original.in_channels, *span, dtype=torch.float64)
    else:
        return None
    probe = _without_padding(module)
    try:
        with torch.no_grad():
            outputs = probe(inputs) - probe(origin)
    except RuntimeError:  # shapes that do not chain this way: not a patch map
        return None
    out_features = weight.shape[0]
    if outputs.shape[1] != out_features or outputs[0].numel() != out_features:
        return None
    return outputs.reshape(len(inputs), out_features).T.reshape(weight.shape)
