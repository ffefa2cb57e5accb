"""Top-k classification accuracy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from evaluators._base import BatchEvaluator

__all__ = ["TopKAccuracy"]


class TopKAccuracy(BatchEvaluator):
    """Fraction of samples whose target is among the ``k`` highest-scoring classes.

    Example:
        >>> loader = [(torch.eye(3), torch.tensor([0, 1, 1]))]
        >>> TopKAccuracy(loader)(torch.nn.Identity())
        0.6666666666666666
    """

    def __init__(
        self,
        loader: Iterable[Any],
        *,
        k: int = 1,
        max_batches: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(loader, max_batches=max_batches, device=device)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(
                f"The 'k' parameter of TopKAccuracy must be an int >= 1. Got {k!r} instead."
            )
        self.k = k
        self.reset()

    @property
    def name(self) -> str:
        return f"TopKAccuracy(k={self.k}, max_batches={self.max_batches})"

    def reset(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        k = min(self.k, outputs.shape[-1])
        top = outputs.topk(k, dim=-1).indices
        self.correct += int((top == targets.unsqueeze(-1)).any(dim=-1).sum())
        self.total += targets.numel()

    def compute(self) -> float:
        if self.total == 0:
            raise ValueError("TopKAccuracy saw no samples: the loader is empty.")
        return self.correct / self.total
