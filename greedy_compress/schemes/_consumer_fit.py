"""What channel pruning's refit of one reading layer needs: per-channel energies (the
ranking) and the least-squares normal equations, from sampled rows or from the layer's input
moment (:mod:`greedy_compress.model.statistics`)."""

from __future__ import annotations

import torch
from torch import nn

from greedy_compress.graph import Layout
from greedy_compress.graph.dependency import layout_width
from greedy_compress.model.modules import weight_of
from greedy_compress.model.statistics import InputMoment

__all__ = ["ConsumerFit"]


def _ridge(mean_square: torch.Tensor) -> torch.Tensor:
    """The tiny ridge of every refit (relative to the Gram's mean diagonal), so that
    channels that never fire (all-zero columns) give a well-posed system."""
    return 1e-8 * mean_square.clamp_min(1e-12)


def _solve(system: torch.Tensor, rhs: torch.Tensor, ridge: torch.Tensor) -> torch.Tensor:
    """Solve ``(system + ridge I) X = rhs`` for a symmetric positive semi-definite
    ``system``: by Cholesky, by LU where rounding makes the factorization fail."""
    system = system + ridge * torch.eye(len(system), dtype=system.dtype, device=system.device)
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) == 0:
        return torch.cholesky_solve(rhs, factor)
    return torch.linalg.solve(system, rhs)


def _least_squares(gram: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
    """Solve min ||D W - Y|| (ridged) from D.T D and D.T Y."""
    return _solve(gram, cross, _ridge(gram.diagonal().mean()))


def _least_squares_rows(design: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The same from D and Y: with fewer rows than columns (a Linear reading a flattened
    feature map sees one row per sample) by the identity
    ``(D.T D + r I)^-1 D.T = D.T (D D.T + r I)^-1``, a system as small as the rows."""
    ridge = _ridge(design.pow(2).sum() / design.shape[1])
    if design.shape[0] < design.shape[1]:
        return design.T @ _solve(design @ design.T, targets, ridge)
    return _solve(design.T @ design, design.T @ targets, ridge)


class ConsumerFit:
    """One reading layer's sampled data: channel energies and normal equations.

    The reader's input may hold other channels too (a concatenation, the same channels
    several times): the group's channels are its columns in ``layout``, and the refit keeps
    every other column.
    """

    def __init__(
        self,
        layer: nn.Module,
        layout: Layout,
        group: int,
        design: torch.Tensor,
        targets: torch.Tensor,
    ) -> None:
        self._place(layout, group, design.shape[1])
        weight = weight_of(layer).detach()
        weight = weight.reshape(weight.shape[0], -1)
        # Contribution of channel c to the output on the samples is D_c @ W_c.T; its energy
        # ||D_c W_c.T||^2 = sum((D_c.T D_c) * (W_c.T W_c)) needs only per-channel Gram blocks.
        rows = design[:, self.columns].double()
        taps_w = weight[:, self.columns].double()
        energy = (
            torch.einsum("rck,rcl->ckl", rows, rows) * torch.einsum("ock,ocl->ckl", taps_w, taps_w)
        ).sum(dim=(1, 2))
        self.energy = energy / energy.sum().clamp_min(1e-30)  # each reader counts equally
        # The normal equations of the first refit use only its columns (a quarter of the
        # work at half the channels kept); a second refit computes them for every column
        # once, every kept-channel subset being a sub-block of those.
        self._design: torch.Tensor | None = design
        self._targets: torch.Tensor | None = targets
        self._refits = 0
        self.gram: torch.Tensor | None = None
        self.cross: torch.Tensor | None = None

    def _place(self, layout: Layout, group: int, width: int) -> None:
        """The group's columns (per channel) and every other column of a ``width``-column
        input (kernel taps included)."""
        taps = width // layout_width(layout)
        channels: list[list[int]] = []
        offset = 0
        for segment in layout:
            if segment.group == group:
                channels = channels or [[] for _ in range(segment.size)]
                for c in range(segment.size):
                    start = (offset + c * segment.block) * taps
                    channels[c].extend(range(start, start + segment.block * taps))
            offset += segment.size * segment.block
        self.columns = torch.tensor(channels)  # [channel, its columns]
        mine = set(self.columns.flatten().tolist())
        self.others = [c for c in range(width) if c not in mine]

    @classmethod
    def from_moment(
        cls,
        layer: nn.Module,
        layout: Layout,
        group: int,
        moment: InputMoment,
        original: torch.Tensor,
        outputs: list[int] | None,
    ) -> ConsumerFit:
        """The same from the input moment: ``D.T D ~ H`` and ``D.T Y ~ H W_originalᵀ``
        (``outputs``: the original output channels the layer still has)."""
        fit = cls.__new__(cls)
        gram = moment.patch_matrix()
        fit._place(layout, group, gram.shape[0])
        weight = weight_of(layer).detach().double().reshape(weight_of(layer).shape[0], -1)
        columns = fit.columns
        blocks = gram[columns[:, :, None], columns[:, None, :]]  # [channel, its columns²]
        taps_w = weight[:, columns]
        energy = (blocks * torch.einsum("ock,ocl->ckl", taps_w, taps_w)).sum(dim=(1, 2))
        fit.energy = energy / energy.sum().clamp_min(1e-30)
        target = original.detach().double().reshape(original.shape[0], -1)
        if outputs is not None:
            target = target[torch.tensor(outputs)]
        fit.gram, fit.cross = gram, gram @ target.T
        fit._design = fit._targets = None
        fit._refits = 0
        return fit

    def refit(self, layer: nn.Module, keep: list[int]) -> None:
        kept = self.columns[torch.tensor(keep, dtype=torch.long)].flatten().tolist()
        columns = torch.tensor(sorted(self.others + kept))
        self._refits += 1
        if self.gram is None and self._refits > 1:
            assert self._design is not None and self._targets is not None
            design = self._design.double()
            self.gram, self.cross = design.T @ design, design.T @ self._targets.double()
            self._design = self._targets = None
        if self.gram is not None and self.cross is not None:
            solution = _least_squares(self.gram[columns][:, columns], self.cross[columns])
        else:
            assert self._design is not None and self._targets is not None
            solution = _least_squares_rows(
                self._design[:, columns].double(), self._targets.double()
            )
        weight = weight_of(layer)
        with torch.no_grad():
            weight.copy_(solution.T.reshape(weight.shape).to(weight.dtype))
