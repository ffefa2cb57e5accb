"""NNI's Lottery Ticket pruner (Frankle & Carbin 2019): prune, rewind, retrain, repeat."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import Interval, check
from greedy_compress.masks._base import Pruner, magnitude_mask, register_pruner
from greedy_compress.model.config_list import ConfigList
from greedy_compress.model.modules import weight_of

__all__ = ["LotteryTicketPruner"]


@register_pruner
class LotteryTicketPruner(Pruner):
    """Iterative magnitude pruning with rewinding to the initial weights.

    :meth:`compress` records the weights as they are (the "initial" ones) with all-ones
    masks. :meth:`rounds` yields round 0 (train the dense model inside the loop), then each
    of the ``prune_iterations`` rounds, which first prunes a fraction
    ``1 - (1 - sparsity)^(1/n)`` of the remaining weights of each op by magnitude of the
    weights the previous round trained, so that round ``r`` reaches
    ``1 - (1 - sparsity)^(r/n)`` and the last one the configured sparsity, then rewinds
    every surviving weight (and the rest of the model: biases, BatchNorm statistics) to
    its initial value. The masks of every pruning round are kept in :attr:`history`.

    Example:
        >>> import copy
        >>> pruner = LotteryTicketPruner(copy.deepcopy(model),
        ...                              [{"sparsity": 0.875, "op_types": ["Conv2d"]}])
        >>> net = pruner.compress()
        >>> for round_ in pruner.rounds():
        ...     pass  # train the model here
        >>> [round(s["features.3"], 3) for s in pruner.round_sparsities()]
        [0.5, 0.75, 0.875]
    """

    name = "lottery_ticket"

    def __init__(
        self, model: nn.Module, config_list: ConfigList, *, prune_iterations: int = 3
    ) -> None:
        super().__init__(model, config_list)
        self.prune_iterations = check(
            prune_iterations, Interval(int, 1, None), "prune_iterations", type(self).__name__
        )
        self.round = 0
        self.history: list[dict[str, torch.Tensor]] = []
        self._initial: dict[str, torch.Tensor] = {}

    def calc_mask(self, layer: nn.Module, config: dict[str, Any]) -> torch.Tensor:
        sparsity = 1 - (1 - float(config["sparsity"])) ** (self.round / self.prune_iterations)
        return magnitude_mask(weight_of(layer), sparsity)

    def compress(self) -> nn.Module:
        self.round = 0
        model = super().compress()  # round 0: nothing pruned
        self._initial = copy.deepcopy(model.state_dict())
        return model

    def prune_round(self) -> dict[str, torch.Tensor]:
        """Prune the next round's fraction and rewind to the initial weights; the masks."""
        self.round += 1
        self.update_masks()
        masks = self.masks()
        self.history.append(masks)
        rewound = {key: value for key, value in self._initial.items() if not key.endswith(".mask")}
        self.model.load_state_dict({**self.model.state_dict(), **rewound})
        return masks

    def rounds(self) -> Iterator[int]:
        """Round 0 (the dense model, as NNI's first iteration), then rounds 1 to
        ``prune_iterations``, each pruned by the magnitudes the previous round trained and
        rewound before it is yielded: the loop body trains the round's model."""
        if self.round == 0:
            yield 0
        while self.round < self.prune_iterations:
            self.prune_round()
            yield self.round

    def round_sparsities(self) -> list[dict[str, float]]:
        """Per round, each op's fraction of pruned weights."""
        return [
            {name: float((masks[f"{name}.weight"] == 0).double().mean()) for name in self.configs}
            for masks in self.history
        ]
