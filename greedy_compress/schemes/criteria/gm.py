"""Geometric-median redundancy (FPGM, He et al. 2019): filters close to the others are
replaceable by them, so the filters nearest the geometric median are pruned first."""

from __future__ import annotations

import torch

from greedy_compress.schemes.criteria._base import ChannelEvidence, register_criterion


@register_criterion("gm")
def geometric_median(evidence: ChannelEvidence) -> torch.Tensor:
    """Importance = summed Euclidean distance from the channel's filter to all the others.

    The filter minimising that sum approximates the geometric median of the layer's filters;
    the closer a filter is to it, the more the others can stand in for it.

    Example:
        >>> geometric_median(ChannelEvidence((torch.tensor([[0.0], [1.0], [10.0]]),)))
        tensor([11.,  10.,  19.])
    """
    filters = evidence.filters.double()
    return torch.cdist(filters, filters).sum(dim=1).to(evidence.filters.dtype)
