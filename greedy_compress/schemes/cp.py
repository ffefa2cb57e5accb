"""CP decomposition: a kh x kw conv becomes four small convs through ``r`` channels.

``W[o, c, i, j] ~= sum_r A[o, r] B[c, r] V[i, r] H[j, r]`` (a rank-r CP decomposition of the
kernel, Lebedev et al. 2015) gives 1x1 (in -> r), kh x 1 depthwise, 1 x kw depthwise and
1x1 (r -> out, with the bias). Stride, padding and dilation split by dimension between the
two depthwise convs, so the four convs compute ``sum_r`` of exactly the original conv with a
rank-one kernel.

Fitting: tensorly's ``parafac`` (ALS from an SVD start, at most ``n_iter_max`` sweeps, so it
always stops). A CP fit cannot be truncated, so each rank is fitted once per layer and
cached; :attr:`~_CPFactorization.fits` records the relative kernel error, the sweeps used and
whether ALS converged. A non-finite or diverged fit is retried from a random start; if that
fails too, :class:`~greedy_compress.errors.DecompositionError` names the layer and rank.

**Maximum rank.** Any kernel is exactly a sum of ``prod(shape) / max(shape)`` rank-one terms
(one per index of the smaller modes), so that is ``max_rank``; there the exact
decomposition is built directly instead of by ALS.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from tensorly.cp_tensor import cp_to_tensor
from tensorly.decomposition import parafac
from torch import nn

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.errors import DecompositionError
from greedy_compress.model.cost import Cost
from greedy_compress.model.modules import conv_like
from greedy_compress.model.profile import LayerInfo
from greedy_compress.schemes._base import Factorization, Scheme
from greedy_compress.schemes._separable import split_conv_pair
from greedy_compress.schemes._tensorly import as_numpy64, numpy_backend

__all__ = ["CP", "CPFit", "cp_decompose"]


def _exact_rank(shape: tuple[int, ...]) -> int:
    return math.prod(shape) // max(shape)


def _exact_cp(tensor: np.ndarray) -> list[np.ndarray]:
    """An exact CP decomposition: one rank-one term per index of all modes but the largest."""
    big = int(np.argmax(tensor.shape))
    others = [m for m in range(tensor.ndim) if m != big]
    indices = list(itertools.product(*(range(tensor.shape[m]) for m in others)))
    factors = [np.zeros((size, len(indices))) for size in tensor.shape]
    for r, index in enumerate(indices):
        for mode, i in zip(others, index, strict=True):
            factors[mode][i, r] = 1.0
        slicer: list[int | slice] = [slice(None)] * tensor.ndim
        for mode, i in zip(others, index, strict=True):
            slicer[mode] = i
        factors[big][:, r] = tensor[tuple(slicer)]
    return factors


@dataclass(frozen=True)
class CPFit:
    """How one rank's fit went."""

    relative_error: float
    iterations: int
    converged: bool
    init: str  # "svd", "random" (the retry) or "exact" (at max_rank)


