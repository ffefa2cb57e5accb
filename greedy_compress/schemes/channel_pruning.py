"""Channel pruning with weight reconstruction (AIMET's method, after He et al. 2017).

For a layer and a number of input channels to keep: rank the input channels by how much
they contribute to the layer's output on sampled data, keep the strongest, remove the others
from the layer and from the layers producing them (with their BatchNorms and depthwise convs),
then refit the layer's weights by least squares so that, on the sampled data, its output
from the kept channels matches the original model's output.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from greedy_compress._util.constraints import check_positive_int
from greedy_compress.graph import (
    ORIGINAL_OUTPUTS,
    ChannelGroup,
    DependencyGraph,
    group_replacements,
)
from greedy_compress.model.hashing import tensor_hash
from greedy_compress.model.modules import weight_of
from greedy_compress.model.sampling import capture, take_samples
from greedy_compress.schemes._base import Factorization
from greedy_compress.schemes._pruning import GroupPruning, PruningFactorization

__all__ = ["ChannelPruning", "design_matrix"]


def design_matrix(layer: nn.Module, inputs: torch.Tensor, block: int = 1) -> torch.Tensor:
    """Rows of what ``layer`` multiplies by its weight: ``[positions, in_channels * k]``.

    Columns are channel-major (all of channel 0's kernel taps, then channel 1's, ...), like
    ``layer.weight.reshape(out, -1)``; ``layer(x) = design @ W.T + bias`` row by row.

    Example:
        >>> conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        >>> x = torch.randn(1, 2, 4, 4)
        >>> d = design_matrix(conv, x)
        >>> torch.allclose(d @ conv.weight.reshape(3, -1).T,
        ...                conv(x).permute(0, 2, 3, 1).reshape(-1, 3), atol=1e-5)
        True
    """
    if isinstance(layer, nn.Linear):
        return inputs.reshape(-1, inputs.shape[-1])
    assert isinstance(layer, (nn.Conv1d, nn.Conv2d))
    padding_mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    padded = functional.pad(inputs, layer._reversed_padding_repeated_twice, mode=padding_mode)
    if isinstance(layer, nn.Conv1d):
        padded = padded.unsqueeze(2)
        kernel, stride, dilation = (1, *layer.kernel_size), (1, *layer.stride), (1, *layer.dilation)
    else:
        kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    columns = functional.unfold(padded, kernel, dilation=dilation, stride=stride)
    return columns.transpose(1, 2).reshape(-1, columns.shape[1])


def _targets(layer: nn.Module, outputs: torch.Tensor) -> torch.Tensor:
    """The layer's outputs as rows matching :func:`design_matrix`, without the bias."""
    if outputs.dim() > 2:
        outputs = outputs.movedim(1, -1)
    rows = outputs.reshape(-1, outputs.shape[-1])
    bias = getattr(layer, "bias", None)
    return rows - bias.detach() if bias is not None else rows


