"""Shared fixtures: tiny models, a deterministic evaluator, and the trained demo model."""

from __future__ import annotations

import pytest
import torch
from tiny import OutputDistance, TinyNet


@pytest.fixture(scope="session")
def trained_demo():
    """The demo CNN trained on the digits (once per session) and its data."""
    from greedy_compress.demo.run import trained_digits_cnn

    return trained_digits_cnn(progress=False)


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def distance_evaluator(tiny_net: TinyNet) -> OutputDistance:
    torch.manual_seed(1)
    return OutputDistance(tiny_net, torch.randn(16, 1, 8, 8))
