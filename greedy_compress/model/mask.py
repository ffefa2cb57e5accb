"""Weight masks as ``torch.nn.utils.parametrize`` parametrizations (no forward hooks).

A masked parameter is ``original * mask``: training updates ``original``, the mask keeps
pruned entries at zero, and removing the parametrization (``leave_parametrized=True``)
leaves the masked weights. Pruners (:mod:`greedy_compress.masks`) set masks; export reads
them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "WeightMask",
    "bake_parametrizations",
    "keep_largest",
    "masked_originals",
    "model_masks",
    "set_mask",
]


def keep_largest(weight: torch.Tensor, kept: int) -> torch.Tensor:
    """A 0/1 mask of ``weight``'s shape keeping exactly its ``kept`` entries of largest
    magnitude (ties: the lower index is zeroed first).

    Example:
        >>> keep_largest(torch.tensor([[0.5, -2.0], [1.0, 0.1]]), 2)
        tensor([[0., 1.],
                [1., 0.]])
    """
    flat = weight.detach().abs().reshape(-1)
    count = flat.numel() - kept
    mask = torch.ones_like(flat)
    if count:
        order = torch.sort(flat.double(), stable=True).indices
        mask[order[:count]] = 0
    return mask.reshape(weight.shape)


class WeightMask(nn.Module):
    """The parametrization ``w -> w * mask`` (``mask`` a buffer: saved, not trained)."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def _mask_of(module: nn.Module, name: str) -> WeightMask | None:
    if not parametrize.is_parametrized(module, name):
        return None
    found = [p for p in module.parametrizations[name] if isinstance(p, WeightMask)]  # type: ignore[index]
    return found[0] if found else None


def set_mask(module: nn.Module, mask: torch.Tensor, name: str = "weight") -> None:
    """Mask ``module.<name>`` with ``mask`` (same shape), replacing an earlier mask.

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> set_mask(layer, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        >>> (layer.weight == 0).sum().item()
        2
    """
    current = _mask_of(module, name)
    if current is not None:
        current.mask.copy_(mask)
        return
    parametrize.register_parametrization(module, name, WeightMask(mask))


def model_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"<module>.<parameter>": mask}`` for every masked parameter of ``model``.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2))
        >>> set_mask(net[0], torch.ones(2, 2))
        >>> list(model_masks(net))
        ['0.weight']
    """
    masks = {}
    for module_name, module in model.named_modules():
        for name in list(getattr(module, "parametrizations", None) or {}):
            mask = _mask_of(module, name)
            if mask is not None:
                key = f"{module_name}.{name}" if module_name else name
                masks[key] = mask.mask.detach().clone()
    return masks


def masked_originals(model: nn.Module) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """``(stored parameter, mask)`` of every masked parameter of ``model``: the parameter
    training updates (``original``), which the mask multiplies.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2))
        >>> set_mask(net[0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        >>> [(tuple(p.shape), int(m.count_nonzero())) for p, m in masked_originals(net)]
        [((2, 2), 1)]
    """
    found = []
    for module in model.modules():
        for name in list(getattr(module, "parametrizations", None) or {}):
            mask = _mask_of(module, name)
            if mask is not None:
                found.append((module.parametrizations[name].original, mask.mask))  # type: ignore[index,union-attr]
    return found


def bake_parametrizations(module: nn.Module) -> None:
    """Replace ``module``'s parametrized tensors by plain parameters holding their current
    values (masks applied), in place. A deep copy shares the class torch generates for a
    parametrized module, and removing deletes the parameter's property from that class, so
    the module gets a class of its own first (the original stays intact)."""
    names = list(getattr(module, "parametrizations", None) or {})
    if not names:
        return
    cls = type(module)
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    for name in names:
        parametrize.remove_parametrizations(module, name, leave_parametrized=True)
