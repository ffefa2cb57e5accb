"""Pruners on parametrize masks: exact sparsities, AGP and Lottery Ticket with real
training, FPGM and the speedup, mask files, the custom interface and clear refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from evaluators import TopKAccuracy
from greedy_compress.errors import ExportError, GreedyCompressError, InvalidParameterError
from greedy_compress.export import (
    csr_bytes,
    export_model,
    load_sparse_state_dict,
    sparse_state_dict,
)
from greedy_compress.masks import (
    AGPPruner,
    FPGMPruner,
    LevelPruner,
    LotteryTicketPruner,
    Pruner,
    agp_sparsity,
    get_pruner,
    load_masks,
    magnitude_mask,
    register_pruner,
    speedup,
)
from greedy_compress.model.cost import count_macs


def _train(model: nn.Module, loader, pruner=None, *, epochs: int = 1, lr: float = 1e-3) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for epoch in range(epochs):
        if pruner is not None:
            pruner.update_epoch(epoch)
        for inputs, targets in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
            if pruner is not None:
                pruner.step()
    model.eval()


def test_level_sparsity_is_exact_per_op_with_overrides(trained_demo):
    model, _ = trained_demo
    pruner = LevelPruner(
        copy.deepcopy(model),
        [
            {"sparsity": 0.7, "op_types": ["default"]},
            {"sparsity": 0.3, "op_names": ["features.3"]},
            {"exclude": True, "op_names": ["classifier"]},
        ],
    )
    net = pruner.compress()
    expected = {"features.0": 0.7, "features.3": 0.3, "features.7": 0.7, "features.10": 0.7}
    for name, sparsity in expected.items():
        weight = net.get_submodule(name).weight
        assert int((weight == 0).sum()) == round(sparsity * weight.numel()), name
    assert not parametrize.is_parametrized(net.classifier)
    kept = net.features[3].weight[net.features[3].weight != 0].abs().min()
    original = model.features[3].weight.abs().flatten().sort().values
    assert kept >= original[round(0.3 * original.numel()) - 1]  # the smallest went


def test_agp_follows_the_cubic_schedule_and_reaches_each_ops_sparsity(trained_demo):
    model, data = trained_demo
    evaluate = TopKAccuracy(data.val_loader())
    net = copy.deepcopy(model)
    pruner = AGPPruner(
        net,
        [{"sparsity": 0.8, "op_types": ["Conv2d"]}, {"sparsity": 0.5, "op_names": ["classifier"]}],
        num_steps=2,
    )
    pruner.compress()
    seen = []
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    for epoch in range(3):
        pruner.update_epoch(epoch)
        seen.append(pruner.sparsities()["features.3"])
        net.train()
        for inputs, targets in data.train_loader():
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(inputs), targets).backward()
            optimizer.step()
            pruner.step()
    pruner.update_epoch(3)
    expected = [
        agp_sparsity(e, initial=0, final=0.8, start=0, steps=2, frequency=1) for e in range(3)
    ]
    assert seen == pytest.approx(expected, abs=1e-4) and expected[1] == pytest.approx(0.7)
    for name in pruner.sparsities():
        weight = net.get_submodule(name).weight
        target = 0.5 if name == "classifier" else 0.8
        assert int((weight == 0).sum()) == round(target * weight.numel()), name
    # Stated drop: at most 5 accuracy points below the dense model after 3 short epochs.
    assert evaluate(net.eval()) >= evaluate(model) - 0.05


def test_lottery_ticket_prunes_three_rounds_and_rewinds_to_the_initial_weights(trained_demo):
    _, data = trained_demo
    from greedy_compress.demo.models import DigitsCNN

    torch.manual_seed(0)
    net = DigitsCNN()
    initial = copy.deepcopy(net.state_dict())
    pruner = LotteryTicketPruner(net, [{"sparsity": 0.875, "op_types": ["default"]}])
    pruner.compress()
    loader = data.train_loader(batch_size=256)
    trained = None
    for round_ in pruner.rounds():
        for name in pruner.configs:
            layer = net.get_submodule(name)
            original = layer.parametrizations.weight.original
            assert torch.equal(original, initial[f"{name}.weight"]), (round_, name)
        if round_ == 0:  # the dense model first
            assert all(bool((m == 1).all()) for m in pruner.masks().values())
        else:  # pruned by the magnitudes just trained, then rewound to the initial weights
            mask = pruner.history[-1]["features.3.weight"]
            expected = magnitude_mask(trained, 1 - 0.125 ** (round_ / 3))
            assert torch.equal(mask, expected), round_
            assert torch.equal(net.features[3].weight, initial["features.3.weight"] * mask)
        assert torch.equal(net.features[1].running_mean, initial["features.1.running_mean"])
        _train(net, loader, epochs=1)
        trained = net.features[3].weight.detach().clone()
        assert not torch.equal(trained, initial["features.3.weight"])
    assert pruner.round == 3 and len(pruner.history) == 3
    sparsities = [s["features.3"] for s in pruner.round_sparsities()]
    assert sparsities == pytest.approx([0.5, 0.75, 0.875], abs=1e-3)
    for earlier, later in zip(pruner.history, pruner.history[1:], strict=False):
        for key in earlier:
            assert bool(((later[key] == 1) <= (earlier[key] == 1)).all()), key  # nested


def test_fpgm_masks_whole_filters_and_speedup_makes_a_smaller_equal_model(trained_demo, tmp_path):
    model, data = trained_demo
    net = copy.deepcopy(model)
    pruner = FPGMPruner(net, [{"sparsity": 0.5, "op_types": ["Conv2d"]}])
    pruner.compress()
    mask = pruner.masks()["features.3.weight"].flatten(1)
    assert set(mask.amax(dim=1).tolist()) == {0.0, 1.0} and bool(
        (mask.amin(1) == mask.amax(1)).all()
    )
    example = torch.zeros(1, 1, 8, 8)
    small = speedup(net, example)
    assert (small.features[0].out_channels, small.features[3].in_channels) == (16, 16)
    assert count_macs(small, example) < 0.35 * count_macs(model, example)
    x = data.val_images[:64]
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), atol=1e-5, rtol=1e-5)
    assert not any(parametrize.is_parametrized(m) for m in small.modules())
    export_model(net, mask_path=tmp_path / "masks.pt")
    fresh = load_masks(copy.deepcopy(model), tmp_path / "masks.pt")
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x))


def test_masked_weights_stay_zero_while_the_originals_train(trained_demo):
    model, data = trained_demo
    net = copy.deepcopy(model)
    LevelPruner(net, [{"sparsity": 0.5, "op_names": ["classifier"]}]).compress()
    before = net.classifier.parametrizations.weight.original.detach().clone()
    _train(net, data.train_loader(batch_size=512), epochs=1)
    assert int((net.classifier.weight == 0).sum()) == round(0.5 * net.classifier.weight.numel())
    assert not torch.equal(net.classifier.parametrizations.weight.original, before)


def test_a_custom_pruner_is_one_method_and_one_registry_line():
    @register_pruner
    class FirstRows(Pruner):
        name = "first_rows_for_test"

        def calc_mask(self, layer, config):
            mask = torch.ones_like(layer.weight)
            mask[: round(config["sparsity"] * mask.shape[0])] = 0
            return mask

    net = nn.Sequential(nn.Linear(4, 4))
    get_pruner("first_rows_for_test")(net, [{"sparsity": 0.5, "op_types": ["default"]}]).compress()
    assert net[0].weight[:2].abs().sum() == 0 and net[0].weight[2:].abs().sum() > 0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"sparsity": 1.2, "op_types": ["default"]}, r"'sparsity'.*\[0, 1\).*Got 1\.2"),
        ({"sparsity": 0.5, "op_types": ["BatchNorm2d"]}, r"op types it handles.*'BatchNorm2d'"),
        ({"sparsity": 0.5, "op_names": ["features.99"]}, r"names of modules of the model"),
        ({"op_types": ["default"]}, r"an entry with 'sparsity'"),
    ],
)
def test_bad_entries_are_refused_with_one_clear_error(entry, message):
    from greedy_compress.demo.models import DigitsCNN

    with pytest.raises(InvalidParameterError, match=message):
        LevelPruner(DigitsCNN(), [entry])


def test_sparse_export_is_smaller_loads_weights_only_and_matches_onnx(trained_demo, tmp_path):
    model, data = trained_demo
    net = LevelPruner(copy.deepcopy(model), [{"sparsity": 0.8, "op_types": ["default"]}])
    net = net.compress()
    result = export_model(
        net,
        sparse_path=tmp_path / "sparse.pt",
        onnx_path=tmp_path / "net.onnx",
        input_shape=(1, 1, 8, 8),
    )
    dense = export_model(model, model_path=tmp_path / "dense.pt").sizes["model"]
    # 80% zeros: nonzeros x (4 + 2) bytes + row starts, about 0.3 of the dense float32 file.
    assert result.sizes["sparse"] < 0.4 * dense
    assert result.max_difference is not None and result.max_difference < 1e-4
    state = sparse_state_dict(net)
    for name in ("features.3.weight", "classifier.weight"):
        weight = net.get_submodule(name.rpartition(".")[0]).weight
        stored = sum(state[name + s].nbytes for s in (".values", ".col_indices", ".crow_indices"))
        assert stored == csr_bytes(tuple(weight.shape), int((weight != 0).sum()))
    fresh = copy.deepcopy(model)
    fresh.load_state_dict(load_sparse_state_dict(tmp_path / "sparse.pt"))
    x = data.val_images[:64]
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x), atol=0, rtol=0)


def test_a_file_of_another_format_is_refused(tmp_path):
    torch.save({"weight": torch.ones(2)}, tmp_path / "plain.pt")
    with pytest.raises(ExportError, match="is not a greedy-compress/sparse-csr file"):
        load_sparse_state_dict(tmp_path / "plain.pt")


def test_a_mask_of_the_wrong_shape_is_refused():
    @register_pruner
    class WrongShape(Pruner):
        name = "wrong_shape_for_test"

        def calc_mask(self, layer, config):
            return torch.ones(3)

    net = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(GreedyCompressError, match=r"mask of shape \(3,\) for '0'"):
        WrongShape(net, [{"sparsity": 0.5, "op_types": ["default"]}]).compress()
