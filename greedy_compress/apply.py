"""Build the compressed model from a selection (and rebuild it from saved files)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.swap import replace_modules
from greedy_compress.schemes import Scheme, get_scheme
from greedy_compress.selection.solvers import Selection

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
        >>> selection = GreedySolver().solve(scores, target=0.5)  # doctest: +SKIP
        >>> small = apply_selection(model, selection)             # doctest: +SKIP
    """
    override = None if scheme is None else get_scheme(scheme, "apply_selection")
    if finetune is not None and not callable(finetune):
        raise bad_parameter("finetune", "apply_selection", "a callable (model, name)", finetune)
    schemes = {} if override is None else {override.name: override}
    # Resolve every layer's scheme before copying the model, so a bad name fails fast.
    layer_schemes: dict[str, Scheme] = {}
    for name, choice in selection.choices.items():
        wanted = choice.scheme
        if wanted is None:
            wanted = selection.scheme if override is None else override.name
        if wanted not in schemes:
            schemes[wanted] = get_scheme(wanted, "apply_selection")
        layer_schemes[name] = schemes[wanted]
    if example_input is None and "input_shape" in selection.details:
        example_input = torch.zeros(tuple(selection.details["input_shape"]))
    for used in {id(s): s for s in layer_schemes.values()}.values():
        used.prepare(model, example_input=example_input, details=selection.details)
    compressed = copy.deepcopy(model)
    for name, choice in selection.choices.items():
        try:
            compressed.get_submodule(name)
        except AttributeError:
            raise GreedyCompressError(
                f"The selection names layer {name!r}, which this model does not have."
            ) from None
        factorization = layer_schemes[name].factorize_in(compressed, name)
        replace_modules(compressed, factorization.replacements(name, choice.rank))
        if finetune is not None:
            finetune(compressed, name)
    return compressed


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
        >>> small = load_compressed(DigitsCNN(), Selection.load("selection.json"),
        ...                         "compressed.pt")  # doctest: +SKIP
    """
    compressed = apply_selection(model, selection, scheme=scheme, example_input=example_input)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    compressed.load_state_dict(state)
    return compressed
