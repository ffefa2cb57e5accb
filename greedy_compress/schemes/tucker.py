"""Tucker-2 decomposition: a k x k conv becomes 1x1 (in -> r_in), k x k core, 1x1 (r_out -> out).

The kernel ``W[o, c, i, j]`` is decomposed on its two channel modes only (a partial Tucker
decomposition): ``W ~= core x_0 U_out x_1 U_in`` with ``U_in`` (in, r_in) and ``U_out``
(out, r_out) orthonormal. The first 1x1 conv projects the input channels with ``U_in^T``,
the core conv keeps the original kernel size, stride, padding, dilation and padding mode,
and the last 1x1 conv expands with ``U_out`` and carries the bias. Because a bias-free 1x1
conv commutes with padding, the three convs compute exactly the original at full ranks.

Fitting: tensorly's ``partial_tucker`` (HOOI, started from the truncated HOSVD, iterations
bounded by ``n_iter_max``); if it fails to give a finite fit no worse than the HOSVD, the
HOSVD itself is used. Each (r_in, r_out) is fitted once per layer and cached.

**One rank for two.** The search speaks one int rank per layer. For the Tucker scheme it is
the larger of the two core ranks; the other scales in proportion to its own maximum:
``r_in = ceil(rank * R_in / R)`` and ``r_out = ceil(rank * R_out / R)`` with
``R_in = min(in, out * k)``, ``R_out = min(out, in * k)`` (k = kernel elements) and
``R = max(R_in, R_out)``. So rank ``R`` is the exact decomposition, and both core ranks
shrink together. For an explicit pair use :func:`tucker2` with ``ranks=(r_in, r_out)``, or
manual mode (``manual_selection(model, {"conv": (r_in, r_out)}, scheme="tucker")``), whose
selection records both ranks.

**Data-aware** (``Tucker2(data_aware=True, data=...)``): the kernel's input-channel mode is
whitened by the Cholesky factor ``S`` of the input channels' second moment on calibration
data (``W x_1 Sᵀ``) before the fit, and ``U_in`` becomes ``S⁻ᵀ U_in`` afterwards, so the
fit minimizes the layer's output error on that data rather than the kernel error.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import torch
from tensorly.decomposition import partial_tucker
from torch import nn

from greedy_compress._util.blas import single_threaded_blas
from greedy_compress._util.constraints import bad_parameter
from greedy_compress.model.cost import Cost
from greedy_compress.model.modules import conv_like
from greedy_compress.model.profile import LayerInfo
from greedy_compress.model.statistics import InputMoment
from greedy_compress.schemes._base import Factorization
from greedy_compress.schemes._data_aware import DataAwareScheme
from greedy_compress.schemes._tensorly import as_numpy64, numpy_backend

__all__ = ["Tucker2", "TuckerFit", "core_ranks", "tucker2"]


def _max_core_ranks(out_ch: int, in_ch: int, kernel_elements: int) -> tuple[int, int]:
    """(R_in, R_out): the ranks of the kernel's mode-1 and mode-0 unfoldings at most."""
    return min(in_ch, out_ch * kernel_elements), min(out_ch, in_ch * kernel_elements)


