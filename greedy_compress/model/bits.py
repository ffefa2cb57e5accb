"""What a layer stored or computed below float32 declares, so costs can be measured.

Quantized layers (:mod:`greedy_compress.quantization`) derive from :class:`LowBitLayer`;
:func:`~greedy_compress.model.cost.measure_cost` reads these declarations to count the
model's storage bits and bit operations. Every other parameter is stored at its dtype's
width and every other multiply-accumulate is priced at 32 x 32 bits.
"""

from __future__ import annotations

from abc import abstractmethod

from torch import nn

__all__ = ["FLOAT_BITS", "LowBitLayer"]

FLOAT_BITS = 32
"""The width an unquantized weight or activation is priced at (float32)."""


class LowBitLayer(nn.Module):
    """A Conv/Linear whose weight is stored, and whose MACs run, at fewer bits.

    Subclasses hold the float layer as ``layer`` and declare the widths; parameters other
    than ``layer.weight`` (the bias) stay float.
    """

    layer: nn.Module

    @property
    @abstractmethod
    def weight_bits(self) -> int:
        """Bits per stored weight (32 when the weight is not quantized)."""

    @property
    @abstractmethod
    def activation_bits(self) -> int:
        """Bits of the activations entering the layer's MACs (32 when not quantized)."""
