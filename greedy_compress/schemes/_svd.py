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

    @classmethod
    def from_factors(cls, left: torch.Tensor, right: torch.Tensor) -> SplitSVD:
        """Factors computed elsewhere (a whitened SVD of the transposed matrix)."""
        split = cls.__new__(cls)
        split.left, split.right = left, right
        return split

    @property
    def max_rank(self) -> int:
        """Number of singular values."""
        return self.right.shape[0]

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The two factors truncated to ``rank``: shapes (m, rank) and (rank, n)."""
        return self.left[:, :rank], self.right[:rank]


class WhitenedSVD:
    """``matrix ~= left[:, :r] @ right[:r]`` minimizing the output error on data (SVD-LLM).

    ``matrix`` multiplies input vectors ``x`` with second moment ``H = S Sᵀ`` (``S`` lower
    triangular: the Cholesky factor of the damped moment). With ``matrix @ S = U Σ Vᵀ``,
    ``left = U Σ^½`` and ``right = Σ^½ Vᵀ S⁻¹``; the output error at rank r,
    ``tr(ΔW H ΔWᵀ)``, is the tail sum ``Σ_{i>r} σ_i²`` (:meth:`errors`), the least any rank-r
    matrix reaches. At full rank ``left @ right == matrix``.

    When ``channel_wise``, ``factor`` is the channel moment's factor (``C x C``) and the
    columns of ``matrix`` are ``C`` channels x ``taps`` taps, channel-major; ``S`` is then
    ``factor ⊗ I_taps``, applied without being formed.
    """

    def __init__(self, matrix: torch.Tensor, factor: torch.Tensor, *, taps: int = 1) -> None:
        matrix = matrix.detach().to(torch.float64)
        self.factor, self.taps = factor.to(matrix), taps
        u, s, vh = torch.linalg.svd(self._times_factor(matrix), full_matrices=False)
        root = s.sqrt()
        self.singular_values = s
        self.left = u * root
        self.right = self._over_factor(root[:, None] * vh)

    def _split(self, matrix: torch.Tensor) -> torch.Tensor:
        """Rows of ``matrix`` as (row, tap) vectors over channels: ``[rows * taps, C]``."""
        rows = matrix.shape[0]
        return matrix.reshape(rows, -1, self.taps).transpose(1, 2).reshape(rows * self.taps, -1)

    def _join(self, split: torch.Tensor, rows: int) -> torch.Tensor:
        return split.reshape(rows, self.taps, -1).transpose(1, 2).reshape(rows, -1)

    def _times_factor(self, matrix: torch.Tensor) -> torch.Tensor:
        return self._join(self._split(matrix) @ self.factor, matrix.shape[0])

    def _over_factor(self, matrix: torch.Tensor) -> torch.Tensor:
        solved = torch.linalg.solve_triangular(
            self.factor, self._split(matrix), upper=False, left=False
        )
        return self._join(solved, matrix.shape[0])

    @property
    def max_rank(self) -> int:
        """Number of singular values."""
        return self.right.shape[0]

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The two factors truncated to ``rank``: shapes (m, rank) and (rank, n)."""
        return self.left[:, :rank], self.right[:rank]

    def error(self, rank: int) -> float:
        """The output error ``tr(ΔW H ΔWᵀ)`` at ``rank`` (``H`` damped): ``Σ_{i>rank} σ_i²``."""
        return float(self.singular_values[rank:].pow(2).sum())