def core_ranks(rank: int, max_in: int, max_out: int, multiplicity: int = 1) -> tuple[int, int]:
    """The (r_in, r_out) core ranks the Tucker scheme uses for its single ``rank``.

    The larger side gets ``rank``; the other is scaled in proportion, rounded up (to a
    multiple of ``multiplicity``, at most its maximum), so both core ranks are rounded when
    ``rank`` is.

    Example:
        >>> core_ranks(8, max_in=16, max_out=32), core_ranks(16, 24, 32, multiplicity=8)
        ((4, 8), (16, 16))
    """
    largest = max(max_in, max_out)

    def scaled(top: int) -> int:
        value = -(-rank * top // largest)
        return min(top, -(-value // multiplicity) * multiplicity)

    return scaled(max_in), scaled(max_out)


@dataclass(frozen=True)
class TuckerFit:
    """How one (r_in, r_out) fit went: relative kernel error, and which method gave it."""

    relative_error: float
    method: str  # "hooi" (tensorly partial_tucker) or "hosvd" (the fallback)


class _TuckerFactorization(Factorization):
    def __init__(
        self,
        module: nn.Conv1d | nn.Conv2d,
        *,
        n_iter_max: int,
        tol: float,
        whitening: np.ndarray | None = None,
        multiplicity: int = 1,
    ) -> None:
        self.module = module
        self.multiplicity = multiplicity
        self.n_iter_max = n_iter_max
        self.tol = tol
        self.whitening = whitening  # S, lower triangular: the fit is of W x_1 S^T
        self.tensor = as_numpy64(module.weight)
        if whitening is not None:
            self.tensor = np.einsum("oc...,cd->od...", self.tensor, whitening)
        out_ch, in_ch = self.tensor.shape[:2]
        self.max_in, self.max_out = _max_core_ranks(out_ch, in_ch, math.prod(self.tensor.shape[2:]))
        self.norm = float(np.linalg.norm(self.tensor)) or 1.0
        # Left singular vectors of the two channel unfoldings: the HOSVD, truncatable to any rank.
        mode1 = np.moveaxis(self.tensor, 1, 0).reshape(in_ch, -1)
        with single_threaded_blas():
            self._u_out = np.linalg.svd(self.tensor.reshape(out_ch, -1), full_matrices=False)[0]
            self._u_in = np.linalg.svd(mode1, full_matrices=False)[0]
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.fits: dict[tuple[int, int], TuckerFit] = {}

    def _error(self, core: np.ndarray, u_in: np.ndarray, u_out: np.ndarray) -> float:
        approx = np.einsum("ab...,oa,cb->oc...", core, u_out, u_in, optimize=True)
        return float(np.linalg.norm(approx - self.tensor)) / self.norm

    def fit(self, r_in: int, r_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(core, U_in, U_out) for these core ranks, fitted once and cached."""
        key = (r_in, r_out)
        if key not in self._cache:
            u_in, u_out = self._u_in[:, :r_in], self._u_out[:, :r_out]
            with single_threaded_blas():
                core = np.einsum("oc...,oa,cb->ab...", self.tensor, u_out, u_in, optimize=True)
                best, fit = (core, u_in, u_out), TuckerFit(self._error(core, u_in, u_out), "hosvd")
            try:
                with numpy_backend():
                    (t_core, (t_out, t_in)), _ = partial_tucker(
                        self.tensor,
                        rank=[r_out, r_in],
                        modes=[0, 1],
                        n_iter_max=self.n_iter_max,
                        tol=self.tol,
                        init="svd",
                    )
                    error = self._error(t_core, t_in, t_out)
                if math.isfinite(error) and error <= fit.relative_error:
                    best, fit = (t_core, t_in, t_out), TuckerFit(error, "hooi")
            except (np.linalg.LinAlgError, ValueError):
                pass  # keep the HOSVD fit, recorded as such in self.fits
            if self.whitening is not None:  # back from the whitened input space: S^-T U_in
                core, u_in, u_out = best
                u_in = scipy.linalg.solve_triangular(self.whitening.T, u_in, lower=False)
                best = (core, u_in, u_out)
            self._cache[key], self.fits[key] = best, fit
        return self._cache[key]

    def build_pair(self, r_in: int, r_out: int) -> nn.Sequential:
        """The three convs for core ranks ``r_in`` and ``r_out``."""
        module = self.module
        core, u_in, u_out = self.fit(r_in, r_out)
        first = conv_like(module, module.in_channels, r_in, bias=False, pointwise=True)
        middle = conv_like(module, r_in, r_out, bias=False)
        last = conv_like(
            module, r_out, module.out_channels, bias=module.bias is not None, pointwise=True
        )
        with torch.no_grad():
            for conv, array in ((first, u_in.T), (middle, core), (last, u_out)):
                weight = torch.from_numpy(np.ascontiguousarray(array))
                conv.weight.copy_(weight.reshape(conv.weight.shape))
            if module.bias is not None and last.bias is not None:
                last.bias.copy_(module.bias)
        return nn.Sequential(first, middle, last)

    def build(self, rank: int) -> nn.Sequential:
        return self.build_pair(*core_ranks(rank, self.max_in, self.max_out, self.multiplicity))

    def build_ranks(self, ranks: tuple[int, ...]) -> nn.Sequential:
        r_in, r_out = ranks
        return self.build_pair(r_in, r_out)


class Tucker2(DataAwareScheme):
    """Tucker-2 for ``nn.Conv1d`` and ``nn.Conv2d`` with ``groups=1``.

    HOOI improves little on its HOSVD start (relative kernel error 0.7378 -> 0.7330 on a
    random 128x128x3x3 kernel at rank 64, for 10x the time of 10 sweeps), hence the small
    default sweep count.

    Args:
        n_iter_max: most HOOI iterations per fit (the fit always stops).
        tol: HOOI stops earlier when the error improves by less than this.
        data_aware: whiten the input channels by their statistics on calibration ``data``
            (see the module docstring) instead of fitting the kernel alone (the default).
        data: calibration batches or a :class:`~greedy_compress.model.statistics.Calibration`
            (needed when ``data_aware``).
        damping: added to the input channels' second moment (fraction of its mean diagonal).
    """

    name = "tucker"
    manual_values = "ranks"  # NetsPresso's (in rank, out rank)

    def __init__(
        self,
        *,
        n_iter_max: int = 10,
        tol: float = 1e-5,
        data_aware: bool = False,
        data: Any = None,
        damping: float = 0.01,
    ) -> None:
        super().__init__(data_aware=data_aware, data=data, damping=damping)
        self.n_iter_max = n_iter_max
        self.tol = tol
        self.multiplicity = 1  # core ranks are rounded together (see with_multiplicity)

    def with_multiplicity(self, multiplicity: int) -> Tucker2:
        """A copy that rounds both core ranks to multiples of ``multiplicity``."""
        if multiplicity == self.multiplicity:
            return self
        rounded = copy.copy(self)
        rounded.multiplicity = multiplicity
        return rounded

    def skip_reason(self, layer: LayerInfo) -> str | None:
        if layer.kind not in ("conv1d", "conv2d"):
            return f"{layer.kind} layer; Tucker-2 needs a convolution"
        if layer.groups != 1:
            return f"grouped conv (groups={layer.groups}); Tucker-2 needs groups=1"
        return None

    def max_core_ranks(self, layer: LayerInfo) -> tuple[int, int]:
        """(R_in, R_out): the core ranks at which the decomposition is exact."""
        return _max_core_ranks(layer.out_channels, layer.in_channels, math.prod(layer.kernel_size))

    def core_ranks(self, layer: LayerInfo, rank: int) -> tuple[int, int]:
        """(r_in, r_out) for the scheme's single ``rank`` (see the module docstring)."""
        return core_ranks(rank, *self.max_core_ranks(layer), self.multiplicity)

    def rank_covering(self, layer: LayerInfo, r_in: int, r_out: int) -> int:
        """The smallest single rank whose core ranks are at least ``r_in`` and ``r_out``."""
        top = self.max_rank(layer)
        for rank in range(1, top + 1):
            got_in, got_out = self.core_ranks(layer, rank)
            if got_in >= r_in and got_out >= r_out:
                return rank
        return top

    def max_rank(self, layer: LayerInfo) -> int:
        return max(self.max_core_ranks(layer))

    def cost_for_core_ranks(self, layer: LayerInfo, r_in: int, r_out: int) -> Cost:
        """Exact cost of the three convs for core ranks ``r_in`` and ``r_out``."""
        kernel = math.prod(layer.kernel_size)
        in_positions = math.prod(layer.input_shape) // layer.in_channels
        macs = in_positions * layer.in_channels * r_in + layer.positions * (
            r_out * r_in * kernel + layer.out_channels * r_out
        )
        params = layer.in_channels * r_in + r_in * r_out * kernel + r_out * layer.out_channels
        return Cost(macs=macs, params=params + (layer.out_channels if layer.bias else 0))

    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        return self.cost_for_core_ranks(layer, *self.core_ranks(layer, rank))

    def mode_ranks(self, layer: LayerInfo) -> tuple[int, int]:
        return self.max_core_ranks(layer)

    def cost_at_ranks(self, layer: LayerInfo, ranks: tuple[int, ...]) -> Cost:
        r_in, r_out = ranks
        return self.cost_for_core_ranks(layer, r_in, r_out)

    def decompose(self, module: nn.Module, moment: InputMoment | None) -> _TuckerFactorization:
        whitening = None
        if moment is not None:
            whitening = moment.cholesky(self.damping, channels_only=True).numpy()
        return _TuckerFactorization(
            module,  # type: ignore[arg-type]
            n_iter_max=self.n_iter_max,
            tol=self.tol,
            whitening=whitening,
            multiplicity=self.multiplicity,
        )


def tucker2(conv: nn.Conv1d | nn.Conv2d, ranks: int | tuple[int, int]) -> nn.Sequential:
    """Decompose ``conv`` into 1x1 (in -> r_in), core conv (r_in -> r_out), 1x1 (r_out -> out).

    Args:
        conv: a ``Conv1d`` or ``Conv2d`` with ``groups=1``.
        ranks: ``(r_in, r_out)``, or one int mapped as the Tucker scheme does (the larger
            core rank; see :func:`core_ranks`).

    Example:
        >>> triple = tucker2(nn.Conv2d(16, 32, 3, padding=1), ranks=(4, 8))
        >>> [(m.in_channels, m.out_channels, m.kernel_size) for m in triple]
        [(16, 4, (1, 1)), (4, 8, (3, 3)), (8, 32, (1, 1))]
    """
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)) or conv.groups != 1:
        raise bad_parameter("conv", "tucker2", "an nn.Conv1d or nn.Conv2d with groups=1", conv)
    factorization = Tucker2().decompose(conv, None)
    if isinstance(ranks, int) and not isinstance(ranks, bool):
        top = max(factorization.max_in, factorization.max_out)
        if not 1 <= ranks <= top:
            raise bad_parameter("ranks", "tucker2", f"an int in [1, {top}] or a pair", ranks)
        return factorization.build(ranks)
    allowed = f"(r_in, r_out) with 1 <= r_in <= {factorization.max_in} and 1 <= r_out <= " + str(
        factorization.max_out
    )
    if (
        not isinstance(ranks, (tuple, list))
        or len(ranks) != 2
        or any(isinstance(r, bool) or not isinstance(r, int) for r in ranks)
        or not 1 <= ranks[0] <= factorization.max_in
        or not 1 <= ranks[1] <= factorization.max_out
    ):
        raise bad_parameter("ranks", "tucker2", allowed, ranks)
    return factorization.build_pair(ranks[0], ranks[1])
