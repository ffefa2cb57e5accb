"""Discover the compressible layers of a model by fully-qualified name, with measured costs."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.errors import ModelInputError
from greedy_compress.model.cost import Cost, measure_cost

__all__ = [
    "COMPRESSIBLE_TYPES",
    "LayerInfo",
    "ModelProfile",
    "make_example_input",
    "profile_model",
]

COMPRESSIBLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class LayerInfo:
    """Shape facts of one compressible layer, as seen on the example input.

    ``positions`` is how many output vectors the layer computes per forward pass
    (batch x output pixels for a conv, all leading dims for a Linear), so its MACs are
    ``positions * out_channels * in_channels / groups * prod(kernel_size)``.
    """

    name: str
    kind: str  # "conv1d", "conv2d" or "linear"
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: int
    bias: bool
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    cost: Cost

    @property
    def positions(self) -> int:
        """Number of output vectors per forward pass."""
        channels = self.output_shape[-1] if self.kind == "linear" else self.output_shape[1]
        total = 1
        for size in self.output_shape:
            total *= size
        return total // channels

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "name": self.name,
            "kind": self.kind,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.bias,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "cost": self.cost.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerInfo:
        """Inverse of :meth:`to_dict`."""
        padding = data["padding"]
        return cls(
            name=data["name"],
            kind=data["kind"],
            in_channels=int(data["in_channels"]),
            out_channels=int(data["out_channels"]),
            kernel_size=tuple(data["kernel_size"]),
            stride=tuple(data["stride"]),
            padding=padding if isinstance(padding, str) else tuple(padding),
            dilation=tuple(data["dilation"]),
            groups=int(data["groups"]),
            bias=bool(data["bias"]),
            input_shape=tuple(data["input_shape"]),
            output_shape=tuple(data["output_shape"]),
            cost=Cost.from_dict(data["cost"]),
        )


@dataclass(frozen=True)
class ModelProfile:
    """A model's total cost and its compressible layers, in network (call) order.

    ``unusable`` maps a layer name to why no scheme may touch it (never called, called
    more than once, ignored by the user).
    """

    model_cost: Cost
    layers: dict[str, LayerInfo]
    unusable: dict[str, str] = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()


def make_example_input(
    example_input: torch.Tensor | None,
    input_shape: Sequence[int] | None,
    owner: str,
    *,
    like: nn.Module | None = None,
) -> torch.Tensor:
    """Return the example input, building a zero tensor from ``input_shape`` if needed.

    Exactly one of the two must be given; ``input_shape`` includes the batch dimension.
    The zero tensor takes the device and floating dtype of ``like``'s first parameter.
    """
    if (example_input is None) == (input_shape is None):
        raise bad_parameter(
            "example_input",
            owner,
            "given, or else input_shape given (exactly one of them)",
            example_input if example_input is not None else input_shape,
        )
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor):
            raise bad_parameter("example_input", owner, "a torch.Tensor", type(example_input))
        return example_input
    assert input_shape is not None  # narrowed above
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise bad_parameter(
            "input_shape",
            owner,
            "a non-empty sequence of positive ints (batch dim included)",
            input_shape,
        )
    first = next(like.parameters(), None) if like is not None else None
    if first is None:
        return torch.zeros(shape)
    return torch.zeros(shape, device=first.device, dtype=first.dtype)


def _check_ignore(model: nn.Module, ignore: Iterable[str]) -> tuple[str, ...]:
    if isinstance(ignore, str):
        raise bad_parameter("ignore", "profile_model", "a list of module names", ignore)
    names = {name for name, _ in model.named_modules() if name}
    ignore = tuple(ignore)
    for item in ignore:
        if item not in names:
            close = sorted(n for n in names if item.split(".")[-1] in n)[:5] or sorted(names)[:5]
            raise bad_parameter(
                "ignore",
                "profile_model",
                "names of modules of the model, e.g. " + ", ".join(close),
                item,
            )
    return ignore


def _is_ignored(name: str, ignore: tuple[str, ...]) -> bool:
    return any(name == item or name.startswith(item + ".") for item in ignore)


def _layer_info(name: str, module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> LayerInfo:
    cost = measure_cost(module, inp)
    if isinstance(module, nn.Linear):
        return LayerInfo(
            name=name,
            kind="linear",
            in_channels=module.in_features,
            out_channels=module.out_features,
            kernel_size=(),
            stride=(),
            padding=(),
            dilation=(),
            groups=1,
            bias=module.bias is not None,
            input_shape=tuple(inp.shape),
            output_shape=tuple(out.shape),
            cost=cost,
        )
    assert isinstance(module, (nn.Conv1d, nn.Conv2d))
    padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
    return LayerInfo(
        name=name,
        kind="conv1d" if isinstance(module, nn.Conv1d) else "conv2d",
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        kernel_size=tuple(module.kernel_size),
        stride=tuple(module.stride),
        padding=padding,
        dilation=tuple(module.dilation),
        groups=module.groups,
        bias=module.bias is not None,
        input_shape=tuple(inp.shape),
        output_shape=tuple(out.shape),
        cost=cost,
    )


def profile_model(
    model: nn.Module, example_input: torch.Tensor, *, ignore: Iterable[str] = ()
) -> ModelProfile:
    """Run ``model`` once on ``example_input`` and describe its compressible layers.

    Each ``nn.Conv1d``, ``nn.Conv2d`` and ``nn.Linear`` called exactly once is listed by
    fully-qualified name, in the order the forward pass calls them, with its MACs measured by
    ``torch.utils.flop_counter`` on the input it really received. The model's train/eval
    state is restored.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 10))
        >>> profile = profile_model(net, torch.zeros(1, 1, 8, 8))
        >>> list(profile.layers), profile.layers["0"].cost.macs
        (['0', '2'], 1296)
    """
    ignore = _check_ignore(model, ignore)
    candidates = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, COMPRESSIBLE_TYPES) and name
    }
    # Per layer: (call index, input, output) of every call, so layers keep network order.
    seen: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {n: [] for n in candidates}
    call_index = itertools.count()

    def make_hook(layer_name: str):
        def hook(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
                seen[layer_name].append(
                    (next(call_index), args[0].detach().clone(), output.detach())
                )

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in candidates.items()]
    try:
        model_cost = measure_cost(model, example_input)  # in eval mode
    except Exception as error:  # the user's model on the user's input: say which input
        raise ModelInputError(
            f"The model fails on the example input of shape {tuple(example_input.shape)} "
            f"({example_input.dtype}, {example_input.device}): {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}. Check input_shape / "
            "example_input (batch dimension included)."
        ) from error
    finally:
        for handle in handles:
            handle.remove()

    order = sorted((name for name in candidates if seen[name]), key=lambda n: seen[n][0][0])
    layers: dict[str, LayerInfo] = {}
    unusable: dict[str, str] = {}
    for name in candidates:
        if not seen[name]:
            unusable[name] = "not called in the forward pass"
    for name in order:
        calls = seen[name]
        if _is_ignored(name, ignore):
            unusable[name] = "ignored by the user"
        elif len(calls) > 1:
            unusable[name] = f"called {len(calls)} times per forward pass (shared module)"
        else:
            _, inp, out = calls[0]
            layers[name] = _layer_info(name, candidates[name], inp, out)
    return ModelProfile(
        model_cost=model_cost,
        layers=layers,
        unusable=unusable,
        input_shape=tuple(example_input.shape),
    )
