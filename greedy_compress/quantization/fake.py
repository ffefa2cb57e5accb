"""Fake quantization on plain torch ops: round and clamp, with straight-through gradients.

``round_ste`` rounds in the forward pass and passes the gradient through unchanged in the
backward pass (the straight-through estimator of Bengio et al. 2013); clamping then gives a
zero gradient outside the representable range, so a fake-quantized tensor trains like its
float original inside the range. Nothing here uses ``torch.ao.quantization``.

Integer grids:

* weights, symmetric per output channel: ``q in [-(2^(b-1) - 1), 2^(b-1) - 1]``, scale
  ``max|w| / (2^(b-1) - 1)`` per channel, zero point 0 (1 bit: ``sign(w)`` times the mean
  absolute weight, q in {-1, 1});
* activations, asymmetric per tensor: ``q in [0, 2^b - 1]``, scale ``(high - low) /
  (2^b - 1)`` with the range stretched to hold 0, integer zero point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "QuantGrid",
    "activation_grid",
    "dorefa_grid",
    "dorefa_weight",
    "fake_quantize",
    "round_ste",
    "symmetric_weight_grid",
]


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward (half to even, like ONNX), identity gradient backward.

    Example:
        >>> x = torch.tensor([0.4, 1.5, 2.5], requires_grad=True)
        >>> y = round_ste(x); y.sum().backward()
        >>> y.tolist(), x.grad.tolist()
        ([0.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    """
    return x + (torch.round(x) - x).detach()


@dataclass(frozen=True)
class QuantGrid:
    """An integer grid: ``x ~ scale * (q - zero_point)`` with ``qmin <= q <= qmax``.

    ``scale`` and ``zero_point`` are per tensor (0-d) or per channel along ``axis``.
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    qmin: int
    qmax: int
    axis: int | None = None

    def _shaped(self, tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.axis is None or tensor.dim() == 0:
            return tensor
        shape = [1] * like.dim()
        shape[self.axis] = -1
        return tensor.reshape(shape)

    def integers(self, x: torch.Tensor) -> torch.Tensor:
        """The grid's integers for ``x`` (rounded, clamped), as int64."""
        scale, zero = self._shaped(self.scale, x), self._shaped(self.zero_point, x)
        return torch.clamp(torch.round(x / scale) + zero, self.qmin, self.qmax).long()

    def fake(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` rounded to the grid and back to float, with straight-through gradients."""
        scale, zero = self._shaped(self.scale, x), self._shaped(self.zero_point, x)
        q = torch.clamp(round_ste(x / scale) + zero, self.qmin, self.qmax)
        return (q - zero) * scale


def symmetric_weight_grid(weight: torch.Tensor, bits: int) -> QuantGrid:
    """Symmetric max-abs grid of ``bits`` per output channel (dim 0) of ``weight``.

    Example:
        >>> grid = symmetric_weight_grid(torch.tensor([[0.5, -1.0], [0.3, 0.1]]), 3)
        >>> grid.scale.tolist(), grid.qmax
        ([0.3333333432674408, 0.10000000149011612], 3)
        >>> grid.integers(torch.tensor([[0.5, -1.0], [0.3, 0.1]])).tolist()
        [[2, -3], [3, 1]]
    """
    flat = weight.detach().reshape(weight.shape[0], -1).abs()
    if bits == 1:
        scale = flat.mean(dim=1)
        qmin, qmax = -1, 1
    else:
        qmax = 2 ** (bits - 1) - 1
        qmin = -qmax
        scale = flat.amax(dim=1) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel
    return QuantGrid(scale, torch.zeros_like(scale), qmin, qmax, axis=0)


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` fake-quantized on its symmetric per-channel grid of ``bits``.

    One bit is ``sign(w) * mean|w|`` per channel (zero counts as positive).

    Example:
        >>> fake_quantize(torch.tensor([[0.5, -1.0], [0.3, 0.1]]), 3)
        tensor([[ 0.6667, -1.0000],
                [ 0.3000,  0.1000]])
        >>> fake_quantize(torch.tensor([[0.5, -1.0, 0.0]]), 1)
        tensor([[ 0.5000, -0.5000,  0.5000]])
    """
    grid = symmetric_weight_grid(weight, bits)
    if bits == 1:
        scale = grid.scale.reshape(-1, *([1] * (weight.dim() - 1)))
        sign = torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)
        return weight + (sign * scale - weight).detach()  # straight through
    return grid.fake(weight)


def activation_grid(low: float, high: float, bits: int) -> QuantGrid:
    """Asymmetric per-tensor grid of ``bits`` unsigned levels covering ``[low, high]`` and 0.

    Example:
        >>> grid = activation_grid(-1.0, 3.0, 2)
        >>> round(float(grid.scale), 4), int(grid.zero_point), grid.qmax
        (1.3333, 1, 3)
        >>> grid.fake(torch.tensor([-2.0, 0.0, 1.0, 9.0])).tolist()
        [-1.3333333730697632, 0.0, 1.3333333730697632, 2.6666667461395264]
    """
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    qmax = 2**bits - 1
    scale = (high - low) / qmax if high > low else 1.0
    zero = min(qmax, max(0, round(-low / scale)))
    return QuantGrid(torch.tensor(scale), torch.tensor(float(zero)), 0, qmax)


def dorefa_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa-Net's k-bit weights (Zhou et al. 2016), straight-through gradients.

    ``w' = tanh(w) / (2 max|tanh(w)|) + 1/2`` lies in [0, 1]; it is rounded to ``2^k - 1``
    steps and mapped back to [-1, 1]: ``2 round((2^k - 1) w') / (2^k - 1) - 1``. One bit is
    ``sign(w) * mean|w|`` as in the paper.

    Example:
        >>> dorefa_weight(torch.tensor([-2.0, -0.1, 0.1, 2.0]), 2)
        tensor([-1.0000, -0.3333,  0.3333,  1.0000])
    """
    if bits == 1:
        scale = weight.detach().abs().mean()
        sign = torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)
        return weight + (sign * scale - weight).detach()
    levels = 2**bits - 1
    squashed = torch.tanh(weight)
    unit = squashed / (2 * squashed.detach().abs().max().clamp_min(1e-12)) + 0.5
    return 2 * round_ste(unit * levels) / levels - 1


def dorefa_grid(bits: int) -> QuantGrid:
    """The integer grid DoReFa's weights lie on, for export: ``w = m / (2^k - 1)`` with odd
    ``m`` in ``[-(2^k - 1), 2^k - 1]`` (one bit: use :func:`symmetric_weight_grid`).

    Example:
        >>> dorefa_grid(2).integers(torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])).tolist()
        [-3, -1, 1, 3]
    """
    levels = 2**bits - 1
    return QuantGrid(torch.tensor(1.0 / levels), torch.tensor(0.0), -levels, levels)
