"""Sparse weight files: every masked weight stored as compressed sparse rows (CSR), or dense
where that is smaller.

Storage format (``SPARSE_FORMAT``, version 1), a weights-only ``torch.save`` file of plain
tensors: a masked weight of shape ``(out, ...)`` is viewed as a matrix ``(out, rest)`` and
stored as ``<name>.values`` (the entries its mask keeps, in the weight's dtype, row by row),
``<name>.col_indices`` (int16 where ``rest`` <= 32767, else int32), ``<name>.crow_indices``
(int32, ``out + 1`` row starts) and ``<name>.shape`` (int64); every other tensor of the
state dict is stored as it is. Bytes of a masked float32 weight: ``kept x (4 + 2)`` (int16
columns) ``+ 4 x (out + 1) + 8 x dims``, against ``4 x numel`` dense; when CSR is not
smaller the weight is stored dense under its own name (masked entries zero), so the file
never grows a weight. :mod:`greedy_compress.model.sparse_storage` holds the formula, which
:func:`~greedy_compress.model.cost.measure_cost` and the ``sparsity`` scheme price memory
with.
"""

from __future__ import annotations

import copy
import io
import math
import os
from collections.abc import Mapping

import torch
from torch import nn

from greedy_compress._util.io import atomic_write_bytes
from greedy_compress.errors import ExportError
from greedy_compress.model.mask import bake_parametrizations, model_masks
from greedy_compress.model.sparse_storage import INT16_COLUMNS, csr_bytes, stores_sparse

__all__ = [
    "SPARSE_FORMAT",
    "csr_bytes",
    "dense_state_dict",
    "load_sparse_state_dict",
    "save_sparse_state_dict",
    "sparse_state_dict",
]

SPARSE_FORMAT = "greedy-compress/sparse-csr"
_SUFFIXES = (".values", ".col_indices", ".crow_indices", ".shape")


def _to_csr(weight: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """CSR of the entries ``mask`` keeps (kept entries that happen to be zero included, so
    the stored size depends on the mask alone)."""
    matrix = weight.detach().reshape(weight.shape[0], -1) if weight.dim() else weight.reshape(1, 1)
    rows, cols = mask.reshape(matrix.shape).nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=matrix.shape[0])
    crow = torch.zeros(matrix.shape[0] + 1, dtype=torch.int32)
    crow[1:] = torch.cumsum(counts, 0).to(torch.int32)
    index = torch.int16 if matrix.shape[1] <= INT16_COLUMNS else torch.int32
    return {
        ".values": matrix[rows, cols].clone(),
        ".col_indices": cols.to(index),
        ".crow_indices": crow,
        ".shape": torch.tensor(list(weight.shape), dtype=torch.int64),
    }


def sparse_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict with its masked weights (the masks applied) in CSR form (dense
    where CSR is not smaller) and no masks (nothing of the file needs greedy-compress to be
    read).

    Example:
        >>> import copy
        >>> from greedy_compress.masks import LevelPruner
        >>> net = LevelPruner(copy.deepcopy(model), [{"sparsity": 0.9,
        ...                                           "op_names": ["features.3"]}]).compress()
        >>> state = sparse_state_dict(net)
        >>> state["features.3.weight.values"].numel(), net.features[3].weight.numel()
        (1843, 18432)
    """
    masks = model_masks(model)
    baked = copy.deepcopy(model)
    for module in list(baked.modules()):
        bake_parametrizations(module)
    state: dict[str, torch.Tensor] = {}
    for key, value in baked.state_dict().items():
        mask = masks.get(key)
        kept = 0 if mask is None else int(mask.count_nonzero())
        if mask is not None and stores_sparse(tuple(value.shape), kept, value.element_size()):
            state.update({key + suffix: t for suffix, t in _to_csr(value, mask).items()})
        else:
            state[key] = value.detach().clone()
    return state


def dense_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The dense state dict a :func:`sparse_state_dict` stands for (loadable into the model
    without masks).

    Raises:
        ExportError: an incomplete or inconsistent CSR entry.
    """
    dense: dict[str, torch.Tensor] = {}
    names = {key[: -len(".values")] for key in state if key.endswith(".values")}
    for name in names:
        parts = {suffix: state.get(name + suffix) for suffix in _SUFFIXES}
        missing = [name + s for s, t in parts.items() if t is None]
        if missing:
            raise ExportError(f"The sparse state dict lacks {missing}.")
        values, cols, crow, shape = (torch.as_tensor(parts[s]) for s in _SUFFIXES)
        size = [int(s) for s in shape.tolist()]
        rows = size[0] if size else 1
        columns = math.prod(size[1:])
        if crow.numel() != rows + 1 or not int(crow[-1]) == values.numel() == cols.numel():
            raise ExportError(f"The CSR entry of {name!r} is inconsistent.")
        row_of = torch.repeat_interleave(torch.arange(rows), torch.diff(crow.long()))
        matrix = torch.zeros(rows, columns, dtype=values.dtype)
        matrix[row_of, cols.long()] = values
        dense[name] = matrix.reshape(size)
    for key, value in state.items():
        if not any(key.endswith(s) and key[: -len(s)] in names for s in _SUFFIXES):
            dense[key] = value
    return dense


def save_sparse_state_dict(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write :func:`sparse_state_dict` of ``model`` to ``path`` (atomically)."""
    buffer = io.BytesIO()
    torch.save({"format": SPARSE_FORMAT, "format_version": 1, **sparse_state_dict(model)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_sparse_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The dense state dict of a file :func:`save_sparse_state_dict` wrote (weights-only
    load).

    Raises:
        ExportError: the file is not a sparse state dict of this format.
    """
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != SPARSE_FORMAT:
        raise ExportError(f"{os.fspath(path)} is not a {SPARSE_FORMAT} file.")
    if data.get("format_version") != 1:
        raise ExportError(
            f"{os.fspath(path)} has format_version {data.get('format_version')!r}; this "
            "version reads 1."
        )
    return dense_state_dict(
        {k: v for k, v in data.items() if k not in ("format", "format_version")}
    )
