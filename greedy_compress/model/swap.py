"""Put modules into a model by fully-qualified name, and take them out again."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from torch import nn

__all__ = ["replace_modules", "swapped"]


def replace_modules(
    model: nn.Module, replacements: Mapping[str, nn.Module]
) -> dict[str, nn.Module]:
    """Set each ``name -> module`` of ``replacements`` in ``model``; return the modules replaced."""
    originals = {name: model.get_submodule(name) for name in replacements}
    for name, module in replacements.items():
        model.set_submodule(name, module)
    return originals


@contextmanager
def swapped(model: nn.Module, replacements: Mapping[str, nn.Module]) -> Iterator[nn.Module]:
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
