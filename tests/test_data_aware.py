"""Data-aware decompositions: whitened SVDs and Tucker, statistics-based channel pruning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import greedy_compress as gc
from greedy_compress.errors import GreedyCompressError, InvalidParameterError
from greedy_compress.model.statistics import Calibration
from greedy_compress.schemes import (
    CP,
    ChannelPruning,
    SpatialSVD,
    Tucker2,
    WeightSVD,
    build_compressed,
)


def correlated(count: int, channels: int, size: int | None = 8, seed: int = 0) -> torch.Tensor:
    """Inputs whose channels (and pixels) are strongly correlated, with a mean offset."""
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(channels, channels, generator=generator)
    if size is None:
        return torch.randn(count, channels, generator=generator) @ mix + 0.5
    noise = torch.randn(count, channels, size, size, generator=generator)
    mixed = torch.einsum("nchw,cd->ndhw", noise, mix)
    return nn.functional.avg_pool2d(mixed, 3, 1, 1) * 3 + 0.5


def output_error(layer: nn.Module, other: nn.Module, inputs: torch.Tensor) -> float:
    """Mean squared output change per output vector, measured."""
    with torch.no_grad():
        diff = (other(inputs) - layer(inputs)).double()
    if diff.dim() > 2:
        diff = diff.movedim(1, -1)
    return float(diff.reshape(-1, diff.shape[-1]).pow(2).sum(1).mean())


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_whitened_svd_output_error_is_the_tail_sum_of_squared_singular_values(kind):
    if kind == "linear":
        layer, inputs = nn.Linear(12, 9), correlated(400, 12, size=None)
    else:
        layer, inputs = nn.Conv2d(4, 10, 3, padding=1), correlated(40, 4)
    model = nn.Sequential(layer).eval()
    calibration = Calibration(inputs, num_samples=len(inputs))
    scheme = WeightSVD(data_aware=True, data=calibration, damping=1e-10)
    scheme.prepare(model)
    factorization = scheme.factorize_in(model, "0")
    singular = factorization.svd.singular_values  # type: ignore[attr-defined]
    for rank in (1, 3, 6):
        measured = output_error(layer, factorization.build(rank), inputs)
        tail = float(singular[rank:].pow(2).sum())
        assert measured == pytest.approx(tail, rel=1e-6)
        moment = scheme.moment("0")
        assert factorization.output_error(rank, moment, layer) == pytest.approx(tail)
    top = min(layer.weight.shape[0], layer.weight[0].numel())
    assert output_error(layer, factorization.build(top), inputs) < 1e-9  # exact at full rank


@pytest.mark.parametrize(
    ("cls", "rank"), [(WeightSVD, 4), (SpatialSVD, 6), (Tucker2, 4)], ids=lambda v: str(v)
)
def test_data_aware_variant_has_lower_output_error_at_equal_rank(cls, rank):
    ratios = []
    for seed in range(5):  # five random layers and input mixes, seeded
        torch.manual_seed(seed)
        conv, inputs = nn.Conv2d(6, 8, 3, padding=1), correlated(48, 6, seed=seed)
        model = nn.Sequential(conv).eval()
        aware = cls(data_aware=True, data=inputs)
        aware.prepare(model)
        plain_error = output_error(conv, cls().factorize(conv).build(rank), inputs)
        aware_error = output_error(conv, aware.factorize_in(model, "0").build(rank), inputs)
        ratios.append(aware_error / plain_error)
    assert max(ratios) < 1.0  # lower on every one
    assert sum(ratios) / len(ratios) < 0.7  # and clearly lower on average


@pytest.mark.parametrize("cls", [WeightSVD, SpatialSVD, Tucker2, CP])
def test_proxy_output_error_equals_the_measured_one(cls):
    conv, inputs = nn.Conv2d(4, 6, 3, padding=1), correlated(30, 4)
    model = nn.Sequential(conv).eval()
    moment = Calibration(inputs, num_samples=30).moments(model)["0"]
    factorization = cls().factorize(conv)
    for rank in (2, 3):
        predicted = factorization.output_error(rank, moment, conv)
        # the moment covers the zero padding, like the layer's own patches
        assert predicted == pytest.approx(output_error(conv, factorization.build(rank), inputs))


def test_channel_pruning_from_statistics_equals_the_fit_on_every_sampled_row(trained_demo):
    model, data = trained_demo
    example = torch.zeros(1, 1, 8, 8)
    built = {}
    for statistics in (False, True):
        scheme = ChannelPruning(
            data=data.train_loader(),
            num_reconstruction_samples=64,
            max_rows=10**9,
            statistics=statistics,
        )
        built[statistics] = build_compressed(
            model, {"features.10": (scheme, 40)}, example_input=example
        )
    torch.testing.assert_close(
        built[True].features[10].weight, built[False].features[10].weight, atol=1e-5, rtol=1e-4
    )
    assert ChannelPruning(statistics=True).with_data(data.train_loader()).settings()["statistics"]
    assert "statistics" not in ChannelPruning(data=data.train_loader()).settings()


def test_data_aware_needs_data_before_any_work():
    scheme = SpatialSVD(data_aware=True)
    assert scheme.uses_data
    with pytest.raises(InvalidParameterError, match="'data' parameter of SpatialSVD"):
        scheme.check_ready()
    calls = []

    def evaluator(model: nn.Module) -> float:
        calls.append(1)
        return 1.0

    with pytest.raises(InvalidParameterError, match="data_aware=True"):
        gc.build_eval_scores(
            nn.Sequential(nn.Conv2d(2, 4, 3)),
            evaluator,
            scheme=scheme,
            input_shape=(1, 2, 6, 6),
            progress=False,
        )
    assert calls == []
    given = scheme.with_data([torch.zeros(2, 2, 6, 6)])
    given.check_ready()  # the copy has data; the original has none still
    assert scheme.calibration is None
    with pytest.raises(GreedyCompressError, match="factorize_in"):
        given.factorize(nn.Conv2d(2, 4, 3))
    with pytest.raises(GreedyCompressError, match="call prepare"):
        given.factorize_in(nn.Sequential(nn.Conv2d(2, 4, 3)), "0")


def test_a_data_aware_dictionary_records_it_and_its_selection_refuses_the_plain_scheme(
    trained_demo,
):
    model, data = trained_demo
    from evaluators import TopKAccuracy

    evaluator = TopKAccuracy(data.val_loader(), max_batches=1)
    options = dict(candidates=[0.3, 0.6], input_shape=(1, 1, 8, 8), progress=False)
    plain = gc.build_eval_scores(model, evaluator, scheme="weight_svd", **options)
    assert "scheme_settings" not in plain.fingerprint  # plain files are as before
    scheme = WeightSVD(data_aware=True, data=data.train_loader())
    aware = gc.build_eval_scores(model, evaluator, scheme=scheme, **options)
    settings = aware.fingerprint["scheme_settings"]
    assert settings["data_aware"] is True and settings["num_samples"] == 128
    selection = gc.select(aware, target=0.6)
    assert selection.details["scheme_settings"] == settings  # all of them, checked on build
    with pytest.raises(GreedyCompressError, match="scored with data-aware weight_svd"):
        gc.apply_selection(model, selection)
    small = gc.apply_selection(model, selection, scheme=scheme)
    best = max(aware.layers["classifier"].entries, key=lambda e: e.kept_ratio)
    assert small is not model and best.score is not None
