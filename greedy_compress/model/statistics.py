"""Layer input statistics: the second moment of what each layer multiplies by its weight.

A Linear multiplies each input feature vector ``x`` by its weight, a convolution each
unfolded input patch (all channels' kernel taps, channel-major like
``weight.reshape(out, -1)``). Over calibration data, ``H = E[x xᵀ]`` is all a data-aware
decomposition needs: the output error of any replacement weight ``W'`` on that data is
``tr((W - W') H (W - W')ᵀ)`` per output vector (:meth:`InputMoment.error`), and whitening
by the Cholesky factor of ``H`` turns the data-aware problem into a plain SVD (SVD-LLM).

One calibration pass (forward hooks under ``torch.inference_mode``) collects ``H`` for every
compressible layer, in float64. A convolution whose patches have more than ``max_features``
entries gets the channel moment instead (the second moment of its input channels over every
pixel, shared by all kernel taps), which keeps the matrices small for wide layers.
:class:`Calibration` holds the data and caches the moments per model, in memory and in an
optional file keyed by a fingerprint of the model and the sampled data.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from greedy_compress._util.constraints import bad_parameter, check_positive_int
from greedy_compress._util.io import atomic_write_bytes
from greedy_compress.model.hashing import architecture_hash, tensor_hash, weights_hash
from greedy_compress.model.modes import eval_mode
from greedy_compress.model.sampling import take_samples

__all__ = [
    "DEFAULT_MAX_FEATURES",
    "Calibration",
    "InputMoment",
    "collect_moments",
    "model_hash",
    "padded_conv_input",
    "unfold_patches",
]

DEFAULT_MAX_FEATURES = 2304  # 256 channels x 3x3: a 42 MB float64 matrix
_FORMAT = "greedy-compress/layer-statistics"


def padded_conv_input(
    layer: nn.Module, inputs: torch.Tensor
) -> tuple[torch.Tensor, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """A conv's input padded as the conv pads it, as a 2-d map (a Conv1d's gets a height
    of 1), with the kernel size, stride and dilation in two dims."""
    if not isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        raise TypeError(f"{type(layer).__name__} is not a Linear, Conv1d or Conv2d")
    padding_mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    # torch keeps the amounts per side here, also for padding="same" / "valid"
    padded = functional.pad(inputs, layer._reversed_padding_repeated_twice, mode=padding_mode)
    kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    if isinstance(layer, nn.Conv1d):
        return padded.unsqueeze(2), (1, *kernel), (1, *stride), (1, *dilation)
    return padded, tuple(kernel), tuple(stride), tuple(dilation)


def unfold_patches(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Rows of what ``layer`` multiplies by its weight: ``[positions, in_channels * taps]``,
    channel-major (``layer(x) = rows @ weight.reshape(out, -1).T + bias``).

    Example:
        >>> conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        >>> x = torch.randn(1, 2, 4, 4)
        >>> rows = unfold_patches(conv, x)
        >>> torch.allclose(rows @ conv.weight.reshape(3, -1).T,
        ...                conv(x).permute(0, 2, 3, 1).reshape(-1, 3), atol=1e-5)
        True
    """
    if isinstance(layer, nn.Linear):
        return inputs.reshape(-1, inputs.shape[-1])
    padded, kernel, stride, dilation = padded_conv_input(layer, inputs)
    columns = functional.unfold(padded, kernel, dilation=dilation, stride=stride)
    return columns.transpose(1, 2).reshape(-1, columns.shape[1])


