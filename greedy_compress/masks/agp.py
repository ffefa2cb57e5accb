"""NNI's AGP pruner (Zhu & Gupta 2017): sparsity grows along a cubic schedule while the user
trains."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import Interval, bad_parameter, check
from greedy_compress.masks._base import SPARSITY, Pruner, magnitude_mask, register_pruner
from greedy_compress.model.config_list import ConfigList
from greedy_compress.model.modules import weight_of

__all__ = ["AGPPruner", "agp_sparsity"]


def agp_sparsity(
    step: int, *, initial: float, final: float, start: int, steps: int, frequency: int
) -> float:
    """Zhu & Gupta's ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n dt))^3``, the schedule
    advancing only every ``frequency`` steps and holding ``s_f`` after ``start + steps *
    frequency``.

    Example:
        >>> [round(agp_sparsity(t, initial=0.0, final=0.8, start=0, steps=4, frequency=1), 4)
        ...  for t in range(6)]
        [0.0, 0.4625, 0.7, 0.7875, 0.8, 0.8]
    """
    if step <= start:
        return initial
    done = min(steps, (step - start) // frequency)
    return final + (initial - final) * (1 - done / steps) ** 3


@register_pruner
class AGPPruner(Pruner):
    """Magnitude masks whose sparsity rises from ``initial_sparsity`` to each op's
    configured ``sparsity`` over ``num_steps`` updates, one every ``frequency`` epochs from
    ``start_epoch``, driven by :meth:`update_epoch`. Pruned weights stay pruned (the masked
    weights are the smallest from then on).

    Example:
        >>> import copy
        >>> pruner = AGPPruner(copy.deepcopy(model), [{"sparsity": 0.5, "op_types": ["Conv2d"]}],
        ...                    num_steps=2)
        >>> net = pruner.compress()
        >>> for epoch in range(3):
        ...     pruner.update_epoch(epoch)  # then train an epoch
        >>> {round(s, 3) for s in pruner.sparsities().values()}
        {0.5}
    """

    name = "agp"

    def __init__(
        self,
        model: nn.Module,
        config_list: ConfigList,
        *,
        initial_sparsity: float = 0.0,
        start_epoch: int = 0,
        num_steps: int = 3,
        frequency: int = 1,
    ) -> None:
        super().__init__(model, config_list)
        owner = type(self).__name__
        self.initial_sparsity = check(initial_sparsity, SPARSITY, "initial_sparsity", owner)
        self.start_epoch = check(start_epoch, Interval(int, 0, None), "start_epoch", owner)
        self.num_steps = check(num_steps, Interval(int, 1, None), "num_steps", owner)
        self.frequency = check(frequency, Interval(int, 1, None), "frequency", owner)
        too_low = [n for n, c in self.configs.items() if c["sparsity"] < self.initial_sparsity]
        if too_low:
            raise bad_parameter(
                "initial_sparsity",
                owner,
                "at most every op's final sparsity",
                f"{initial_sparsity} (ops {too_low})",
            )

    def target(self, config: dict[str, Any]) -> float:
        """The sparsity the schedule asks of an op at the current epoch."""
        return agp_sparsity(
            self.epoch,
            initial=self.initial_sparsity,
            final=float(config["sparsity"]),
            start=self.start_epoch,
            steps=self.num_steps,
            frequency=self.frequency,
        )

    def calc_mask(self, layer: nn.Module, config: dict[str, Any]) -> torch.Tensor:
        return magnitude_mask(weight_of(layer), self.target(config))

    def update_epoch(self, epoch: int) -> None:
        super().update_epoch(epoch)
        if self.compressed:
            self.update_masks()