def _least_squares(gram: torch.Tensor, cross: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Solve min ||D[:, columns] W - Y|| from D.T D and D.T Y, with a tiny ridge so that
    channels that never fire (all-zero columns) give a well-posed system."""
    block = gram[columns][:, columns]
    ridge = 1e-8 * block.diagonal().mean().clamp_min(1e-12)
    eye = torch.eye(len(columns), dtype=block.dtype, device=block.device)
    return torch.linalg.solve(block + ridge * eye, cross[columns])


class _ConsumerFit:
    """One reading layer's sampled data: channel energies and normal equations."""

    def __init__(self, layer: nn.Module, size: int, design: torch.Tensor, targets: torch.Tensor):
        self.taps = design.shape[1] // size
        weight = weight_of(layer).detach()
        weight = weight.reshape(weight.shape[0], -1)
        # Contribution of channel c to the output on the samples is D_c @ W_c.T; its energy
        # ||D_c W_c.T||^2 = sum((D_c.T D_c) * (W_c.T W_c)) needs only per-channel Gram blocks.
        rows = design.reshape(design.shape[0], size, self.taps).double()
        taps_w = weight.reshape(weight.shape[0], size, self.taps).double()
        energy = (
            torch.einsum("rck,rcl->ckl", rows, rows) * torch.einsum("ock,ocl->ckl", taps_w, taps_w)
        ).sum(dim=(1, 2))
        self.energy = energy / energy.sum().clamp_min(1e-30)  # each reader counts equally
        # Normal equations once per layer; every kept-channel subset is a sub-block of them.
        design = design.double()
        self.gram = design.T @ design
        self.cross = design.T @ targets.double()

    def refit(self, layer: nn.Module, keep: list[int]) -> None:
        columns = torch.tensor([c * self.taps + t for c in keep for t in range(self.taps)])
        solution = _least_squares(self.gram, self.cross, columns)
        weight = weight_of(layer)
        with torch.no_grad():
            weight.copy_(solution.T.reshape(weight.shape).to(weight.dtype))


class _ChannelPruningFactorization(PruningFactorization):
    def __init__(
        self,
        *,
        scheme: ChannelPruning,
        model: nn.Module,
        graph: DependencyGraph,
        group: ChannelGroup,
        name: str,
        fits: dict[str, _ConsumerFit],
    ) -> None:
        energy = torch.stack([fit.energy for fit in fits.values()]).sum(dim=0)
        order = torch.sort(energy, descending=True, stable=True).indices.tolist()
        super().__init__(model, graph, group, order, name=name)
        self.scheme, self.fits = scheme, fits

    def replacements(self, name: str, rank: int) -> dict[str, nn.Module]:
        keep = self.keep(rank)
        modules = group_replacements(self.model, self.graph, self.group, keep)
        if self.scheme.reconstruct and rank < self.group.size:  # nothing removed: keep as is
            for reader, fit in self.fits.items():
                fit.refit(modules[reader], keep)
        return modules


class ChannelPruning(GroupPruning):
    """Prune a layer's input channels and reconstruct its weights by least squares.

    Args:
        data: input batches (e.g. a training DataLoader yielding (inputs, targets)).
        num_reconstruction_samples: how many inputs of ``data`` to sample.
        max_rows: at most this many output positions are used per least-squares fit
            (randomly chosen, seeded), which bounds time and memory.
        reconstruct: refit the weights (True, AIMET's method) or only slice them.

    When the input channels also feed other layers (after a residual add), they are pruned
    from all of them, each refit to its own original output, under the first reader's name
    (the others are skipped with that reason). Layers reading a concatenation, or channels
    that also feed one, are skipped with the reason: filter pruning handles those.

    Example:
        >>> scheme = ChannelPruning(data=train_loader)
        >>> small, report = compress(model, evaluator, target=0.5, scheme=scheme,
        ...                          input_shape=(1, 1, 8, 8), progress=False)
        >>> report.achieved_ratio <= 0.5
        True
    """

    name = "channel_pruning"
    rank_unit = "input channels"

    def __init__(
        self,
        *,
        data: Iterable[Any] | None = None,
        num_reconstruction_samples: int = 128,
        max_rows: int = 4096,
        reconstruct: bool = True,
    ) -> None:
        super().__init__()
        self.data = data
        self.num_reconstruction_samples = check_positive_int(
            num_reconstruction_samples, "num_reconstruction_samples", "ChannelPruning"
        )
        self.max_rows = check_positive_int(max_rows, "max_rows", "ChannelPruning")
        self.reconstruct = bool(reconstruct)

    @property
    def uses_data(self) -> bool:
        """Channel pruning always samples data (for the ranking and the refit)."""
        return True

    def check_ready(self) -> None:
        if self._samples is None:
            self._samples = take_samples(
                self.data, self.num_reconstruction_samples, "ChannelPruning"
            )

    def settings(self) -> dict[str, Any]:
        return {
            "num_reconstruction_samples": self.num_reconstruction_samples,
            "max_rows": self.max_rows,
            "reconstruct": self.reconstruct,
            "samples": tensor_hash(self._samples) if self._samples is not None else None,
        }

    def group_for(self, graph: DependencyGraph, name: str) -> tuple[ChannelGroup | None, str]:
        use = graph.modules.get(name)
        if use is None or use.role not in ("conv", "linear"):
            return None, "not a Conv/Linear of the traced model"
        if len(use.inputs) != 1:
            return None, "its input is a concatenation of several channel groups"
        group = graph.groups[use.inputs[0].group]
        if group.blocked is not None:
            return None, f"its input channels are {group.blocked}"
        if group.size < 2:
            return None, "it has a single input channel"
        if group.consumers[0] != name:
            return None, (
                f"its input channels also feed {group.consumers[0]}; "
                "they are pruned (and every reader refit) with that layer"
            )
        concatenated = [c for c in group.consumers if len(graph.modules[c].inputs) != 1]
        if concatenated:
            return None, (
                f"its input channels also feed {', '.join(concatenated)} through a "
                "concatenation; filter pruning handles those channels"
            )
        return group, ""

    def rank_channels(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup, name: str
    ) -> list[int]:  # pragma: no cover - factorize_in ranks with the data it collects
        return list(range(group.size))

    def factorize_in(self, model: nn.Module, name: str) -> Factorization:
        if self._structure_only:  # shapes only: the weights are loaded afterwards
            return super().factorize_in(model, name)
        graph, group = self.group_in(model, name)
        assert self._samples is not None
        reference = self.prepared_model
        readers = list(group.consumers)
        seen = capture(model, readers, self._samples)
        targets = seen if reference is model else capture(reference, readers, self._samples)
        fits = {}
        for reader in readers:  # each layer reading the channels is refit to its old output
            design = design_matrix(model.get_submodule(reader), seen[reader][0])
            wanted = _targets(reference.get_submodule(reader), targets[reader][1])
            # An earlier pruning may have removed some of this reader's outputs already.
            still = getattr(model.get_submodule(reader), ORIGINAL_OUTPUTS, None)
            if still is not None:
                wanted = wanted[:, torch.tensor(still, device=wanted.device)]
            if design.shape[0] > self.max_rows:
                generator = torch.Generator().manual_seed(0)
                rows = torch.randperm(design.shape[0], generator=generator)[: self.max_rows]
                design, wanted = design[rows.to(design.device)], wanted[rows.to(design.device)]
            fits[reader] = _ConsumerFit(model.get_submodule(reader), group.size, design, wanted)
        return _ChannelPruningFactorization(
            scheme=self, model=model, graph=graph, group=group, name=name, fits=fits
        )
