"""Negative mean loss, so that higher is better like every other evaluator."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.nn import functional

from evaluators._base import BatchEvaluator

__all__ = ["NegativeLoss"]


class NegativeLoss(BatchEvaluator):
    """Minus the sample-weighted mean of ``loss_fn(outputs, targets)`` over the loader.

    ``loss_fn`` must return the mean over its batch (PyTorch's default reduction).

    Example:
        >>> loader = [(torch.zeros(2, 3), torch.tensor([0, 1]))]
        >>> round(NegativeLoss(loader)(torch.nn.Identity()), 4)  # -log(3)
        -1.0986
    """

    def __init__(
        self,
        loader: Iterable[Any],
        *,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = functional.cross_entropy,
        max_batches: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(loader, max_batches=max_batches, device=device)
        self.loss_fn = loss_fn
        self.reset()

    @property
    def name(self) -> str:
        loss_name = getattr(self.loss_fn, "__name__", type(self.loss_fn).__name__)
        return f"NegativeLoss(loss_fn={loss_name}, max_batches={self.max_batches})"

    def reset(self) -> None:
        self.total_loss = 0.0
        self.count = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        size = targets.shape[0]
        self.total_loss += float(self.loss_fn(outputs, targets)) * size
        self.count += size

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError("NegativeLoss saw no samples: the loader is empty.")
        return -self.total_loss / self.count
