"""Build a compressed copy of a model from per-layer (scheme, rank) choices.

The one place models are built: :func:`greedy_compress.apply_selection` and the selection
algorithms that evaluate real models (repair, the Optuna search) all come here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.swap import replace_modules
from greedy_compress.schemes._base import Scheme

__all__ = ["build_compressed"]


def build_compressed(
    model: nn.Module,
    layers: Mapping[str, tuple[Scheme, int | tuple[int, ...]]],
    *,
    example_input: torch.Tensor | None = None,
    details: Mapping[str, Any] | None = None,
    after_layer: Callable[[nn.Module, str], None] | None = None,
    record: dict[str, Any] | None = None,
    prepare: bool = True,
) -> nn.Module:
    """A copy of ``model`` with each ``name -> (scheme, rank)`` compressed; ``model`` is
    left untouched. A rank may be a tuple of explicit per-mode ranks
    (:meth:`Scheme.mode_ranks`: Tucker's in and out rank), built by
    :meth:`Factorization.build_ranks`.

    Each scheme is prepared once on ``model`` (with ``example_input`` and ``details``;
    ``prepare=False`` when the caller just did); layers are compressed in the order given,
    each factorized from the copy as it is at that point (so ``after_layer(copy, name)``,
    e.g. fine-tuning, shapes the later ones). ``record``, if given, receives what
    rebuilding each layer later needs beyond its rank (:meth:`Factorization.replay`: the
    kept channels of a pruned layer).

    Raises:
        GreedyCompressError: a layer name the model does not have.

    Example:
        >>> from greedy_compress.schemes import WeightSVD
        >>> small = build_compressed(model, {"classifier": (WeightSVD(), 4)})
        >>> small.classifier
        Sequential(
          (0): Linear(in_features=128, out_features=4, bias=False)
          (1): Linear(in_features=4, out_features=10, bias=True)
        )
    """
    names = {name for name, _ in model.named_modules()}
    missing = [name for name in layers if name not in names]
    if missing:
        raise GreedyCompressError(
            f"The selection names layer(s) {missing}, which this model does not have."
        )
    if prepare:
        for scheme in {id(s): s for s, _ in layers.values()}.values():
            scheme.prepare(model, example_input=example_input, details=details)
    compressed = copy.deepcopy(model)
    try:
        for name, (scheme, rank) in layers.items():
            factorization = scheme.factorize_in(compressed, name)
            if isinstance(rank, tuple):  # explicit ranks: decompositions, nothing to replay
                replace_modules(compressed, {name: factorization.build_ranks(rank)})
                replay = None
            else:
                replace_modules(compressed, factorization.replacements(name, rank))
                replay = factorization.replay(rank)
            if record is not None and replay is not None:
                record[name] = replay
            if after_layer is not None:
                after_layer(compressed, name)
    finally:
        for scheme in {id(s): s for s, _ in layers.values()}.values():
            scheme.end_build()
    return compressed
