"""Phase 3: build the compressed model from a selection (and rebuild it from saved files)."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.model.modules import factory_of
from greedy_compress.schemes import Scheme, build_compressed
from greedy_compress.selection import Selection, layer_schemes

__all__ = ["FinetuneCallback", "apply_selection", "load_compressed"]

FinetuneCallback = Callable[[nn.Module, str], None]


def apply_selection(
    model: nn.Module,
    selection: Selection,
    *,
    scheme: str | Scheme | None = None,
    finetune: FinetuneCallback | None = None,
    example_input: torch.Tensor | None = None,
) -> nn.Module:
    """Return a compressed copy of ``model``; ``model`` itself is left untouched.

    Layers are compressed in the selection's (network) order. After each one,
    ``finetune(compressed_model, layer_name)`` is called if given, so later layers are
    factorized from the already fine-tuned weights. A layer whose choice names its own
    scheme (a mixed-scheme selection) is built with that scheme.

    Args:
        model: the original model.
        selection: per-layer ranks, from a solver or :meth:`Selection.load`.
        scheme: overrides the scheme named in the selection (for unregistered schemes); in a
            mixed selection it is used for the layers whose scheme has its name.
        finetune: optional per-layer fine-tuning callback.
        example_input: a tensor the model accepts; pruning schemes trace the model with it
            (default: zeros of ``selection.details["input_shape"]`` when recorded there).

    Example:
        >>> small = apply_selection(model, select(scores, target=0.5))
        >>> count_macs(small, example_input) <= 0.5 * count_macs(model, example_input)
        True
    """
    owner = "apply_selection"
    # Resolve every layer's scheme before copying the model, so a bad name fails fast.
    schemes = layer_schemes(selection.choices, selection.scheme, scheme=scheme, owner=owner)
    if finetune is not None and not callable(finetune):
        raise bad_parameter("finetune", owner, "a callable (model, name)", finetune)
    if example_input is None and "input_shape" in selection.details:
        shape = tuple(selection.details["input_shape"])
        example_input = torch.zeros(shape, **factory_of(model))
    return build_compressed(
        model,
        {name: (schemes[name], choice.rank) for name, choice in selection.choices.items()},
        example_input=example_input,
        details=selection.details,
        after_layer=finetune,
    )


def load_compressed(
    model: nn.Module,
    selection: Selection,
    weights: str | os.PathLike[str],
    *,
    example_input: torch.Tensor | None = None,
    scheme: str | Scheme | None = None,
) -> nn.Module:
    """Rebuild a saved compressed model: apply the selection's shapes, then load its weights.

    The weights file is read with ``torch.load(..., weights_only=True)``: never unpickled.

    Example:
        >>> import tempfile, pathlib
        >>> selection = select(scores, target=0.5)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "small.pt"
        >>> torch.save(apply_selection(model, selection).state_dict(), path)
        >>> small = load_compressed(DigitsCNN(), selection, path)
        >>> count_macs(small, example_input) == count_macs(apply_selection(model, selection),
        ...                                                example_input)
        True
    """
    compressed = apply_selection(model, selection, scheme=scheme, example_input=example_input)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    compressed.load_state_dict(state)
    return compressed
