"""Trained benchmark models, cached like the demo's, and small timing helpers."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from greedy_compress.demo.data import DigitsData, load_digits_data
from greedy_compress.demo.models import TinyResNet
from greedy_compress.demo.run import cache_dir, save_weights, trained_digits_cnn
from greedy_compress.demo.training import train_classifier

__all__ = ["BENCHMARK_MODELS", "median_time", "trained_resnet"]


def trained_resnet() -> tuple[nn.Module, DigitsData]:
    """TinyResNet on the digits upscaled to 16x16, trained once (seeded) and cached."""
    data = load_digits_data(size=16)
    torch.manual_seed(0)
    model = TinyResNet(in_channels=1, width=16, blocks=2)
    path = cache_dir() / "tiny_resnet-w16-b2-s16-e12-seed0-v1.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        train_classifier(model, data.train_loader(), epochs=12, progress=True)
        save_weights(model, path)
    return model.eval(), data


BENCHMARK_MODELS: dict[str, Callable[[], tuple[nn.Module, DigitsData]]] = {
    "digits_cnn": lambda: trained_digits_cnn(progress=True),
    "tiny_resnet": trained_resnet,
}


def median_time(function: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
