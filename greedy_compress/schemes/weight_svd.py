"""Weight SVD: a layer becomes a rank-r layer followed by a 1x1 (or Linear) projection.

A k x k conv (in -> out) becomes a k x k conv (in -> r) then a 1x1 conv (r -> out, with the
bias); a Linear becomes Linear(in -> r) then Linear(r -> out). An ``nn.MultiheadAttention``
(its packed ``in_proj_weight`` split into q, k and v) becomes an
:class:`~greedy_compress.model.attention.Attention` whose four projections are each such a
rank-r pair.

Data-aware (``WeightSVD(data_aware=True, data=...)``): the SVD of ``W S`` instead of ``W``,
``S`` the Cholesky factor of the second moment of the layer's input patches (SVD-LLM), so
every rank keeps the best layer output on the calibration data; its output error is the tail
sum of the squared singular values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from greedy_compress.model.attention import Attention
from greedy_compress.model.cost import Cost
from greedy_compress.model.modules import conv_like, factory_of
from greedy_compress.model.profile import LayerInfo, ModelProfile
from greedy_compress.model.statistics import InputMoment
from greedy_compress.schemes._base import Factorization
from greedy_compress.schemes._data_aware import DataAwareScheme
from greedy_compress.schemes._svd import SplitSVD, WhitenedSVD

__all__ = ["WeightSVD", "weight_svd"]


class _WeightSVDFactorization(Factorization):
    def __init__(
        self,
        module: nn.Linear | nn.Conv1d | nn.Conv2d,
        moment: InputMoment | None = None,
        damping: float = 0.0,
    ) -> None:
        self.module = module
        weight = module.weight
        matrix = weight.reshape(weight.shape[0], -1)
        self.moment = moment
        self.svd: SplitSVD | WhitenedSVD
        if moment is None:
            self.svd = SplitSVD(matrix)
        else:
            factor = moment.cholesky(damping)
            self.svd = WhitenedSVD(matrix, factor, taps=moment.taps if moment.channel_wise else 1)

    def output_error(self, rank: int, moment: InputMoment, original: nn.Module) -> float | None:
        if isinstance(self.svd, WhitenedSVD) and moment is self.moment:
            return self.svd.error(rank)  # the tail sum: no model, no module built
        weight = self.module.weight.detach().to(torch.float64)
        left, right = (f.detach().to(torch.float64) for f in self.svd.factors(rank))
        return moment.error(weight - (left @ right).reshape(weight.shape))

    def build(self, rank: int) -> nn.Sequential:
        module = self.module
        left, right = self.svd.factors(rank)
        bias = module.bias is not None
        first: nn.Linear | nn.Conv1d | nn.Conv2d
        second: nn.Linear | nn.Conv1d | nn.Conv2d
        if isinstance(module, nn.Linear):
            first = nn.Linear(module.in_features, rank, bias=False, **factory_of(module))
            second = nn.Linear(rank, module.out_features, bias=bias, **factory_of(module))
        else:
            first = conv_like(module, module.in_channels, rank, bias=False)
            second = conv_like(module, rank, module.out_channels, bias=bias, pointwise=True)
        with torch.no_grad():
            first.weight.copy_(right.reshape(first.weight.shape))
            second.weight.copy_(left.reshape(second.weight.shape))
            if module.bias is not None and second.bias is not None:
                second.bias.copy_(module.bias)
        return nn.Sequential(first, second)


class _AttentionSVDFactorization(Factorization):
    """The q, k, v and output projections of an ``nn.MultiheadAttention``, each split."""

    def __init__(self, module: nn.MultiheadAttention) -> None:
        self.attention = Attention.from_multihead(module)
        self.parts = {
            key: _WeightSVDFactorization(getattr(self.attention, key))
            for key in ("q_proj", "k_proj", "v_proj", "out_proj")
        }

    def build(self, rank: int) -> nn.Module:
        new = self.attention.materialized()
        for key, part in self.parts.items():
            setattr(new, key, part.build(min(rank, part.svd.max_rank)))
        return new


def _attention_cost(layer: LayerInfo, rank: int) -> Cost:
    """Rank-``rank`` q, k, v and output projections plus the attention matmuls (unchanged)."""
    embed, out = layer.in_channels, layer.out_channels
    queries = math.prod(layer.input_shape[:-1])
    keys = math.prod(layer.key_shape[:-1])
    pairs = queries * layer.key_shape[1]
    projections = (queries + 2 * keys) * rank * 2 * embed + queries * rank * (embed + out)
    params = 3 * rank * 2 * embed + rank * (embed + out)
    bias = 3 * embed + out if layer.bias else 0
    return Cost(macs=projections + 2 * pairs * embed, params=params + bias)


class WeightSVD(DataAwareScheme):
    """Weight SVD for ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` with ``groups=1``, and
    the four projections of ``nn.MultiheadAttention`` (one rank for all four; plain only).

    Args:
        data_aware: decompose for the best layer output on calibration ``data`` (whitened
            SVD) instead of the best weight (plain SVD, the default).
        data: calibration batches or a :class:`~greedy_compress.model.statistics.Calibration`
            (needed when ``data_aware``).
        damping: added to the inputs' second moment (fraction of its mean diagonal).

    Example:
        >>> scheme = WeightSVD(data_aware=True, data=train_loader)
        >>> small, report = compress(model, evaluator, target=0.5, scheme=scheme,
        ...                          input_shape=(1, 1, 8, 8), candidates=4, progress=False)
        >>> report.achieved_ratio <= 0.5
        True
    """

    name = "weight_svd"
    manual_values = "rank"  # NetsPresso: one rank

    def prepare(
        self,
        model: nn.Module,
        *,
        example_input: torch.Tensor | None = None,
        profile: ModelProfile | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ModelProfile | None:
        """Collect the input moments (data-aware); the attention modules are layers too (in
        call order)."""
        profile = super().prepare(
            model, example_input=example_input, profile=profile, details=details
        )
        return profile.with_attention() if profile is not None else None

    def skip_reason(self, layer: LayerInfo) -> str | None:
        if layer.kind == "attention":
            if self.data_aware:
                return (
                    "nn.MultiheadAttention: the data-aware option does not collect its "
                    "projections' inputs; the plain weight SVD compresses it"
                )
            if layer.key_shape[-1] != layer.in_channels:
                return "attention with kdim or vdim unlike embed_dim"
            return None
        if layer.groups != 1:
            return f"grouped conv (groups={layer.groups}); weight SVD needs groups=1"
        return None

    def max_rank(self, layer: LayerInfo) -> int:
        if layer.kind == "attention":
            return layer.in_channels
        return min(layer.out_channels, layer.in_channels * math.prod(layer.kernel_size))

    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        if layer.kind == "attention":
            return _attention_cost(layer, rank)
        fan_in = layer.in_channels * math.prod(layer.kernel_size)
        per_position = rank * (fan_in + layer.out_channels)
        params = per_position + (layer.out_channels if layer.bias else 0)
        return Cost(macs=layer.positions * per_position, params=params)

    def decompose(self, module: nn.Module, moment: InputMoment | None) -> Factorization:
        if isinstance(module, nn.MultiheadAttention):
            return _AttentionSVDFactorization(module)  # plain only: skip_reason when data-aware
        return _WeightSVDFactorization(module, moment, self.damping)  # type: ignore[arg-type]


def weight_svd(module: nn.Linear | nn.Conv1d | nn.Conv2d, rank: int) -> nn.Sequential:
    """Split ``module`` into two layers through a rank-``rank`` bottleneck.

    Example:
        >>> layer = nn.Linear(16, 8)
        >>> weight_svd(layer, 4)
        Sequential(
          (0): Linear(in_features=16, out_features=4, bias=False)
          (1): Linear(in_features=4, out_features=8, bias=True)
        )
    """
    return _WeightSVDFactorization(module).build(rank)
