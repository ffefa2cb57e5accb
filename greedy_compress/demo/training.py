"""A plain, seeded training loop for the reference models (demo, tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from greedy_compress._util.progress import progress_bar

__all__ = ["train_classifier"]


def train_classifier(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    epochs: int,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """Train ``model`` in place with Adam and cross-entropy (cosine learning rate); returns it.

    Example:
        >>> trained = train_classifier(DigitsCNN(), data.train_loader(), epochs=4)
        >>> TopKAccuracy(data.val_loader())(trained) > 0.9
        True
    """
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    model.train()
    with progress_bar(total=epochs, desc="training", enabled=progress, unit="epoch") as bar:
        for _ in range(epochs):
            for inputs, targets in loader:
                optimizer.zero_grad(set_to_none=True)
                functional.cross_entropy(model(inputs), targets).backward()
                optimizer.step()
            schedule.step()
            bar.update(1)
    model.eval()
    return model
