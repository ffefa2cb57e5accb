"""A tiny network with a 1x1 conv and a depthwise conv, and a deterministic evaluator."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["OutputDistance", "TinyNet"]


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