@dataclass(frozen=True)
class InputMoment:
    """The second moment ``E[x xᵀ]`` of one layer's inputs, in float64.

    Attributes:
        matrix: ``(channels * taps)²`` over whole patches, or ``channels²`` when
            ``channel_wise`` (the channel moment, shared by every kernel tap).
        rows: how many input vectors (patches, or pixels when channel-wise) it averages.
        channels: the layer's input channels (features of a Linear).
        taps: kernel taps per channel (1 for a Linear).
        channel_wise: whether ``matrix`` is the channel moment only.
    """

    matrix: torch.Tensor
    rows: int
    channels: int
    taps: int
    channel_wise: bool = False

    @property
    def features(self) -> int:
        """Length of one input patch (``channels * taps``)."""
        return self.channels * self.taps

    def channel_matrix(self) -> torch.Tensor:
        """The channel moment ``channels²`` (for a patch moment: its taps' mean block)."""
        if self.channel_wise or self.taps == 1:
            return self.matrix
        blocks = self.matrix.reshape(self.channels, self.taps, self.channels, self.taps)
        return blocks.diagonal(dim1=1, dim2=3).mean(dim=-1)

    def patch_matrix(self) -> torch.Tensor:
        """The patch moment ``features²`` (for a channel moment: taps assumed uncorrelated)."""
        if not self.channel_wise or self.taps == 1:
            return self.matrix
        eye = torch.eye(self.taps, dtype=self.matrix.dtype, device=self.matrix.device)
        return torch.kron(self.matrix, eye)

    def error(self, delta: torch.Tensor) -> float:
        """``tr(delta H deltaᵀ)``: the mean squared output error per output vector of a
        weight change ``delta`` (any shape whose rows are output channels).

        Example:
            >>> x = torch.randn(500, 3, dtype=torch.float64)
            >>> moment = InputMoment(x.T @ x / 500, rows=500, channels=3, taps=1)
            >>> delta = torch.randn(2, 3, dtype=torch.float64)
            >>> round(moment.error(delta), 8) == round(float((x @ delta.T).pow(2).sum(1).mean()), 8)
            True
        """
        delta = delta.detach().to(self.matrix).reshape(delta.shape[0], -1)
        if not self.channel_wise or self.taps == 1:
            return float(torch.einsum("of,fg,og->", delta, self.matrix, delta))
        split = delta.reshape(delta.shape[0], self.channels, self.taps)
        return float(torch.einsum("oct,cd,odt->", split, self.matrix, split))

    def cholesky(self, damping: float, *, channels_only: bool = False) -> torch.Tensor:
        """Lower-triangular ``S`` with ``S Sᵀ = H + damping * mean(diag H) * I``.

        The damping keeps ``S`` invertible where some inputs never vary (dead channels);
        it is raised tenfold until the factorization succeeds.
        """
        matrix = self.channel_matrix() if channels_only else self.matrix
        scale = float(matrix.diagonal().mean()) or 1.0
        eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
        amount = max(damping, 1e-12)
        for _ in range(12):
            factor, info = torch.linalg.cholesky_ex(matrix + amount * scale * eye)
            if int(info) == 0:
                return factor
            amount *= 10
        raise ArithmeticError("the input moment is not positive semi-definite")

    def to_dict(self) -> dict[str, Any]:
        """Plain data with the matrix as a tensor (a ``torch.save``-able state)."""
        return {
            "matrix": self.matrix.cpu(),
            "rows": self.rows,
            "channels": self.channels,
            "taps": self.taps,
            "channel_wise": self.channel_wise,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputMoment:
        """Inverse of :meth:`to_dict`."""
        return cls(
            matrix=data["matrix"].to(torch.float64),
            rows=int(data["rows"]),
            channels=int(data["channels"]),
            taps=int(data["taps"]),
            channel_wise=bool(data["channel_wise"]),
        )


def _shape_of(layer: nn.Module) -> tuple[int, int]:
    """(input channels, kernel taps) of a Linear or a conv."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, 1
    assert isinstance(layer, (nn.Conv1d, nn.Conv2d))
    return layer.in_channels, math.prod(layer.kernel_size)


def measurable(layer: nn.Module) -> bool:
    """Whether moments can be collected for ``layer`` (a Linear or an ungrouped conv)."""
    return isinstance(layer, nn.Linear) or (
        isinstance(layer, (nn.Conv1d, nn.Conv2d)) and layer.groups == 1
    )


class _Accumulator:
    def __init__(self, layer: nn.Module, max_features: int) -> None:
        self.layer = layer
        self.channels, self.taps = _shape_of(layer)
        self.channel_wise = self.channels * self.taps > max_features and self.taps > 1
        size = self.channels if self.channel_wise else self.channels * self.taps
        self.sum = torch.zeros(size, size, dtype=torch.float64)
        self.rows = 0

    def add(self, inputs: torch.Tensor) -> None:
        if self.channel_wise:
            rows = inputs.movedim(1, -1).reshape(-1, self.channels)
        else:
            rows = unfold_patches(self.layer, inputs)
        rows = rows.to(torch.float64)
        self.sum = self.sum.to(rows.device)
        self.sum.addmm_(rows.T, rows)
        self.rows += rows.shape[0]

    def moment(self) -> InputMoment:
        return InputMoment(
            matrix=(self.sum / max(self.rows, 1)).cpu(),
            rows=self.rows,
            channels=self.channels,
            taps=self.taps,
            channel_wise=self.channel_wise,
        )


def collect_moments(
    model: nn.Module,
    names: Sequence[str],
    inputs: torch.Tensor,
    *,
    max_features: int = DEFAULT_MAX_FEATURES,
    batch_size: int = 128,
) -> dict[str, InputMoment]:
    """The input moment of each named layer over ``inputs``, in one pass over the model
    (eval mode, ``torch.inference_mode``; the model's modes are restored).

    Example:
        >>> moments = collect_moments(model, ["features.3", "classifier"], data.val_images)
        >>> tuple(moments["features.3"].matrix.shape), moments["classifier"].rows
        ((288, 288), 359)
    """
    accumulators = {name: _Accumulator(model.get_submodule(name), max_features) for name in names}

    def make_hook(accumulator: _Accumulator):
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            accumulator.add(args[0].detach())

        return hook

    handles = [
        model.get_submodule(name).register_forward_pre_hook(make_hook(accumulator))
        for name, accumulator in accumulators.items()
    ]
    device = next((p.device for p in model.parameters()), inputs.device)
    try:
        with eval_mode(model), torch.inference_mode():
            for start in range(0, inputs.shape[0], batch_size):
                model(inputs[start : start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: accumulator.moment() for name, accumulator in accumulators.items()}


def model_hash(model: nn.Module) -> str:
    """The module tree's hash and every parameter and buffer's bytes' hash, joined."""
    return f"{architecture_hash(model)}-{weights_hash(model)}"


class Calibration:
    """Calibration data and the layer input moments it gives, computed once per model.

    The moments of every Linear and ungrouped conv are collected in one pass over the
    first ``num_samples`` inputs of ``data`` and kept per model (keyed by a hash of its
    weights); with ``path`` they are also saved there and reused by later runs made for
    the same model and samples. Schemes and builds given one calibration share it.

    Args:
        data: input batches (a DataLoader yielding (inputs, targets), or tensors).
        num_samples: how many inputs to sample from ``data`` (a conv sees one patch per
            output position of each: 128 images of 16x16 give 32768 rows).
        max_features: convs with longer patches get the channel moment instead.
        path: file to cache the moments in (a torch state file, read with
            ``weights_only=True``).

    Example:
        >>> calibration = Calibration(train_loader, num_samples=64)
        >>> calibration.moments(model)["classifier"].rows
        64
    """

    def __init__(
        self,
        data: Iterable[Any] | torch.Tensor,
        *,
        num_samples: int = 128,
        max_features: int = DEFAULT_MAX_FEATURES,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        owner = "Calibration"
        self.data = data
        self.num_samples = check_positive_int(num_samples, "num_samples", owner)
        self.max_features = check_positive_int(max_features, "max_features", owner)
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise bad_parameter("path", owner, "None or a file path", path)
        self.path = None if path is None else Path(path)
        self._samples: torch.Tensor | None = None
        self._cache: dict[str, dict[str, InputMoment]] = {}

    @property
    def samples(self) -> torch.Tensor:
        """The sampled inputs (drawn from ``data`` on first use)."""
        if self._samples is None:
            if isinstance(self.data, torch.Tensor):
                self._samples = self.data[: self.num_samples].detach()
            else:
                self._samples = take_samples(self.data, self.num_samples, "Calibration")
        return self._samples

    def settings(self) -> dict[str, Any]:
        """What the moments depend on besides the model (for fingerprints)."""
        return {
            "num_samples": self.num_samples,
            "max_features": self.max_features,
            "samples": tensor_hash(self.samples),
        }

    def fingerprint(self, model: nn.Module) -> dict[str, Any]:
        """What a cached file must match: the model's hash and :meth:`settings`."""
        return {"format": _FORMAT, "model": model_hash(model), **self.settings()}

    def moments(self, model: nn.Module) -> dict[str, InputMoment]:
        """The input moment of every Linear and ungrouped conv of ``model``, by name."""
        fingerprint = self.fingerprint(model)
        key = json.dumps(fingerprint, sort_keys=True)
        if key not in self._cache:
            names = [n for n, m in model.named_modules() if n and measurable(m)]
            moments = self._load(fingerprint, names)
            if moments is None:
                moments = collect_moments(
                    model, names, self.samples, max_features=self.max_features
                )
                self._save(fingerprint, moments)
            self._cache[key] = moments
        return self._cache[key]

    def _load(self, fingerprint: dict[str, Any], names: list[str]) -> dict[str, InputMoment] | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if json.loads(state["fingerprint"]) != fingerprint:
                return None
            moments = {n: InputMoment.from_dict(v) for n, v in state["layers"].items()}
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError):
            return None  # another model's, or unreadable: collected again and overwritten
        return moments if all(n in moments for n in names) else None

    def _save(self, fingerprint: dict[str, Any], moments: dict[str, InputMoment]) -> None:
        if self.path is None:
            return
        buffer = io.BytesIO()
        state = {
            "fingerprint": json.dumps(fingerprint, sort_keys=True),
            "layers": {name: moment.to_dict() for name, moment in moments.items()},
        }
        torch.save(state, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())
