"""Sampled rows of channel pruning's least squares: a layer's design matrix (what it
multiplies by its weight, one row per output position) and its outputs as rows, drawn at
``max_rows`` seeded random positions of the samples."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from greedy_compress.model.modes import eval_mode
from greedy_compress.model.statistics import padded_conv_input, unfold_patches

__all__ = ["design_matrix", "design_rows", "sampled_rows"]


def design_matrix(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Rows of what ``layer`` multiplies by its weight, one per output position: the
    statistics pass's :func:`~greedy_compress.model.statistics.unfold_patches` (columns
    channel-major, ``layer(x) = design @ W.T + bias`` row by row)."""
    return unfold_patches(layer, inputs)


def design_rows(layer: nn.Module, inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` of :func:`design_matrix` (ordered by sample, then output position),
    gathered from the input without unfolding every position.

    Example:
        >>> conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        >>> x, rows = torch.randn(2, 2, 5, 5), torch.tensor([0, 4, 17])
        >>> torch.equal(design_rows(conv, x, rows), design_matrix(conv, x)[rows])
        True
    """
    if isinstance(layer, nn.Linear):
        return inputs.reshape(-1, inputs.shape[-1])[rows]
    padded, kernel, stride, dilation = padded_conv_input(layer, inputs)
    sizes = [
        (padded.shape[2 + d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1 for d in (0, 1)
    ]
    sample, place = rows // (sizes[0] * sizes[1]), rows % (sizes[0] * sizes[1])
    taps = [torch.arange(kernel[d], device=rows.device) * dilation[d] for d in (0, 1)]
    ys = (place // sizes[1] * stride[0])[:, None] + taps[0]  # [rows, kernel rows]
    xs = (place % sizes[1] * stride[1])[:, None] + taps[1]
    # Channels last: each patch tap gathered is one contiguous vector of channels.
    pixels = padded.permute(0, 2, 3, 1).contiguous()
    patches = pixels[sample[:, None, None], ys[:, :, None], xs[:, None, :]]  # [r, ky, kx, c]
    return patches.permute(0, 3, 1, 2).reshape(len(rows), -1)


def _positions(layer: nn.Module, inputs: torch.Tensor) -> int:
    """Design rows per sample of ``inputs``."""
    if isinstance(layer, nn.Linear):
        return inputs[0].numel() // inputs.shape[-1]
    assert isinstance(layer, (nn.Conv1d, nn.Conv2d))
    pads = layer._reversed_padding_repeated_twice  # last dim first, (before, after) each
    positions, spatial = 1, inputs.shape[2:]
    for d, size in enumerate(spatial):
        at = 2 * (len(spatial) - 1 - d)
        span = layer.dilation[d] * (layer.kernel_size[d] - 1) + 1
        positions *= (size + pads[at] + pads[at + 1] - span) // layer.stride[d] + 1
    return positions


def _targets(layer: nn.Module, outputs: torch.Tensor) -> torch.Tensor:
    """The layer's outputs as rows matching :func:`design_matrix`, without the bias."""
    if outputs.dim() > 2 and not isinstance(layer, nn.Linear):
        outputs = outputs.movedim(1, -1)
    rows = outputs.reshape(-1, outputs.shape[-1])
    bias = getattr(layer, "bias", None)
    return rows - bias.detach() if bias is not None else rows


class _Enough(Exception):
    """Raised by a hook once every wanted layer has run on a batch: the rest is not needed."""


@functools.lru_cache(maxsize=64)
def _chosen_rows(total: int, limit: int) -> torch.Tensor | None:
    """The rows kept of ``total`` (sorted; None keeps all): ``limit`` drawn at random."""
    if total <= limit:
        return None
    generator = torch.Generator().manual_seed(0)
    return torch.randperm(total, generator=generator)[:limit].sort().values


RowsOf = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def sampled_rows(
    model: nn.Module,
    rows_of: Mapping[str, RowsOf],
    samples: torch.Tensor,
    max_rows: int,
    *,
    batch_size: int = 16,
) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``samples``; for each named layer keep at most ``max_rows`` rows of
    ``rows_of[name](layer, input, output)`` (rows ordered by sample: the same rows of
    every layer with as many rows per sample). Each batch stops once every named layer ran.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> rows = sampled_rows(net, {"0": lambda m, x, y: y}, torch.randn(40, 2), 8)
        >>> tuple(rows["0"].shape)
        (8, 3)
    """
    kept: dict[str, list[torch.Tensor]] = {name: [] for name in rows_of}
    left: set[str] = set()
    start = 0

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            rows = rows_of[name](module, args[0].detach(), output.detach())
            per = rows.shape[0] // args[0].shape[0]  # rows per sample
            chosen = _chosen_rows(per * samples.shape[0], max_rows)
            if chosen is not None:
                low = start * per
                inside = chosen[(chosen >= low) & (chosen < low + rows.shape[0])]
                rows = rows[(inside - low).to(rows.device)]
            kept[name].append(rows)
            left.discard(name)
            if not left:
                raise _Enough

        return hook

    handles = [model.get_submodule(n).register_forward_hook(make_hook(n)) for n in rows_of]
    device = next((p.device for p in model.parameters()), samples.device)
    try:
        with eval_mode(model), torch.no_grad():
            for start in range(0, samples.shape[0], batch_size):
                left.update(rows_of)
                with contextlib.suppress(_Enough):
                    model(samples[start : start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(found) for name, found in kept.items()}


def _design_rows(layer: nn.Module, inputs: torch.Tensor, _outputs: torch.Tensor) -> torch.Tensor:
    return design_matrix(layer, inputs)


def _target_rows(layer: nn.Module, _inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    return _targets(layer, outputs)
