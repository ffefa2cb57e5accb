"""L2 norm of each channel's filter weights: small filters matter least."""

from __future__ import annotations

import torch

from greedy_compress.schemes.criteria._base import ChannelEvidence, register_criterion


@register_criterion("l2")
def l2_norm(evidence: ChannelEvidence) -> torch.Tensor:
    """Importance = L2 norm of the channel's filters (all producers together).

    Example:
        >>> l2_norm(ChannelEvidence((torch.tensor([[3.0, 4.0], [0.0, 1.0]]),)))
        tensor([5., 1.])
    """
    return evidence.filters.norm(dim=1)
