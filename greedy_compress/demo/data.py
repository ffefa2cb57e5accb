"""scikit-learn's bundled 8x8 digit images as torch data: no download, fixed split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["DigitsData", "load_digits_data"]


@dataclass(frozen=True)
class DigitsData:
    """Train and validation tensors: images (N, 1, size, size) in [0, 1], labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor

    def train_loader(self, batch_size: int = 64, seed: int = 0) -> DataLoader:
        """Shuffled training batches (shuffling seeded)."""
        generator = torch.Generator().manual_seed(seed)
        dataset = TensorDataset(self.train_images, self.train_labels)
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)

    def val_loader(self, batch_size: int = 256) -> DataLoader:
        """Validation batches in a fixed order."""
        return DataLoader(TensorDataset(self.val_images, self.val_labels), batch_size=batch_size)


def load_digits_data(*, size: int = 8, val_fraction: float = 0.2, seed: int = 0) -> DigitsData:
    """The 1,797 digit images, split by a seeded permutation, optionally resized to ``size``.

    Example:
        >>> data = load_digits_data()
        >>> tuple(data.val_images.shape)
        (359, 1, 8, 8)
    """
    from sklearn.datasets import load_digits  # ships the images; nothing is downloaded

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    if size != 8:
        images = functional.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False
        )
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    n_val = round(val_fraction * len(labels))
    val, train = order[:n_val], order[n_val:]
    return DigitsData(images[train], labels[train], images[val], labels[val])