class _CPFactorization(Factorization):
    def __init__(self, module: nn.Conv2d, *, n_iter_max: int, tol: float) -> None:
        self.module = module
        self.n_iter_max = n_iter_max
        self.tol = tol
        self.tensor = as_numpy64(module.weight)
        self.max_rank = _exact_rank(self.tensor.shape)
        self.norm = float(np.linalg.norm(self.tensor)) or 1.0
        self._cache: dict[int, list[np.ndarray]] = {}
        self.fits: dict[int, CPFit] = {}

    def _als(self, rank: int, init: str) -> tuple[list[np.ndarray], CPFit]:
        with numpy_backend():
            (weights, factors), errors = parafac(
                self.tensor,
                rank,
                n_iter_max=self.n_iter_max,
                init=init,
                tol=self.tol,
                random_state=0,
                return_errors=True,
            )
            approx = cp_to_tensor((weights, factors))
        factors = [np.asarray(f) for f in factors]
        factors[0] = factors[0] * np.asarray(weights)[None, :]
        error = float(np.linalg.norm(approx - self.tensor)) / self.norm
        converged = len(errors) < self.n_iter_max
        return factors, CPFit(error, len(errors), converged, init)

    def fit(self, rank: int) -> list[np.ndarray]:
        """Factors (out, in, kh, kw), each (size, rank), balanced in scale; cached per rank."""
        if rank not in self._cache:
            if rank >= self.max_rank:
                factors = _exact_cp(self.tensor)
                fit = CPFit(0.0, 0, True, "exact")
            else:
                factors, fit = self._als(rank, "svd")
                # ALS can diverge (components growing without bound); retry once from random.
                if not math.isfinite(fit.relative_error) or fit.relative_error > 1.0:
                    factors, fit = self._als(rank, "random")
                if not math.isfinite(fit.relative_error) or fit.relative_error > 1.0:
                    raise DecompositionError(
                        f"CP fit of a kernel of shape {self.tensor.shape} at rank {rank} "
                        f"failed (relative error {fit.relative_error!r}); use another rank "
                        "or scheme."
                    )
            # Give every factor the same column norms so no conv holds extreme weights.
            norms = np.stack([np.linalg.norm(f, axis=0) for f in factors])
            scale = np.prod(norms, axis=0) ** (1 / len(factors))
            safe = np.where(norms > 0, norms, 1.0)
            self._cache[rank] = [f / s * scale for f, s in zip(factors, safe, strict=True)]
            self.fits[rank] = fit
        return self._cache[rank]

    def build(self, rank: int) -> nn.Sequential:
        module = self.module
        out_f, in_f, v_f, h_f = self.fit(rank)
        rank = out_f.shape[1]  # max_rank and above use the exact decomposition's own size
        out_ch, in_ch = module.weight.shape[:2]
        first = conv_like(module, in_ch, rank, bias=False, pointwise=True)
        # depthwise pair carrying the original geometry, split by dimension
        vertical, horizontal = split_conv_pair(module, channels=(rank, rank, rank), groups=rank)
        last = conv_like(module, rank, out_ch, bias=module.bias is not None, pointwise=True)
        # (r, in), (r, kh), (r, kw), (out, r)
        factors = ((first, in_f.T), (vertical, v_f.T), (horizontal, h_f.T), (last, out_f))
        with torch.no_grad():
            for conv, array in factors:
                conv.weight.copy_(
                    torch.from_numpy(np.ascontiguousarray(array)).view_as(conv.weight)
                )
            if module.bias is not None and last.bias is not None:
                last.bias.copy_(module.bias)
        return nn.Sequential(first, vertical, horizontal, last)


class CP(Scheme):
    """CP decomposition for ``nn.Conv2d`` with ``groups=1`` and a kernel larger than 1 both ways.

    Each rank is a separate ALS fit whose time grows with the rank and the kernel size
    (tensorly forms Khatri-Rao products of the other modes), so wide layers take seconds
    per candidate rank; lower ``n_iter_max`` to trade fit quality for speed.

    Args:
        n_iter_max: most ALS sweeps per rank (the fit always stops).
        tol: ALS stops earlier when the error changes by less than this.
    """

    name = "cp"
    manual_values = "rank"  # NetsPresso: one rank

    def __init__(self, *, n_iter_max: int = 50, tol: float = 1e-7) -> None:
        self.n_iter_max = n_iter_max
        self.tol = tol

    def skip_reason(self, layer: LayerInfo) -> str | None:
        if layer.kind != "conv2d":
            return f"{layer.kind} layer; CP decomposition needs a 2-D convolution"
        if layer.groups != 1:
            return f"grouped conv (groups={layer.groups}); CP decomposition needs groups=1"
        if min(layer.kernel_size) == 1:
            return f"kernel {layer.kernel_size} has size 1 along a dimension; use weight_svd"
        return None

    def max_rank(self, layer: LayerInfo) -> int:
        return _exact_rank((layer.out_channels, layer.in_channels, *layer.kernel_size))

    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        kh, kw = layer.kernel_size
        batch, _, out_h, out_w = layer.output_shape
        in_h, in_w = layer.input_shape[2:]
        # The kh x 1 conv never pads, strides or dilates the width.
        macs = (
            batch * in_h * in_w * layer.in_channels * rank
            + batch * out_h * in_w * rank * kh
            + batch * out_h * out_w * rank * (kw + layer.out_channels)
        )
        params = rank * (layer.in_channels + kh + kw + layer.out_channels)
        return Cost(macs=macs, params=params + (layer.out_channels if layer.bias else 0))

    def factorize(self, module: nn.Module) -> _CPFactorization:
        return _CPFactorization(module, n_iter_max=self.n_iter_max, tol=self.tol)  # type: ignore[arg-type]


def cp_decompose(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """Decompose ``conv`` into 1x1 (in -> rank), kh x 1 and 1 x kw depthwise, 1x1 (rank -> out).

    Example:
        >>> four = cp_decompose(nn.Conv2d(8, 16, 3, padding=1), 6)
        >>> [(m.out_channels, m.kernel_size, m.groups) for m in four]
        [(6, (1, 1), 1), (6, (3, 1), 6), (6, (1, 3), 6), (16, (1, 1), 1)]
    """
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise bad_parameter("conv", "cp_decompose", "an nn.Conv2d with groups=1", conv)
    factorization = CP().factorize(conv)
    top = factorization.max_rank
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= top:
        raise bad_parameter("rank", "cp_decompose", f"an int in [1, {top}]", rank)
    return factorization.build(rank)
