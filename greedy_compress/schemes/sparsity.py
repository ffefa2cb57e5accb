"""Unstructured sparsity as a scheme: a layer's candidates are how many weights it keeps.

Each layer is magnitude-pruned on its own: the ``rank`` is the number of weights kept (the
largest in absolute value; ties by position), the rest are masked to zero with a
:class:`~greedy_compress.model.mask.WeightMask` parametrization, so the built layer is the
original layer with a mask (the same module type and state-dict names, fine-tuning keeps the
pruned weights at zero, and :func:`~greedy_compress.export.export_model` finds the masks and
writes those weights sparse). Zeroing the weights in place would lose all three.

Costs, exact in every metric and equal to :func:`~greedy_compress.model.cost.measure_cost`
of the built layer:

* ``memory``: the bytes the sparse export writes for the weight
  (:mod:`greedy_compress.model.sparse_storage`: CSR with float32 values, int16 column indices
  where a row has at most 32767 columns, else int32, ``out + 1`` int32 row starts and the int64
  shape), or the dense float32 weight when CSR would not be smaller, plus the float32 bias. So a
  kept weight costs 6 bytes (8 with int32 columns) against 4 dense: memory falls only below
  about two thirds density, and candidates are asked as fractions of the layer's memory;
* ``mac`` and ``bops``: unchanged. A dense kernel multiplies the zeros too, so unstructured
  sparsity has nothing to offer there and the scheme refuses every layer under those metrics
  (and under ``latency``, whose ranks are chosen by MACs) with that reason, rather than pretend.
"""

from __future__ import annotations

import copy
import math
from typing import cast

import torch
from torch import nn

from greedy_compress.model.bits import FLOAT_BITS
from greedy_compress.model.cost import Cost, CostMetric
from greedy_compress.model.mask import keep_largest, set_mask
from greedy_compress.model.profile import LayerInfo
from greedy_compress.model.sparse_storage import stored_weight_bytes, stores_sparse
from greedy_compress.schemes._base import Factorization, Scheme

__all__ = ["UnstructuredSparsity", "weight_shape"]

_VALUE_BYTES = FLOAT_BITS // 8


def weight_shape(layer: LayerInfo) -> tuple[int, ...]:
    """The weight shape of a Conv1d, Conv2d or Linear layer from its profile.

    Example:
        >>> weight_shape(profile_model(model, example_input).layers["features.3"])
        (64, 32, 3, 3)
    """
    if layer.kind == "linear":
        return (layer.out_channels, layer.in_channels)
    return (layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_size)


class _SparsityFactorization(Factorization):
    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def build(self, rank: int) -> nn.Module:
        layer = copy.deepcopy(self.module)
        set_mask(layer, keep_largest(cast(torch.Tensor, layer.weight), rank))
        return layer


class UnstructuredSparsity(Scheme):
    """Magnitude pruning per layer; candidates are kept-weight counts (rank = weights kept).

    Only ``cost="memory"`` can use it (see the module docstring): under ``"mac"``,
    ``"bops"`` or ``"latency"`` every layer is refused with the reason.

    Example:
        >>> scores = build_eval_scores(model, evaluator, scheme="sparsity", cost="memory",
        ...                            input_shape=(1, 1, 8, 8), progress=False)
        >>> entry = scores.layers["features.3"].entries[0]
        >>> entry.rank, entry.cost.bits // 8, round(entry.kept_ratio, 3)  # kept, bytes, ratio
        (1180, 7372, 0.1)
    """

    name = "sparsity"
    rank_unit = "kept weights"

    def unsupported_reason(self, layer: LayerInfo, metric: CostMetric) -> str | None:
        if metric != "memory":
            return (
                "unstructured sparsity keeps every dense MAC (a dense kernel multiplies the "
                f"zeros too), so it cannot lower the {metric} cost: use cost='memory'"
            )
        return super().unsupported_reason(layer, metric)

    def skip_reason(self, layer: LayerInfo) -> str | None:
        if layer.kind not in ("conv1d", "conv2d", "linear"):
            return f"unstructured sparsity masks Conv1d, Conv2d and Linear weights ({layer.kind})"
        return None

    def max_rank(self, layer: LayerInfo) -> int:
        return math.prod(weight_shape(layer))

    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        shape = weight_shape(layer)
        numel = math.prod(shape)
        stored = rank if stores_sparse(shape, rank, _VALUE_BYTES) else numel
        bits = 8 * stored_weight_bytes(shape, rank, _VALUE_BYTES)
        other = layer.cost.params - numel  # the bias, kept float32
        return Cost(
            layer.cost.macs,
            other + stored,
            layer.cost.bits - FLOAT_BITS * numel + bits,
            layer.cost.bops,
        )

    def factorize(self, module: nn.Module) -> Factorization:
        return _SparsityFactorization(module)
