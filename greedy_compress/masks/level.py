"""NNI's Level pruner: unstructured magnitude pruning to each op's configured sparsity."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from greedy_compress.masks._base import Pruner, magnitude_mask, register_pruner
from greedy_compress.model.modules import weight_of

__all__ = ["LevelPruner"]


@register_pruner
class LevelPruner(Pruner):
    """Zero exactly ``round(sparsity * numel)`` smallest-magnitude weights of each op.

    Example:
        >>> import copy
        >>> pruner = LevelPruner(copy.deepcopy(model), [{"sparsity": 0.8, "op_types": ["default"]}])
        >>> net = pruner.compress()
        >>> {round(s, 2) for s in pruner.sparsities().values()}
        {0.8}
    """

    name = "level"

    def calc_mask(self, layer: nn.Module, config: dict[str, Any]) -> torch.Tensor:
        return magnitude_mask(weight_of(layer), float(config["sparsity"]))
