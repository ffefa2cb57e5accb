"""Batch-norm folding: a conv followed by a BatchNorm becomes one conv (eval mode).

``BN(conv(x)) = gamma (W x + b - mean) / sqrt(var + eps) + beta``, so the folded conv has
weights ``W * gamma / sigma`` (per output channel) and bias ``beta + (b - mean) gamma /
sigma``. Quantizing the folded weights is what an integer kernel runs (Jacob et al. 2018).
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from greedy_compress.model.trace import trace_model

__all__ = ["batch_norm_pairs", "fold_batch_norm", "folded_parameters"]

_CONVS = (nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def folded_parameters(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``conv`` then ``bn`` (running statistics) as one conv."""
    assert bn.running_var is not None and bn.running_mean is not None  # tracked statistics
    sigma = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(sigma)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(sigma)
    factor = gamma / sigma
    shape = [-1] + [1] * (weight.dim() - 1)
    base = bias if bias is not None else torch.zeros_like(sigma)
    return weight * factor.reshape(shape), beta + (base - bn.running_mean) * factor


def fold_batch_norm(conv: nn.Conv1d | nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A new conv computing ``bn(conv(x))`` of eval mode; the arguments are not modified.

    Example:
        >>> conv, bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)
        >>> _ = bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.eval()
        >>> x = torch.randn(1, 2, 5, 5)
        >>> torch.allclose(fold_batch_norm(conv, bn)(x), bn(conv(x)), atol=1e-5)
        True
    """
    folded = copy.deepcopy(conv)
    with torch.no_grad():
        weight, bias = folded_parameters(conv.weight, conv.bias, bn)
        folded.weight.copy_(weight)
        folded.bias = nn.Parameter(bias.detach().clone())
    return folded


def batch_norm_pairs(model: nn.Module) -> dict[str, str]:
    """``{conv name: batch-norm name}`` for each conv whose output only feeds a BatchNorm
    with tracked running statistics (so the two fold into one).

    Raises:
        GraphTraceError: torch.fx cannot trace the model.

    Example:
        >>> batch_norm_pairs(model)
        {'features.0': 'features.1', 'features.3': 'features.4', 'features.7': 'features.8',
         'features.10': 'features.11'}
    """
    graph = trace_model(model)
    pairs: dict[str, str] = {}
    nodes: list[fx.Node] = list(graph.graph.nodes)
    for node in nodes:
        if node.op != "call_module":
            continue
        if not isinstance(model.get_submodule(str(node.target)), _CONVS):
            continue
        users: list[fx.Node] = list(node.users)
        if len(users) != 1 or users[0].op != "call_module":
            continue
        norm = model.get_submodule(str(users[0].target))
        first = users[0].args[0] if users[0].args else None
        if isinstance(norm, _NORMS) and norm.track_running_stats and first is node:
            pairs[str(node.target)] = str(users[0].target)
    return pairs
