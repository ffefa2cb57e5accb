"""Evaluators that accumulate a metric batch by batch over a DataLoader.

An evaluator is any ``Callable[[nn.Module], float]`` (higher is better). The ones here
share a loop: eval mode and ``torch.inference_mode`` inside, the model's train/eval state
restored afterwards, and a metric built from three methods (``reset``, ``update``,
``compute``) so a caller can also feed batches itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["BatchEvaluator", "split_batch"]


def split_batch(batch: Any) -> tuple[Any, torch.Tensor]:
    """Return (inputs, targets) from a ``(inputs, targets)`` pair or a dict with those keys."""
    if isinstance(batch, dict):
        return batch["inputs"], batch["targets"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(
        "A batch must be an (inputs, targets) pair or a dict with 'inputs' and 'targets'. "
        f"Got {type(batch).__name__} instead."
    )


class BatchEvaluator(ABC):
    """Base of evaluators over a loader of ``(inputs, targets)`` batches.

    Args:
        loader: any iterable of batches, e.g. a ``torch.utils.data.DataLoader``.
        max_batches: evaluate on the first ``max_batches`` batches only (None = all).
        device: where to move inputs; default: the device of the model's first parameter.
    """

    def __init__(
        self,
        loader: Iterable[Any],
        *,
        max_batches: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if max_batches is not None and (
            isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
        ):
            raise ValueError(
                f"The 'max_batches' parameter of {type(self).__name__} must be an int >= 1 "
                f"or None. Got {max_batches!r} instead."
            )
        self.loader = loader
        self.max_batches = max_batches
        self.device = None if device is None else torch.device(device)

    @property
    def name(self) -> str:
        """Identifies the evaluator in an eval-score dictionary's fingerprint."""
        return f"{type(self).__name__}(max_batches={self.max_batches})"

    @abstractmethod
    def reset(self) -> None:
        """Forget all accumulated batches."""

    @abstractmethod
    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Accumulate one batch of model outputs and targets."""

    @abstractmethod
    def compute(self) -> float:
        """The metric over all batches since :meth:`reset`; higher is better."""

    def _device_for(self, model: nn.Module) -> torch.device:
        if self.device is not None:
            return self.device
        first = next(model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def batches(self, model: nn.Module) -> Iterator[tuple[Any, torch.Tensor]]:
        """Yield the ``(inputs, targets)`` this evaluator scores ``model`` on, in order.

        At most ``max_batches`` batches; inputs are moved to the evaluation device. A caller
        that runs the model itself (e.g. only part of it) feeds ``update`` from these.

        Example:
            >>> from evaluators import TopKAccuracy
            >>> loader = [(torch.zeros(2, 3), torch.tensor([0, 1]))] * 3
            >>> len(list(TopKAccuracy(loader, max_batches=2).batches(nn.Identity())))
            2
        """
        device = self._device_for(model)
        for index, batch in enumerate(self.loader):
            if self.max_batches is not None and index >= self.max_batches:
                break
            inputs, targets = split_batch(batch)
            yield inputs.to(device), targets

    def __call__(self, model: nn.Module) -> float:
        """Evaluate ``model`` on the loader; its train/eval state is restored afterwards."""
        was_training = model.training
        model.eval()
        self.reset()
        try:
            with torch.inference_mode():
                for inputs, targets in self.batches(model):
                    outputs = model(inputs)
                    self.update(outputs, targets.to(outputs.device))
        finally:
            model.train(was_training)
        return self.compute()
