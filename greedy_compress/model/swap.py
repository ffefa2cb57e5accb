"""Put modules (or parameters) into a model by fully-qualified name, and take them out again.

torch's fused fast paths read their children's weights directly: in eval mode
``nn.TransformerEncoderLayer`` passes ``linear1.weight``, ``linear2.weight`` and its norms'
weights to one kernel, and ``nn.TransformerEncoder`` does the same for its first layer before
running nested tensors. A child replaced by another kind of module (a low-rank pair) has no
such weight, so those layers are swapped for copies that take the regular path (which calls
the children as modules); a smaller ``nn.Linear`` or ``nn.LayerNorm`` keeps the fast path.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from torch import nn

__all__ = ["Replacement", "replace_modules", "swapped"]

Replacement = nn.Module | nn.Parameter
"""What a name can be replaced with: a module, or a parameter (e.g. a sliced layer scale)."""

_FAST_PATH_CHILDREN = {
    "linear1": nn.Linear,
    "linear2": nn.Linear,
    "norm1": nn.LayerNorm,
    "norm2": nn.LayerNorm,
}


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A copy sharing ``module``'s children, parameters and buffers (its own dicts of them)."""
    new = copy.copy(module)
    new._modules = dict(module._modules)
    new._parameters = dict(module._parameters)
    new._buffers = dict(module._buffers)
    return new


def _regular_path(module: nn.Module) -> nn.Module | None:
    """A copy of a fused-fast-path module that takes the regular path, or None if ``module``
    has no fast path (or already avoids it)."""
    if isinstance(module, nn.TransformerEncoderLayer) and module.activation_relu_or_gelu:
        new = _shallow_copy(module)
        new.__dict__["activation_relu_or_gelu"] = 0  # the fast path requires relu or gelu
        return new
    if isinstance(module, nn.TransformerEncoder) and module.use_nested_tensor:
        new = _shallow_copy(module)
        new.__dict__["use_nested_tensor"] = False  # the nested path reads layers[0] weights
        return new
    return None


def _guards(model: nn.Module, replacements: Mapping[str, Replacement]) -> dict[str, nn.Module]:
    """Regular-path copies of the fused modules above ``replacements`` that need one."""
    guards: dict[str, nn.Module] = {}
    for name, new in replacements.items():
        if isinstance(new, nn.Parameter):
            continue
        parts = name.split(".")
        for depth in range(len(parts) - 1, 0, -1):
            path = ".".join(parts[:depth])
            if path in guards or path in replacements:
                continue
            ancestor = model.get_submodule(path)
            child = parts[depth]
            needs = isinstance(ancestor, nn.TransformerEncoder) or (
                isinstance(ancestor, nn.TransformerEncoderLayer)
                and depth == len(parts) - 1
                and child in _FAST_PATH_CHILDREN
                and type(new) is not _FAST_PATH_CHILDREN[child]
            )
            if needs and (copied := _regular_path(ancestor)) is not None:
                guards[path] = copied
    return dict(sorted(guards.items(), key=lambda item: item[0].count(".")))


def _get(model: nn.Module, name: str, parameter: bool) -> Replacement:
    return model.get_parameter(name) if parameter else model.get_submodule(name)


def _set(model: nn.Module, name: str, new: Replacement) -> None:
    if isinstance(new, nn.Parameter):
        owner, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(owner), attribute, new)
    else:
        model.set_submodule(name, new)


def replace_modules(
    model: nn.Module, replacements: Mapping[str, Replacement]
) -> dict[str, Replacement]:
    """Set each ``name -> module`` (or parameter) of ``replacements`` in ``model``; return
    what was replaced, in the order that restores it (fused layers above a replaced child
    first, see the module docstring).

    Example:
        >>> layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        >>> net = nn.Sequential(layer)
        >>> pair = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 16))
        >>> old = replace_modules(net, {"0.linear1": pair})
        >>> list(old), net[0] is layer, net[0].activation_relu_or_gelu
        (['0', '0.linear1'], False, 0)
    """
    plan: dict[str, Replacement] = {**_guards(model, replacements), **replacements}
    originals = {
        name: _get(model, name, isinstance(new, nn.Parameter)) for name, new in plan.items()
    }
    for name, new in plan.items():
        _set(model, name, new)
    return originals


@contextmanager
def swapped(model: nn.Module, replacements: Mapping[str, Replacement]) -> Iterator[nn.Module]:
    """Within the block, ``model`` holds ``replacements``; the originals are always restored.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2))
        >>> with swapped(net, {"0": nn.Identity()}):
        ...     type(net[0]).__name__
        'Identity'
        >>> type(net[0]).__name__
        'Linear'
    """
    originals = replace_modules(model, replacements)
    try:
        yield model
    finally:
        replace_modules(model, originals)
