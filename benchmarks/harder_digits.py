"""A harder variant of the bundled digits, where compression costs accuracy, and the
reference models trained on it (cached like the demo's).

The clean digits are so easy that a model compressed to half its MACs loses almost nothing;
the benchmarks of data-aware compression need data where it does. Every image is corrupted
in code, seeded: a random affine map (rotation, scale, shear, translation), a random
contrast and brightness change, then Gaussian noise. The training split gets several
corrupted copies of each image (fixed, so training is reproducible), the validation split
one. Calibrated so that every layer at the same 0.5 MAC ratio (plain spatial SVD) costs the
trained models clearly more than 5 points of top-1.
"""

from __future__ import annotations

import math

import torch
from common import trained_cached
from torch import nn
from torch.nn import functional

from greedy_compress.demo.data import DigitsData, load_digits_data
from greedy_compress.demo.models import DigitsCNN, TinyResNet
from greedy_compress.demo.run import cache_dir

__all__ = ["HARDER_MODELS", "corrupt", "harder_digits"]

NOISE = 0.15  # std of the Gaussian noise, images in [0, 1]
ROTATION = 15.0  # degrees, either way
SCALE = 0.15  # zoom in [1 - SCALE, 1 + SCALE]
SHEAR = 0.1
SHIFT = 0.1  # fraction of the image, either way
COPIES = 2  # corrupted copies of each training image


def corrupt(images: torch.Tensor, *, seed: int) -> torch.Tensor:
    """``images`` (N, 1, H, W) in [0, 1] under random affine maps, contrast and noise.

    Example:
        >>> x = torch.rand(4, 1, 8, 8)
        >>> bool((corrupt(x, seed=0) == corrupt(x, seed=0)).all()), corrupt(x, seed=0).shape
        (True, torch.Size([4, 1, 8, 8]))
    """
    generator = torch.Generator().manual_seed(seed)
    count = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    angle = uniform(-ROTATION, ROTATION) * math.pi / 180
    zoom = uniform(1 - SCALE, 1 + SCALE)
    shear = uniform(-SHEAR, SHEAR)
    shift = torch.stack([uniform(-SHIFT, SHIFT), uniform(-SHIFT, SHIFT)], dim=1) * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)],
        dim=1,
    )
    grid = functional.affine_grid(theta, list(images.shape), align_corners=False)
    moved = functional.grid_sample(images, grid, align_corners=False, padding_mode="zeros")
    contrast = uniform(0.6, 1.2).view(-1, 1, 1, 1)
    brightness = uniform(-0.1, 0.2).view(-1, 1, 1, 1)
    noise = NOISE * torch.randn(moved.shape, generator=generator)
    return (moved * contrast + brightness + noise).clamp(-0.5, 1.5)


def harder_digits(*, size: int = 8, seed: int = 0) -> DigitsData:
    """The digits split as the demo's, every image corrupted (training: ``COPIES`` each)."""
    clean = load_digits_data(size=size)
    train = torch.cat([corrupt(clean.train_images, seed=seed + 1 + c) for c in range(COPIES)])
    labels = clean.train_labels.repeat(COPIES)
    return DigitsData(train, labels, corrupt(clean.val_images, seed=seed), clean.val_labels)


def _trained(model: nn.Module, name: str, size: int, epochs: int) -> tuple[nn.Module, DigitsData]:
    data = harder_digits(size=size)
    path = cache_dir() / f"harder-{name}-s{size}-e{epochs}-n{NOISE}-r{ROTATION}-c{COPIES}-v1.pt"
    return trained_cached(model, data, path, epochs)


def harder_digits_cnn() -> tuple[nn.Module, DigitsData]:
    """The demo CNN trained on the harder 8x8 digits."""
    torch.manual_seed(0)
    return _trained(DigitsCNN(), "digits_cnn-w32", 8, 15)


def harder_resnet() -> tuple[nn.Module, DigitsData]:
    """TinyResNet (width 16, two blocks per stage) trained on the harder 16x16 digits."""
    torch.manual_seed(0)
    return _trained(TinyResNet(in_channels=1, width=16, blocks=2), "tiny_resnet-w16-b2", 16, 12)


HARDER_MODELS = {"digits_cnn": harder_digits_cnn, "tiny_resnet": harder_resnet}
