"""Tucker-2 and CP specifics: fit quality, rank mapping, bounded ALS, fallbacks, functional forms.

The shared checks (full rank exact, analytic cost == measured cost, no mutation, rank for
ratio) run on both schemes in tests/test_schemes.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import greedy_compress.schemes.cp as cp_module
import greedy_compress.schemes.tucker as tucker_module
from greedy_compress.errors import DecompositionError, InvalidParameterError
from greedy_compress.model.cost import measure_cost
from greedy_compress.model.profile import profile_model
from greedy_compress.schemes import CP, Tucker2, cp_decompose, get_scheme, tucker2
from greedy_compress.schemes.tucker import core_ranks


def _conv_and_input(seed: int = 0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(6, 10, 3, padding=1).eval()
    return conv, torch.randn(2, 6, 12, 13)


def _relative_error(module: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        expected = reference(x)
        return float((module(x) - expected).norm() / expected.norm())


def test_cp_recovers_a_planted_low_rank_kernel_at_that_rank():
    conv, x = _conv_and_input()
    torch.manual_seed(1)
    factors = [torch.randn(size, 3) for size in (10, 6, 3, 3)]
    conv.weight.data.copy_(torch.einsum("or,cr,ir,jr->ocij", *factors))
    factorization = CP().factorize(conv)
    assert _relative_error(factorization.build(3), conv, x) < 1e-4
    assert factorization.fits[3].relative_error < 1e-4


def test_cp_at_high_rank_reproduces_outputs_closely_and_error_falls_with_rank():
    conv, x = _conv_and_input()
    factorization = CP().factorize(conv)
    assert factorization.max_rank == 54  # 10 * 6 * 3 * 3 / 10
    errors = [_relative_error(factorization.build(r), conv, x) for r in (2, 10, 30, 53)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-3  # ALS, one below the exact construction's rank
    assert factorization.fits[53].init == "svd"


def test_cp_iterations_are_bounded_and_reported():
    conv, _ = _conv_and_input()
    factorization = CP(n_iter_max=3, tol=0.0).factorize(conv)
    factorization.build(20)
    fit = factorization.fits[20]
    assert fit.iterations <= 3 and not fit.converged and 0 < fit.relative_error < 1


def test_cp_fits_each_rank_once(monkeypatch):
    conv, _ = _conv_and_input()
    calls = []
    real = cp_module.parafac

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(cp_module, "parafac", counting)
    factorization = CP(n_iter_max=5).factorize(conv)
    for rank in (4, 4, 7, 4):
        factorization.build(rank)
    assert calls == [4, 7]


def _diverged(tensor, rank, **kwargs):
    weights = np.ones(rank)
    factors = [np.full((size, rank), np.nan) for size in tensor.shape]
    return (weights, factors), [np.nan]


def test_cp_retries_from_random_start_when_als_diverges(monkeypatch):
    conv, x = _conv_and_input()
    real = cp_module.parafac
    inits = []

    def first_diverges(tensor, rank, **kwargs):
        inits.append(kwargs["init"])
        return _diverged(tensor, rank) if kwargs["init"] == "svd" else real(tensor, rank, **kwargs)

    monkeypatch.setattr(cp_module, "parafac", first_diverges)
    factorization = CP(n_iter_max=50).factorize(conv)
    module = factorization.build(30)
    assert inits == ["svd", "random"]
    assert factorization.fits[30].init == "random"
    assert _relative_error(module, conv, x) < 0.5


def test_cp_reports_a_fit_that_fails_twice(monkeypatch):
    conv, _ = _conv_and_input()
    monkeypatch.setattr(cp_module, "parafac", _diverged)
    with pytest.raises(DecompositionError, match=r"shape \(10, 6, 3, 3\) at rank 5"):
        CP().factorize(conv).build(5)


def test_tucker_core_ranks_scale_with_their_maxima_and_cover_requests():
    assert core_ranks(8, max_in=16, max_out=32) == (4, 8)
    assert core_ranks(32, max_in=16, max_out=32) == (16, 32)
    assert core_ranks(1, max_in=16, max_out=32) == (1, 1)
    scheme = get_scheme("tucker")
    conv = nn.Conv2d(16, 32, 3, padding=1)
    info = profile_model(nn.Sequential(conv), torch.zeros(1, 16, 6, 6)).layers["0"]
    assert scheme.max_core_ranks(info) == (16, 32) and scheme.max_rank(info) == 32
    rank = scheme.rank_covering(info, 5, 3)
    assert scheme.core_ranks(info, rank)[0] >= 5 and scheme.core_ranks(info, rank - 1)[0] < 5


def test_tucker_error_falls_with_rank_and_hooi_is_no_worse_than_hosvd():
    conv, x = _conv_and_input()
    factorization = Tucker2().factorize(conv)
    errors = [_relative_error(factorization.build(r), conv, x) for r in (2, 5, 8, 10)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-5
    for (r_in, r_out), fit in factorization.fits.items():
        u_in, u_out = factorization._u_in[:, :r_in], factorization._u_out[:, :r_out]
        core = np.einsum("oc...,oa,cb->ab...", factorization.tensor, u_out, u_in)
        assert fit.relative_error <= factorization._error(core, u_in, u_out) + 1e-12


def test_tucker_falls_back_to_hosvd_when_tensorly_fails(monkeypatch):
    conv, x = _conv_and_input()

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(tucker_module, "partial_tucker", broken)
    factorization = Tucker2().factorize(conv)
    assert _relative_error(factorization.build(10), conv, x) < 1e-5
    factorization.build(4)
    assert {fit.method for fit in factorization.fits.values()} == {"hosvd"}


def test_tucker2_with_an_explicit_pair_builds_those_shapes_and_costs():
    conv, x = _conv_and_input()
    triple = tucker2(conv, ranks=(3, 7))
    assert [(m.in_channels, m.out_channels) for m in triple] == [(6, 3), (3, 7), (7, 10)]
    info = profile_model(nn.Sequential(conv), x).layers["0"]
    assert measure_cost(triple, x) == get_scheme("tucker").cost_for_core_ranks(info, 3, 7)
    full = tucker2(conv, ranks=(6, 10))
    torch.testing.assert_close(full(x), conv(x), atol=2e-5, rtol=1e-5)


def test_cp_decompose_layout_and_costs_match_the_scheme():
    conv, x = _conv_and_input()
    four = cp_decompose(conv, 6)
    assert [(m.out_channels, m.kernel_size, m.groups) for m in four] == [
        (6, (1, 1), 1),
        (6, (3, 1), 6),
        (6, (1, 3), 6),
        (10, (1, 1), 1),
    ]
    info = profile_model(nn.Sequential(conv), x).layers["0"]
    assert measure_cost(four, x) == get_scheme("cp").cost(info, 6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: tucker2(c, ranks=(7, 3)), r"'ranks' parameter of tucker2.*r_in <= 6.*\(7, 3\)"),
        (lambda c: tucker2(c, ranks=0), r"tucker2 must be an int in \[1, 10\]"),
        (lambda c: tucker2(c, ranks="4"), r"'ranks' parameter of tucker2"),
        (lambda c: cp_decompose(c, 55), r"'rank' parameter of cp_decompose.*\[1, 54\].*55"),
        (lambda c: cp_decompose(nn.Linear(3, 3), 2), r"'conv' parameter of cp_decompose"),
        (lambda c: tucker2(nn.Conv2d(4, 4, 3, groups=2), 2), r"'conv' parameter of tucker2"),
    ],
)
def test_functional_forms_reject_bad_ranks_and_layers(call, match):
    conv, _ = _conv_and_input()
    with pytest.raises(InvalidParameterError, match=match):
        call(conv)


@pytest.mark.parametrize(
    ("scheme_name", "layer", "reason"),
    [
        ("cp", nn.Conv2d(4, 4, 1), "size 1"),
        ("cp", nn.Conv2d(4, 4, 3, groups=4), "groups=4"),
        ("tucker", nn.Linear(4, 4), "needs a convolution"),
        ("tucker", nn.Conv2d(4, 4, 3, groups=2), "groups=2"),
    ],
)
def test_layers_the_decompositions_cannot_handle_are_skipped(scheme_name, layer, reason):
    x = torch.zeros(1, 4) if isinstance(layer, nn.Linear) else torch.zeros(1, 4, 6, 6)
    info = profile_model(nn.Sequential(layer), x).layers["0"]
    assert reason in get_scheme(scheme_name).unsupported_reason(info, "mac")


@pytest.mark.parametrize("scheme_name", ["tucker", "cp"])
def test_search_select_apply_with_the_decomposition_schemes(
    scheme_name, tiny_net, distance_evaluator
):
    from greedy_compress import apply_selection, build_eval_scores, count_macs, select

    x = torch.zeros(1, 1, 8, 8)
    scores = build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme=scheme_name,
        candidates=[0.3, 0.6],
        example_input=x,
        progress=False,
    )
    assert set(scores.layers) >= {"conv2"} and "depthwise" in scores.skipped
    selection = select(scores, target=0.8)
    small = apply_selection(tiny_net, selection)
    assert count_macs(small, x) / count_macs(tiny_net, x) == pytest.approx(
        selection.predicted_ratio
    )
    assert selection.predicted_ratio <= 0.8
