"""The ``sparsity`` scheme: memory cost against the exported file, the MAC refusal, the
knapsack trading sparsity against rank on a planted model, the export round trip."""

from __future__ import annotations

import copy
import io
import math
import zipfile

import pytest
import torch
from tiny import OutputDistance
from torch import nn

from greedy_compress import (
    KnapsackSolver,
    apply_selection,
    build_eval_scores,
    manual_selection,
    measure_cost,
    select,
)
from greedy_compress.demo.models import DigitsCNN
from greedy_compress.dictionary.mixed import combine_scores
from greedy_compress.errors import NoCompressibleLayerError
from greedy_compress.export import export_model, load_sparse_state_dict, sparse_state_dict
from greedy_compress.model.profile import profile_model
from greedy_compress.schemes import get_scheme

LAYERS = {
    "conv_bias": (nn.Conv2d(6, 10, 3, padding=1), (1, 6, 7, 7)),
    "depthwise": (nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False), (1, 6, 5, 5)),
    "conv1d": (nn.Conv1d(4, 9, 5), (2, 4, 12)),
    "linear": (nn.Linear(40, 30), (3, 40)),
    "linear_int32_columns": (nn.Linear(33000, 2), (1, 33000)),  # rows of > 32767 columns
}


def _layer(key):
    torch.manual_seed(0)
    module, shape = LAYERS[key]
    module = copy.deepcopy(module).eval()
    x = torch.randn(shape)
    return module, x, profile_model(nn.Sequential(module), x).layers["0"]


def _tensor_bytes(state):
    return sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))


