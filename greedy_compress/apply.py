"""Phase 3: build the compressed model from a selection (and rebuild it from saved files).

A selection is checked against the model before anything is built or copied: it must have
been made for this architecture (``details["model"]``), name layers its scheme can
compress, and ask ranks in ``[1, max rank]``; kept channel indices a selection recorded
for pruned layers must be distinct and in range. So a selection for another model, a
hand-edited rank or an index out of range fails with one error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.errors import GreedyCompressError, SelectionMismatchError
from greedy_compress.model.hashing import architecture_hash
from greedy_compress.model.modules import factory_of
from greedy_compress.model.profile import ModelProfile, profile_model
from greedy_compress.schemes import Scheme, build_compressed
from greedy_compress.selection import Selection, layer_schemes

__all__ = ["FinetuneCallback", "apply_selection", "check_selection", "load_compressed"]

FinetuneCallback = Callable[[nn.Module, str], None]


def _example(
    model: nn.Module, selection: Selection, example_input: torch.Tensor | None
) -> torch.Tensor:
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor):
            raise bad_parameter("example_input", "apply_selection", "a torch.Tensor", example_input)
        return example_input
    shape = selection.details.get("input_shape")
    if shape is None:
        raise SelectionMismatchError(
            "The selection records no input shape (an older file): pass example_input=, a "
            "tensor the model accepts, to check and build it."
        )
    return torch.zeros(tuple(int(s) for s in shape), **factory_of(model))


def _check_layers(model: nn.Module, selection: Selection) -> None:
    """The checks that need no model run: the architecture and the layer names."""
    made_for = selection.details.get("model")
    if made_for is not None and made_for != architecture_hash(model):
        raise SelectionMismatchError(
            f"The selection was made for another model (architecture {made_for}, this model "
            f"{architecture_hash(model)}): other layer types or widths. Solve it again for "
            "this model."
        )
    modules = dict(model.named_modules())
    unknown = [name for name in selection.choices if name not in modules]
    if unknown:
        raise SelectionMismatchError(
            f"The selection names layer(s) {unknown}, which this model does not have."
        )


def check_selection(
    model: nn.Module,
    selection: Selection,
    schemes: dict[str, Scheme],
    example: torch.Tensor,
) -> None:
    """Check ``selection`` fits ``model`` (architecture, layers, ranks) and prepare its
    schemes on it; nothing is built.

    Raises:
        SelectionMismatchError: another architecture, an unknown or incompressible layer, a
            rank outside ``[1, max rank]`` (the message names the field and the range), explicit
            per-mode ranks outside :meth:`~greedy_compress.schemes.Scheme.mode_ranks`, or
            recorded kept channels that do not match the rank.

    Example:
        >>> selection = select(scores, target=0.5)
        >>> schemes = layer_schemes(selection.choices, selection.scheme, owner="example")
        >>> check_selection(model, selection, schemes, example_input)  # fits: no error
        >>> check_selection(DigitsCNN(width=16), selection, schemes, example_input)
        Traceback (most recent call last):
        ...
        greedy_compress.errors.SelectionMismatchError: The selection was made for another model ...
    """
    _check_layers(model, selection)
    profile = profile_model(model, example)
    prepared: dict[int, ModelProfile] = {}
    for scheme in {id(s): s for s in schemes.values()}.values():
        prepared[id(scheme)] = (
            scheme.prepare(model, example_input=example, profile=profile, details=selection.details)
            or profile
        )
    replay = selection.details.get("replay")
    for name, choice in selection.choices.items():
        scheme = schemes[name]
        info = prepared[id(scheme)].layers.get(name)
        reason = (
            profile.unusable.get(name, "not a Conv1d, Conv2d or Linear called once")
            if info is None
            else scheme.skip_reason(info)
        )
        if info is None or reason is not None:
            raise SelectionMismatchError(
                f"The selection compresses layer {name!r} with {scheme.name}, which cannot "
                f"compress it: {reason}."
            )
        top = scheme.max_rank(info)
        rank = choice.rank
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= top:
            raise SelectionMismatchError(
                f"The selection's rank for layer {name!r} must be an int in [1, {top}] "
                f"({scheme.name}). Got {rank!r} instead."
            )
        if choice.ranks is not None:
            tops = scheme.mode_ranks(info)
            ranks = choice.ranks
            if len(ranks) != len(tops) or any(
                isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= t
                for r, t in zip(ranks, tops, strict=False)
            ):
                bounds = ", ".join(f"[1, {t}]" for t in tops)
                raise SelectionMismatchError(
                    f"The selection's ranks for layer {name!r} must be {len(tops)} int(s) in "
                    f"{bounds} ({scheme.name}). Got {list(ranks)!r} instead."
                )
        recorded = replay.get(name) if isinstance(replay, dict) else None
        kept = recorded.get("kept") if isinstance(recorded, dict) else None
        if isinstance(kept, list) and len(kept) != rank:
            raise SelectionMismatchError(
                f"The selection keeps {rank} channels of layer {name!r} but records "
                f"{len(kept)} kept channel indices: the two must agree."
            )


def apply_selection(
    model: nn.Module,
    selection: Selection,
    *,
    scheme: str | Scheme | None = None,
    finetune: FinetuneCallback | None = None,
    example_input: torch.Tensor | None = None,
    record: dict[str, Any] | None = None,
) -> nn.Module:
    """Return a compressed copy of ``model``; ``model`` itself is left untouched.

    The selection is checked against the model first (:func:`check_selection`). Layers
    are compressed in the selection's (network) order. After each one,
    ``finetune(compressed_model, layer_name)`` is called if given, so later layers are
    factorized from the already fine-tuned weights. A layer whose choice names its own
    scheme (a mixed-scheme selection) is built with that scheme.

    Args:
        model: the original model.
        selection: per-layer ranks, from a solver or :meth:`Selection.load`.
        scheme: overrides the scheme named in the selection (for unregistered schemes); in a
            mixed selection it is used for the layers whose scheme has its name.
        finetune: optional per-layer fine-tuning callback.
        example_input: a tensor the model accepts (default: zeros of the selection's
            recorded input shape, made like the model).
        record: if given, filled with what rebuilding each layer needs beyond its rank
            (the kept channels of pruned layers); store it in the selection with
            ``Selection.with_replay(record)`` to rebuild it later with no data.

    Example:
        >>> small = apply_selection(model, select(scores, target=0.5))
        >>> count_macs(small, example_input) <= 0.5 * count_macs(model, example_input)
        True
    """
    owner = "apply_selection"
    if not isinstance(selection, Selection):
        raise bad_parameter("selection", owner, "a Selection", type(selection).__name__)
    # Resolve and check everything before copying the model, so a bad selection fails fast.
    multiplicity = int(selection.details.get("multiplicity", 1))
    schemes = layer_schemes(
        selection.choices, selection.scheme, scheme=scheme, owner=owner, multiplicity=multiplicity
    )
    if finetune is not None and not callable(finetune):
        raise bad_parameter("finetune", owner, "a callable (model, name)", finetune)
    _check_layers(model, selection)  # before asking for an example input
    example = _example(model, selection, example_input)
    check_selection(model, selection, schemes, example)
    return build_compressed(
        model,
        {name: (schemes[name], choice.build_rank) for name, choice in selection.choices.items()},
        example_input=example,
        details=selection.details,
        after_layer=finetune,
        record=record,
        prepare=False,  # check_selection prepared every scheme on this model
    )


def load_compressed(
    model: nn.Module,
    selection: Selection | Sequence[Selection],
    weights: str | os.PathLike[str],
    *,
    example_input: torch.Tensor | None = None,
    scheme: str | Scheme | None = None,
) -> nn.Module:
    """Rebuild a saved compressed model: apply the selection's shapes, then load its weights.

    A selection that records its pruned layers' kept channels (``compress`` saves it so)
    rebuilds with no data; a pipeline's model is rebuilt from its stages' selections, in
    order. The weights file is read with ``torch.load(..., weights_only=True)``: never
    unpickled.

    Raises:
        GreedyCompressError: the weights file is missing, not a state dict, or does not fit
            the rebuilt model (the message names the first mismatching keys).

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
    stages = [selection] if isinstance(selection, Selection) else list(selection)
    if not stages or not all(isinstance(s, Selection) for s in stages):
        raise bad_parameter(
            "selection", "load_compressed", "a Selection or a non-empty list of them", selection
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise GreedyCompressError(f"The weights file {path!r} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to read is about the user's file
        raise GreedyCompressError(
            f"The weights file {path!r} is not a weights-only state dict: "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None
    compressed = model
    for stage in stages:
        # Shapes only, from the recorded kept channels: the weights come from the file.
        structure = (
            stage.with_details(structure_only=True) if stage.details.get("replay") else stage
        )
        compressed = apply_selection(
            compressed, structure, scheme=scheme, example_input=example_input
        )
    if not isinstance(state, dict):
        raise GreedyCompressError(f"The weights file {path!r} holds no state dict.")
    try:
        compressed.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()
        raise GreedyCompressError(
            f"The weights in {path!r} do not fit the model the selection builds: "
            + " ".join(line.strip() for line in first[:3])
        ) from None
    return compressed
