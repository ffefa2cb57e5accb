"""Truncated SVD of a matrix, split evenly between the two factors."""

from __future__ import annotations

import torch

__all__ = ["SplitSVD"]


class SplitSVD:
    """``matrix ~= left[:, :r] @ right[:r]`` for any r, from one SVD.

    Each factor carries the square root of the singular values, which keeps the two new
    layers' weights on a similar scale. Computed in float64 so full rank is exact to
    float32 precision.
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        u, s, vh = torch.linalg.svd(matrix.detach().to(torch.float64), full_matrices=False)
        root = s.sqrt()
        self.left = u * root
        self.right = root[:, None] * vh

    @property
    def max_rank(self) -> int:
        """Number of singular values."""
        return self.right.shape[0]

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The two factors truncated to ``rank``: shapes (m, rank) and (rank, n)."""
        return self.left[:, :rank], self.right[:rank]
