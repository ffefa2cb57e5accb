"""Shared fixtures: tiny models, a deterministic evaluator, and the trained demo model."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture(scope="session")
def trained_demo():
    """The demo CNN trained on the digits (once per session) and its data."""
    from greedy_compress.demo.run import trained_digits_cnn

    return trained_digits_cnn(progress=False)


class TinyNet(nn.Module):
    """Three convs (one 1x1, one depthwise) and a linear head on 1x8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pointwise = nn.Conv2d(16, 16, 1)
        self.head = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.pointwise(torch.relu(self.depthwise(x)))
        return self.head(x.flatten(1))


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


class OutputDistance:
    """A deterministic evaluator: minus the mean squared distance to the reference outputs.

    Counts its calls, so tests can check how many evaluations a build made.
    """

    name = "OutputDistance"

    def __init__(self, reference: nn.Module, inputs: torch.Tensor) -> None:
        self.inputs = inputs
        with torch.no_grad():
            self.expected = reference(inputs).clone()
        self.calls = 0

    def __call__(self, model: nn.Module) -> float:
        self.calls += 1
        with torch.no_grad():
            return -float((model(self.inputs) - self.expected).pow(2).mean())


@pytest.fixture
def distance_evaluator(tiny_net: TinyNet) -> OutputDistance:
    torch.manual_seed(1)
    return OutputDistance(tiny_net, torch.randn(16, 1, 8, 8))
