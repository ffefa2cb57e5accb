"""Trained benchmark models, cached like the demo's, and small timing helpers."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from greedy_compress.demo.data import DigitsData, load_digits_data
from greedy_compress.demo.models import TinyResNet
from greedy_compress.demo.run import cache_dir, save_weights, trained_digits_cnn
from greedy_compress.demo.training import train_classifier

__all__ = [
    "BENCHMARK_MODELS",
    "CORRUPTED_MODELS",
    "corrupt_digits",
    "median_time",
    "trained_cached",
    "trained_corrupted_cnn",
    "trained_corrupted_resnet",
    "trained_resnet",
]


def trained_cached(
    model: nn.Module, data: DigitsData, path: Path, epochs: int
) -> tuple[nn.Module, DigitsData]:
    """``model`` trained on ``data`` for ``epochs`` (seeded by the caller), or its weights
    from ``path`` when a previous run cached them there; returned in eval mode."""
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        train_classifier(model, data.train_loader(), epochs=epochs, progress=True)
        save_weights(model, path)
    return model.eval(), data


def trained_resnet() -> tuple[nn.Module, DigitsData]:
    """TinyResNet on the digits upscaled to 16x16, trained once (seeded) and cached."""
    data = load_digits_data(size=16)
    torch.manual_seed(0)
    model = TinyResNet(in_channels=1, width=16, blocks=2)
    return trained_cached(model, data, cache_dir() / "tiny_resnet-w16-b2-s16-e12-seed0-v1.pt", 12)


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


def corrupt_digits(
    data: DigitsData,
    *,
    noise: float = 0.2,
    rotation: float = 15.0,
    scale: float = 0.15,
    shift: float = 1.0,
    seed: int = 0,
) -> DigitsData:
    """A harder copy of the digits, the one corruption every benchmark uses: each image
    rotated (up to ``rotation`` degrees either way), scaled (``1 - scale`` to ``1 + scale``)
    and shifted (up to ``shift`` pixels) at random, then Gaussian noise of std ``noise``;
    all seeded, generated in code (nothing downloaded). The defaults are
    ``bench_quantization``'s; ``bench_data_aware`` uses them too (a uniform 0.5 compression
    costs its models far more than 5 points of top-1)."""
    generator = torch.Generator().manual_seed(seed)

    def corrupt(images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotation)
        zoom = (1 - scale) + 2 * scale * torch.rand(n, generator=generator)
        moved_by = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * shift / images.shape[-1])
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [
                torch.stack([cos, -sin, moved_by[:, 0]], 1),
                torch.stack([sin, cos, moved_by[:, 1]], 1),
            ],
            1,
        )
        grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
        moved = nn.functional.grid_sample(images, grid, align_corners=False)
        return moved + noise * torch.randn(moved.shape, generator=generator)

    return DigitsData(
        corrupt(data.train_images), data.train_labels, corrupt(data.val_images), data.val_labels
    )


def trained_corrupted_cnn(
    *, width: int = 16, epochs: int = 20, size: int = 8
) -> tuple[nn.Module, DigitsData]:
    """A DigitsCNN trained on :func:`corrupt_digits` (seeded, cached like the others)."""
    from greedy_compress.demo.models import DigitsCNN

    data = corrupt_digits(load_digits_data(size=size))
    torch.manual_seed(0)
    model = DigitsCNN(width=width)
    suffix = "" if size == 8 else f"-s{size}"
    path = cache_dir() / f"digits_cnn-corrupted-w{width}-e{epochs}{suffix}-seed0-v1.pt"
    return trained_cached(model, data, path, epochs)


def trained_corrupted_resnet(*, epochs: int = 12) -> tuple[nn.Module, DigitsData]:
    """TinyResNet (width 16, two blocks per stage) trained on :func:`corrupt_digits` of the
    16x16 digits (seeded, cached like the others)."""
    data = corrupt_digits(load_digits_data(size=16))
    torch.manual_seed(0)
    model = TinyResNet(in_channels=1, width=16, blocks=2)
    path = cache_dir() / f"tiny_resnet-corrupted-w16-b2-s16-e{epochs}-seed0-v1.pt"
    return trained_cached(model, data, path, epochs)


CORRUPTED_MODELS: dict[str, Callable[[], tuple[nn.Module, DigitsData]]] = {
    "digits_cnn": lambda: trained_corrupted_cnn(width=32, epochs=15),
    "tiny_resnet": trained_corrupted_resnet,
}
