"""Masks as a result: NNI's pruners (Level, AGP, Lottery Ticket, FPGM) on
``torch.nn.utils.parametrize`` masks, mask files, and the speedup to a smaller dense model.

Adding a pruner: subclass :class:`Pruner`, implement ``calc_mask(layer, config)`` and
decorate it with :func:`register_pruner` (one line).
"""

from __future__ import annotations

from greedy_compress.masks._base import (
    Pruner,
    available_pruners,
    get_pruner,
    load_masks,
    magnitude_mask,
    register_pruner,
)
from greedy_compress.masks.agp import AGPPruner, agp_sparsity
from greedy_compress.masks.fpgm import FPGMPruner
from greedy_compress.masks.level import LevelPruner
from greedy_compress.masks.lottery import LotteryTicketPruner
from greedy_compress.masks.speedup import speedup

__all__ = [
    "AGPPruner",
    "FPGMPruner",
    "LevelPruner",
    "LotteryTicketPruner",
    "Pruner",
    "agp_sparsity",
    "available_pruners",
    "get_pruner",
    "load_masks",
    "magnitude_mask",
    "register_pruner",
    "speedup",
]
