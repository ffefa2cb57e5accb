"""NetsPresso's pruning options: how a criterion's per-layer importances become one score per
channel of a channel group, and how scores of different groups are made comparable.

* ``policy`` combines the importances of the layers whose channels a residual add ties
  (a group's *producers*): ``"average"`` or ``"sum"`` of each producer's importance, or
  ``"backward"``: the importance of the *following* layers' weights that read the channels
  (the consumers' input columns), averaged over them.
* ``group_policy`` scores a group split into equal parts (a grouped conv's groups,
  attention heads), which must keep the same number of channels in each part: ``"count"``
  ranks each part's channels on their own and removes the same number from each part;
  ``"average"`` / ``"sum"`` score channel position ``j`` by the average / sum over the parts
  of their ``j``-th channels, so the same positions go from every part.
* ``layer_norm`` rescales one group's scores so a single threshold can compare groups:
  ``"none"``, ``"standard_score"`` (``(x - mean) / std``), ``"tss_norm"`` (total sum
  scaling, ``x / sum(x)``), ``"linear_scaling"`` (``(x - min) / (max - min)``) or
  ``"softmax_norm"`` (``softmax(x)``). Each is increasing, so it never changes which
  channels a layer keeps at a given count: it matters where one threshold ranks the
  channels of every layer (:func:`greedy_compress.selection.recommend_global_threshold`).

The names and values are NetsPresso's (``netspresso.enums.Policy``, ``LayerNorm`` and
``GroupPolicy``); NetsPresso's group policy ``"none"`` is left out: at a fixed number of
kept channels it is ``"count"``.

Example:
    >>> normalize(torch.tensor([1.0, 3.0]), "tss_norm")
    tensor([0.2500, 0.7500], dtype=torch.float64)
    >>> combine([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0])], "sum")
    tensor([4., 4.], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from greedy_compress._util.constraints import Options

__all__ = [
    "GROUP_POLICIES",
    "LAYER_NORMS",
    "POLICIES",
    "combine",
    "normalize",
    "part_scores",
]

POLICIES = Options(("average", "sum", "backward"))
"""Values of ``policy``: how the importances of the layers tied to a group combine."""

LAYER_NORMS = Options(("none", "standard_score", "tss_norm", "linear_scaling", "softmax_norm"))
"""Values of ``layer_norm``: how a group's scores are made comparable with other groups'."""

GROUP_POLICIES = Options(("average", "sum", "count"))
"""Values of ``group_policy``: how a group split into equal parts is scored."""


def combine(importances: Sequence[torch.Tensor], how: str) -> torch.Tensor:
    """One importance per channel from several layers' (``"average"`` or ``"sum"``).

    Example:
        >>> combine([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0])], "average")
        tensor([2., 2.], dtype=torch.float64)
    """
    stacked = torch.stack([i.detach().double().reshape(-1) for i in importances])
    return stacked.sum(dim=0) if how == "sum" else stacked.mean(dim=0)


def part_scores(importance: torch.Tensor, parts: int, group_policy: str) -> torch.Tensor:
    """A group's scores as ``[rows, channels per part]``: for ``"count"`` one row per part
    (each part ranked on its own), for ``"average"`` / ``"sum"`` one row of channel
    positions combined over the parts.

    Example:
        >>> part_scores(torch.tensor([4.0, 1.0, 2.0, 3.0]), 2, "average")
        tensor([[3., 2.]], dtype=torch.float64)
        >>> part_scores(torch.tensor([4.0, 1.0, 2.0, 3.0]), 2, "count").tolist()
        [[4.0, 1.0], [2.0, 3.0]]
    """
    rows = importance.detach().double().reshape(parts, -1)
    if group_policy == "count" or parts == 1:
        return rows
    return combine(list(rows), group_policy).reshape(1, -1)


def normalize(scores: torch.Tensor, layer_norm: str) -> torch.Tensor:
    """``scores`` (one group's) rescaled by ``layer_norm``; constant scores, which the
    standard score and linear scaling cannot spread, become zeros.

    Example:
        >>> normalize(torch.tensor([1.0, 2.0, 3.0]), "linear_scaling")
        tensor([0.0000, 0.5000, 1.0000], dtype=torch.float64)
        >>> normalize(torch.tensor([1.0, 3.0]), "standard_score")
        tensor([-1.,  1.], dtype=torch.float64)
    """
    x = scores.detach().double()
    if layer_norm == "none":
        return x
    if layer_norm == "tss_norm":
        total = x.sum()
        return x / total if total != 0 else torch.zeros_like(x)
    if layer_norm == "softmax_norm":
        return torch.softmax(x.reshape(-1), dim=0).reshape(x.shape)
    if layer_norm == "standard_score":
        # Population standard deviation: two channels 1 and 3 become -1 and 1.
        spread = x.std(correction=0)
        return (x - x.mean()) / spread if spread > 0 else torch.zeros_like(x)
    if layer_norm == "linear_scaling":
        low, span = x.min(), x.max() - x.min()
        return (x - low) / span if span > 0 else torch.zeros_like(x)
    raise ValueError(f"unknown layer_norm {layer_norm!r}")  # checked by the constructor