@pytest.mark.parametrize("key", list(LAYERS))
def test_memory_cost_is_the_bytes_of_the_exported_tensors_at_every_density(key):
    scheme = get_scheme("sparsity")
    module, x, info = _layer(key)
    numel = module.weight.numel()
    index_bytes = 4 if numel // module.weight.shape[0] > 32767 else 2
    # CSR costs value + index bytes per kept weight against 4 dense, and is written only when
    # strictly smaller: the densest sparse count (~2/3 with int16 columns, ~1/2 with int32)
    # and both sides of it.
    overhead = 4 * (module.weight.shape[0] + 1) + 8 * module.weight.dim()
    last_sparse = (4 * numel - overhead - 1) // (4 + index_bytes)
    ranks = sorted({1, numel // 10, last_sparse - 1, last_sparse, last_sparse + 1, numel})
    for rank in ranks:
        built = scheme.compress(module, rank)
        state = sparse_state_dict(nn.Sequential(built))  # the tensors the sparse file holds
        predicted = scheme.cost(info, rank)
        assert predicted.bits == 8 * _tensor_bytes(state), rank
        assert measure_cost(built, x) == predicted, rank
        assert predicted.macs == info.cost.macs and predicted.bops == info.cost.bops
        sparse = "0.weight.values" in state
        assert sparse == (rank <= last_sparse), rank
        if sparse:
            assert state["0.weight.values"].numel() == rank
            assert state["0.weight.col_indices"].element_size() == index_bytes
        assert _tensor_bytes(state) <= _tensor_bytes(nn.Sequential(module).state_dict())


def test_the_built_layer_is_the_dense_layer_with_its_smallest_weights_zeroed():
    module, x, _ = _layer("conv_bias")
    built = get_scheme("sparsity").compress(module, 100)
    weight = module.weight.detach()
    threshold = weight.abs().flatten().sort(descending=True).values[99]  # distinct magnitudes
    masked = copy.deepcopy(module)
    with torch.no_grad():
        masked.weight.mul_((weight.abs() >= threshold).to(weight.dtype))
    assert int((built.weight != 0).sum()) == 100
    with torch.no_grad():
        torch.testing.assert_close(built(x), masked(x), atol=0, rtol=0)
    assert torch.equal(module.weight, weight)  # the argument is not modified


@pytest.mark.parametrize("cost", ["mac", "bops", "latency"])
def test_a_target_that_counts_macs_is_refused_with_the_reason(tiny_net, distance_evaluator, cost):
    with pytest.raises(NoCompressibleLayerError, match=r"keeps every dense MAC.*cost='memory'"):
        build_eval_scores(
            tiny_net,
            distance_evaluator,
            scheme="sparsity",
            cost=cost,
            input_shape=(1, 1, 8, 8),
            progress=False,
        )


class _Planted(nn.Module):
    """``low_rank`` is exactly rank 3 and ``sparse`` has 8% nonzeros: weight SVD compresses
    the first losslessly, sparsity the second, neither scheme both."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.low_rank, self.sparse = nn.Linear(48, 48), nn.Linear(48, 48)
        with torch.no_grad():
            left, right = torch.randn(48, 3, generator=generator), torch.randn(3, 48)
            self.low_rank.weight.copy_(left @ right / 6)
            keep = torch.randperm(48 * 48, generator=generator)[: round(0.08 * 48 * 48)]
            weight = torch.zeros(48 * 48)
            weight[keep] = torch.randn(keep.numel(), generator=generator)
            self.sparse.weight.copy_(weight.reshape(48, 48))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sparse(torch.relu(self.low_rank(x)))


def test_the_knapsack_trades_sparsity_in_one_layer_against_rank_in_another():
    torch.manual_seed(0)
    net = _Planted().eval()
    evaluator = OutputDistance(net, torch.randn(64, 48, generator=torch.Generator().manual_seed(1)))
    grid = [0.1, 0.15, 0.2, 0.3, 0.5, 0.75]
    single = {
        scheme: build_eval_scores(
            net,
            evaluator,
            scheme=scheme,
            cost="memory",
            candidates=grid,
            input_shape=(1, 48),
            progress=False,
        )
        for scheme in ("sparsity", "weight_svd")
    }
    mixed = combine_scores(list(single.values()))
    # Without the shared budget fill: its upgrades may lower the score in a mixed dictionary
    # (a costlier candidate of the other scheme is not a better one), which is not what
    # this test is about.
    knapsack = KnapsackSolver(fill_budget=False)
    target = 0.2
    chosen = select(mixed, target=target, solver=knapsack)
    assert {n: c.scheme for n, c in chosen.choices.items()} == {
        "low_rank": "weight_svd",
        "sparse": "sparsity",
    }
    assert chosen.predicted_ratio <= target
    scores = {
        name: evaluator(apply_selection(net, select(s, target=target, solver=knapsack)))
        for name, s in {**single, "mixed": mixed}.items()
    }
    assert scores["mixed"] > -1e-10  # both layers lossless
    assert max(scores["sparsity"], scores["weight_svd"]) < -1e-3
    small = apply_selection(net, chosen)
    x = torch.randn(2, 48)
    assert measure_cost(small, x).bits == pytest.approx(
        chosen.predicted_ratio * measure_cost(net, x).bits, rel=1e-12
    )


def test_export_round_trip_matches_the_predicted_bytes_and_the_outputs(trained_demo, tmp_path):
    model, data = trained_demo
    example = torch.zeros(1, 1, 8, 8)
    values = {"features.0": 0.9, "features.3": 0.3, "features.7": 0.1, "classifier": 0.2}
    scheme = get_scheme("sparsity")
    selection = manual_selection(model, values, scheme=scheme, example_input=example, cost="memory")
    small = apply_selection(model, selection, example_input=example)
    result = export_model(
        small,
        sparse_path=tmp_path / "s.pt",
        onnx_path=tmp_path / "s.onnx",
        input_shape=(1, 1, 8, 8),
    )
    assert result.max_difference is not None and result.max_difference < 1e-4
    # The predicted memory (parameters) + the buffers (batch-norm statistics) is every byte
    # of tensor data the file holds; the rest is torch.save's zip container.
    profile = profile_model(model, example)
    predicted_bits = profile.model_cost.bits + sum(
        scheme.cost(profile.layers[n], c.rank).bits - profile.layers[n].cost.bits
        for n, c in selection.choices.items()
    )
    assert predicted_bits == pytest.approx(
        selection.predicted_ratio * profile.model_cost.bits, rel=1e-12
    )
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    raw = torch.load(tmp_path / "s.pt", weights_only=True)
    stored = _tensor_bytes(raw)
    assert stored == predicted_bits // 8 + buffers
    with zipfile.ZipFile(tmp_path / "s.pt") as archive:  # one data record per tensor
        records = [i for i in archive.infolist() if "/data/" in i.filename]
        assert sum(i.file_size for i in records) == stored
    # The container: per tensor a zip record (local and central headers with its name, up to
    # 63 bytes of 64-byte alignment) and its pickled key and metadata, about 300 bytes.
    overhead = result.sizes["sparse"] - stored
    assert 0 < overhead <= 2048 + 400 * len(records), overhead
    fresh = DigitsCNN()
    fresh.load_state_dict(load_sparse_state_dict(tmp_path / "s.pt"))
    fresh.eval()
    x = data.val_images[:64]
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), small(x), atol=0, rtol=0)
    dense = io.BytesIO()
    torch.save(model.state_dict(), dense)
    assert result.sizes["sparse"] < 0.5 * len(dense.getvalue())
    kept = {n: int(small.get_submodule(n).weight.count_nonzero()) for n in values}
    assert kept == {n: c.rank for n, c in selection.choices.items()}
    assert math.isclose(selection.predicted_ratio, predicted_bits / profile.model_cost.bits)
