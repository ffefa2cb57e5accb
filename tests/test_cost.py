from __future__ import annotations

import pytest
import torch
from torch import nn

from greedy_compress.errors import InvalidParameterError
from greedy_compress.model.cost import (
    Cost,
    check_metric,
    count_macs,
    float32_reason,
    measure_cost,
)


def test_conv_macs_match_the_textbook_formula():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    x = torch.randn(3, 4, 9, 9)
    out_h = out_w = 5
    assert count_macs(conv, x) == 3 * out_h * out_w * 6 * (4 // 2) * 9


def test_linear_macs_count_every_leading_position():
    assert count_macs(nn.Linear(5, 7), torch.randn(2, 3, 5)) == 2 * 3 * 5 * 7


def test_measure_cost_counts_parameters_once_and_restores_training_mode():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, shared).train()
    cost = measure_cost(model, torch.randn(1, 4))
    assert cost == Cost(macs=32, params=20)
    assert model.training


def test_cost_arithmetic_and_metric_lookup():
    a, b = Cost(10, 3), Cost(4, 1)
    assert a + b == Cost(14, 4) and a - b == Cost(6, 2)
    assert a.get("mac") == 10 and a.get("memory") == 3 * 32 and a.get("bops") == 10 * 32 * 32
    assert Cost.from_dict(a.to_dict()) == a
    quantized = Cost(10, 3, bits=3 * 4, bops=10 * 4 * 8)
    assert (quantized + b).get("memory") == 12 + 32 and (quantized - b).get("bops") == 320 - 4096


def test_a_cost_written_before_bits_and_bops_reads_as_float32():
    assert Cost.from_dict({"macs": 10, "params": 3}) == Cost(10, 3, bits=96, bops=10240)


def test_memory_is_the_real_parameter_storage():
    """float64 parameters take 64 bits each; the float32-only pricing refuses them."""
    layer = nn.Linear(4, 3).double()
    cost = measure_cost(layer, torch.zeros(1, 4, dtype=torch.float64))
    assert cost.bits == 15 * 64 and cost.bytes == 15 * 8
    assert "not float32 (64 bits each)" in str(float32_reason(cost, "memory"))
    assert float32_reason(cost, "mac") is None
    assert float32_reason(measure_cost(nn.Linear(4, 3), torch.zeros(1, 4)), "bops") is None


def test_unknown_metric_lists_the_valid_ones():
    with pytest.raises(InvalidParameterError, match=r"'cost'.*'mac', 'memory'.*'flops'"):
        check_metric("flops", "compress")
