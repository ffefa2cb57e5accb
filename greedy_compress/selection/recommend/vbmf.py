"""VBMF rank recommendation: per-layer ranks for the decomposition schemes, with no evaluation.

Each layer's kernel is unfolded into the matrix (or matrices) the scheme factorizes, and
the analytic empirical variational Bayesian matrix factorization (EVBMF; Nakajima,
Sugiyama, Babacan and Tomioka, "Global analytic solution of fully-observed variational
Bayesian matrix factorization", JMLR 2013) estimates the noise variance and keeps the
singular values above the EVB threshold. Its count is the recommended rank.

A **calibration ratio** ``c`` in [-1, 1] moves every rank toward full rank (c > 0) or
toward zero (c < 0): ``r' = r + trunc(c * (R - r))`` for c >= 0 and ``r + trunc(c * r)`` for
c < 0, clamped to [1, R], where R is the scheme's maximum rank for the layer.

Unfoldings per scheme:

- ``weight_svd``: the kernel as an (out, in * k) matrix (a Linear's weight as is).
- ``spatial_svd``: the (in * kh, out * kw) matrix the scheme splits.
- ``tucker``: the mode-0 (out, in * k) and mode-1 (in, out * k) unfoldings give r_out and
  r_in; the scheme's single rank is the smallest whose core ranks cover both
  (:meth:`Tucker2.rank_covering`). The calibration then acts on that single rank.
- ``cp``: max(r_in, r_out) from the same two unfoldings, a lower bound of the CP rank (a
  heuristic: VBMF has no CP form).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from greedy_compress._util.blas import single_threaded_blas
from greedy_compress._util.constraints import Interval, bad_parameter, check
from greedy_compress.errors import NoCompressibleLayerError
from greedy_compress.model.cost import CostMetric, check_metric
from greedy_compress.model.hashing import architecture_hash
from greedy_compress.model.modules import weight_of
from greedy_compress.model.profile import LayerInfo, make_example_input, profile_model
from greedy_compress.schemes import Scheme, Tucker2, get_scheme
from greedy_compress.selection.selection import LayerChoice, Selection

__all__ = ["VBMFResult", "calibrate_rank", "evbmf", "recommend_vbmf"]

_OWNER = "recommend_vbmf"
CALIBRATION = Interval(float, -1, 1)


@dataclass(frozen=True)
class VBMFResult:
    """EVBMF of one matrix: the rank, the estimated noise variance and the threshold used."""

    rank: int
    sigma2: float
    threshold: float
    singular_values: tuple[float, ...]


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt((x - (1 + alpha)) ** 2 - 4 * alpha))


def _free_energy(sigma2: float, big: int, s: np.ndarray, alpha: float, x_bar: float) -> float:
    """EVB free energy (up to constants) as a function of the noise variance."""
    x = s**2 / (big * sigma2)
    above, below = x[x > x_bar], x[x <= x_bar]
    tau = _tau(above, alpha)
    return float(
        np.sum(below - np.log(below))
        + np.sum(above - tau)
        + np.sum(np.log((tau + 1) / above))
        + alpha * np.sum(np.log(tau / alpha + 1))
    )


def evbmf(matrix: torch.Tensor | np.ndarray) -> VBMFResult:
    """Analytic empirical VBMF of ``matrix``: how many components rise above the noise.

    The noise variance is estimated by minimizing the EVB free energy over its analytic
    bounds; the rank is the number of singular values above the EVB threshold
    ``sqrt(M * sigma2 * (1 + tau) * (1 + alpha / tau))`` (L <= M the matrix's sides,
    alpha = L / M, tau ~= 2.5129 sqrt(alpha)).

    Example:
        >>> low = torch.randn(30, 4) @ torch.randn(4, 50)
        >>> evbmf(low * 10 + torch.randn(30, 50)).rank
        4
    """
    data = matrix.detach().cpu().double().numpy() if isinstance(matrix, torch.Tensor) else matrix
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or 0 in data.shape:
        raise bad_parameter("matrix", "evbmf", "a non-empty 2-D matrix", data.shape)
    if data.shape[0] > data.shape[1]:
        data = data.T
    small, big = data.shape
    with single_threaded_blas():  # one small SVD: BLAS threads only add overhead
        singular = np.linalg.svd(data, compute_uv=False)
    if singular[0] == 0:
        return VBMFResult(0, 0.0, 0.0, tuple(singular.tolist()))
    # Exact zeros (a rank-deficient matrix) would put log(0) in the free energy.
    s = np.maximum(singular, singular[0] * 1e-12)
    alpha = small / big
    tau_bar = 2.5129 * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    upper = float(np.sum(s**2)) / (small * big)
    # No EVB solution keeps more than ceil(L / (1 + alpha)) - 1 components (Nakajima et al.).
    first_noise = min(math.ceil(small / (1 + alpha)) - 1, small)
    lower = max(s[first_noise] ** 2 / (big * x_bar), float(np.mean(s[first_noise:] ** 2)) / big)
    if lower >= upper:
        sigma2 = upper
    else:
        sigma2 = float(
            minimize_scalar(
                _free_energy,
                args=(big, s, alpha, x_bar),
                bounds=(lower, upper),
                method="bounded",
            ).x
        )
    threshold = math.sqrt(big * sigma2 * (1 + tau_bar) * (1 + alpha / tau_bar))
    rank = int(np.sum(singular > threshold))
    return VBMFResult(rank, sigma2, threshold, tuple(singular.tolist()))


def check_calibration(value: Any, owner: str) -> float:
    """Return ``value`` as a float if it lies in [-1, 1]."""
    return float(check(value, CALIBRATION, "calibration", owner))


def calibrate_rank(rank: int, *, max_rank: int, calibration: float) -> int:
    """Move ``rank`` toward ``max_rank`` (calibration > 0) or toward zero (< 0).

    ``r + trunc(c * (R - r))`` for c >= 0, ``r + trunc(c * r)`` for c < 0, clamped to [1, R].

    Example:
        >>> calibrate_rank(4, max_rank=10, calibration=0.5), calibrate_rank(5, max_rank=10,
        ...                                                                  calibration=-0.5)
        (7, 3)
    """
    c = check_calibration(calibration, "calibrate_rank")
    moved = rank + math.trunc(c * (max_rank - rank)) if c >= 0 else rank + math.trunc(c * rank)
    return min(max(moved, 1), max_rank)


def _channel_ranks(weight: torch.Tensor) -> tuple[int, int]:
    """EVBMF ranks of the mode-1 (in) and mode-0 (out) unfoldings of a kernel."""
    out_ch, in_ch = weight.shape[:2]
    r_out = evbmf(weight.reshape(out_ch, -1)).rank
    r_in = evbmf(weight.transpose(0, 1).reshape(in_ch, -1)).rank
    return r_in, r_out


def _weight_svd(module: nn.Module, scheme: Scheme, layer: LayerInfo) -> tuple[int, dict]:
    weight = weight_of(module)
    return evbmf(weight.reshape(weight.shape[0], -1)).rank, {}


def _spatial_svd(module: nn.Module, scheme: Scheme, layer: LayerInfo) -> tuple[int, dict]:
    weight = weight_of(module)
    out_ch, in_ch, kh, kw = weight.shape
    matrix = weight.permute(1, 2, 0, 3).reshape(in_ch * kh, out_ch * kw)
    return evbmf(matrix).rank, {}


def _tucker(module: nn.Module, scheme: Scheme, layer: LayerInfo) -> tuple[int, dict]:
    r_in, r_out = _channel_ranks(weight_of(module))
    tucker = scheme if isinstance(scheme, Tucker2) else Tucker2()
    return tucker.rank_covering(layer, r_in, r_out), {"r_in": r_in, "r_out": r_out}


def _cp(module: nn.Module, scheme: Scheme, layer: LayerInfo) -> tuple[int, dict]:
    r_in, r_out = _channel_ranks(weight_of(module))
    return max(r_in, r_out), {"r_in": r_in, "r_out": r_out}


#: Scheme name -> (module, scheme, layer) -> (VBMF rank in the scheme's units, details).
UNFOLDINGS: dict[str, Callable[[nn.Module, Scheme, LayerInfo], tuple[int, dict]]] = {
    "weight_svd": _weight_svd,
    "spatial_svd": _spatial_svd,
    "tucker": _tucker,
    "cp": _cp,
}


def recommend_vbmf(
    model: nn.Module,
    *,
    scheme: str | Scheme = "tucker",
    calibration: float = 0.0,
    cost: CostMetric = "mac",
    example_input: torch.Tensor | None = None,
    input_shape: Sequence[int] | None = None,
    ignore: Iterable[str] = (),
) -> Selection:
    """Recommend a rank per layer with VBMF (no evaluation), as a :class:`Selection`.

    Layers the scheme cannot help are skipped; a layer whose recommended rank would not
    lower its cost is left alone (both listed in ``details`` with the reason). The
    selection's ``solver`` is ``"vbmf"``; as there is no requested target, ``target``
    holds the predicted ratio, and ``predicted_score`` is None for every layer.

    Args:
        model: the trained model (not modified).
        scheme: ``"tucker"``, ``"cp"``, ``"weight_svd"`` or ``"spatial_svd"``.
        calibration: in [-1, 1]; > 0 keeps more rank (toward full), < 0 less (toward 0).
        cost: the metric for the reported ratios, ``"mac"`` or ``"memory"``.
        example_input: a tensor the model accepts (or give ``input_shape``), to measure costs.
        input_shape: shape of a zero input, batch dimension included.
        ignore: names of modules (and their children) to leave alone.

    Returns:
        A selection for :func:`greedy_compress.apply_selection`; ``details["layers"]`` has
        per layer the raw VBMF rank, the maximum rank and the calibrated rank.

    Example:
        >>> selection = recommend_vbmf(model, scheme="tucker", calibration=0.2,
        ...                            input_shape=(1, 1, 8, 8))
        >>> small = apply_selection(model, selection)
        >>> selection.solver, count_macs(small, example_input) < count_macs(model, example_input)
        ('vbmf', True)
    """
    calibration = check_calibration(calibration, _OWNER)
    scheme = get_scheme(scheme, _OWNER)
    if scheme.name not in UNFOLDINGS:
        raise bad_parameter(
            "scheme",
            _OWNER,
            "one of " + ", ".join(repr(n) for n in sorted(UNFOLDINGS)),
            scheme.name,
        )
    metric = check_metric(cost, _OWNER)
    example = make_example_input(example_input, input_shape, _OWNER, like=model)
    profile = profile_model(model, example, ignore=ignore)

    skipped = dict(profile.unusable)
    left_alone: dict[str, str] = {}
    layers: dict[str, dict[str, Any]] = {}
    choices: dict[str, LayerChoice] = {}
    saved = 0
    for name, layer in profile.layers.items():
        reason = scheme.unsupported_reason(layer, metric)
        if reason is not None:
            skipped[name] = reason
            continue
        with torch.no_grad():
            raw, extra = UNFOLDINGS[scheme.name](model.get_submodule(name), scheme, layer)
        top = scheme.max_rank(layer)
        rank = calibrate_rank(raw, max_rank=top, calibration=calibration)
        layers[name] = {"vbmf_rank": raw, "max_rank": top, "rank": rank, **extra}
        original, new = layer.cost.get(metric), scheme.cost(layer, rank).get(metric)
        if new >= original:
            left_alone[name] = f"rank {rank} of {top} would not lower the {metric} cost"
            continue
        choices[name] = LayerChoice(new / original, rank, None)
        saved += original - new
    if not layers:
        details = "; ".join(f"{n}: {r}" for n, r in skipped.items()) or "no Conv1d/Conv2d/Linear"
        raise NoCompressibleLayerError(
            f"The model has no layer that scheme {scheme.name!r} can compress ({details})."
        )
    total = profile.model_cost.get(metric)
    predicted = (total - saved) / total
    return Selection(
        scheme=scheme.name,
        solver="vbmf",
        cost_metric=metric,
        target=predicted,
        predicted_ratio=predicted,
        choices=choices,
        details={
            "input_shape": list(example.shape),
            "model": architecture_hash(model),
            "calibration": calibration,
            "layers": layers,
            "left_alone": left_alone,
            "skipped": skipped,
        },
    )
