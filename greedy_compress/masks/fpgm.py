"""NNI's FPGM pruner (He et al. 2019): whole filters nearest the geometric median go."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from greedy_compress.masks._base import Pruner, register_pruner
from greedy_compress.model.mask import set_mask
from greedy_compress.model.modules import weight_of
from greedy_compress.quantization import batch_norm_pairs
from greedy_compress.schemes.criteria import ChannelEvidence, get_criterion

__all__ = ["FPGMPruner"]


@register_pruner
class FPGMPruner(Pruner):
    """Structured: ``floor(sparsity * filters)`` output filters of each conv, those with the
    smallest summed distance to the others (the ``"gm"`` filter-pruning criterion), are
    masked whole, with their bias entries and the BatchNorm entries right after the conv,
    so a pruned channel is exactly zero downstream and :func:`speedup` can remove it.

    Example:
        >>> import copy
        >>> pruner = FPGMPruner(copy.deepcopy(model), [{"sparsity": 0.5, "op_types": ["Conv2d"]}])
        >>> net = pruner.compress()
        >>> mask = pruner.masks()["features.3.weight"]
        >>> int(mask.flatten(1).amax(dim=1).sum()), mask.shape[0]
        (32, 64)
    """

    name = "fpgm"
    default_types: ClassVar[tuple[str, ...]] = ("Conv1d", "Conv2d")
    supported_types: ClassVar[tuple[str, ...]] = ("Conv1d", "Conv2d")

    def channels_kept(self, layer: nn.Module, config: dict[str, Any]) -> torch.Tensor:
        """A 0/1 vector over output channels."""
        weight = weight_of(layer).detach()
        filters = weight.shape[0]
        pruned = int(float(config["sparsity"]) * filters)
        importance = get_criterion("gm", type(self).__name__)(ChannelEvidence((weight,)))
        order = torch.sort(importance.double(), stable=True).indices
        keep = torch.ones(filters, dtype=weight.dtype)
        keep[order[:pruned]] = 0
        return keep

    def calc_mask(self, layer: nn.Module, config: dict[str, Any]) -> torch.Tensor:
        keep = self.channels_kept(layer, config)
        return (
            keep.reshape(-1, *([1] * (weight_of(layer).dim() - 1)))
            .expand_as(weight_of(layer))
            .clone()
        )

    def update_masks(self) -> None:
        super().update_masks()
        norms = batch_norm_pairs(self.model)
        masks = self.masks()
        for name in self.configs:
            layer = self.model.get_submodule(name)
            keep = masks[f"{name}.weight"].flatten(1).amax(dim=1)
            if layer.bias is not None:
                set_mask(layer, keep.clone(), "bias")
            if name in norms:
                norm = self.model.get_submodule(norms[name])
                for parameter in ("weight", "bias"):
                    if getattr(norm, parameter) is not None:
                        set_mask(norm, keep.clone(), parameter)
