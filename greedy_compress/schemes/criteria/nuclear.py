"""Nuclear norm of each channel's feature maps on sample data: channels whose maps carry
little (low-rank, weak) information are pruned first."""

from __future__ import annotations

import torch

from greedy_compress.schemes.criteria._base import ChannelEvidence, register_criterion


@register_criterion("nuclear", needs_data=True)
def nuclear_norm(evidence: ChannelEvidence) -> torch.Tensor:
    """Importance = nuclear norm of the channel's feature map, averaged over the samples.

    Feature maps of 2-D convs are ``H x W`` matrices; 1-D maps and flattened features are
    single rows, whose nuclear norm is their L2 norm.

    Example:
        >>> maps = torch.zeros(2, 3, 4, 4); maps[:, 1] = torch.eye(4)
        >>> nuclear_norm(ChannelEvidence((torch.zeros(3, 1),), features=maps))
        tensor([0., 4., 0.])
    """
    features = evidence.features
    if features is None:
        raise ValueError("the nuclear-norm criterion needs feature maps")
    samples, channels = features.shape[:2]
    maps = (
        features.reshape(samples, channels, -1, features.shape[-1])
        if features.dim() > 3
        else (features.reshape(samples, channels, 1, -1))
    )
    return torch.linalg.matrix_norm(maps.double(), ord="nuc").mean(dim=0).to(features.dtype)
