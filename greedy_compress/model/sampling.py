"""Sample inputs from a user's data, and capture what chosen modules see on them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import bad_parameter
from greedy_compress.model.modes import eval_mode

__all__ = ["capture", "take_samples"]


def take_samples(data: Any, count: int, owner: str) -> torch.Tensor:
    """The first ``count`` inputs of ``data`` (batches of tensors or of (inputs, targets)).

    Raises:
        InvalidParameterError: ``data`` is missing, not iterable, or yields no tensors.

    Example:
        >>> take_samples([(torch.zeros(4, 2), torch.zeros(4))], 3, "f").shape
        torch.Size([3, 2])
    """
    allowed = "an iterable of input batches (e.g. a DataLoader yielding (inputs, targets))"
    if data is None or isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise bad_parameter("data", owner, allowed, data)
    parts: list[torch.Tensor] = []
    have = 0
    for batch in data:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(inputs, torch.Tensor):
            raise bad_parameter("data", owner, allowed + " of tensors", type(inputs))
        parts.append(inputs[: count - have].detach())
        have += parts[-1].shape[0]
        if have >= count:
            break
    if not parts:
        raise bad_parameter("data", owner, allowed + ", not empty", data)
    return torch.cat(parts)


def capture(
    model: nn.Module, names: Sequence[str], inputs: torch.Tensor, *, batch_size: int = 128
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Run ``model`` on ``inputs`` (eval mode, no grad); return each named module's
    (input, output), concatenated over batches.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> x, y = capture(net, ["0"], torch.zeros(5, 2))["0"]
        >>> tuple(x.shape), tuple(y.shape)
        ((5, 2), (5, 3))
    """
    seen: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {n: ([], []) for n in names}

    def make_hook(name: str):
        def hook(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            seen[name][0].append(args[0].detach())
            seen[name][1].append(output.detach())

        return hook

    handles = [model.get_submodule(n).register_forward_hook(make_hook(n)) for n in names]
    device = next((p.device for p in model.parameters()), inputs.device)
    try:
        with eval_mode(model), torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                model(inputs[start : start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {n: (torch.cat(seen[n][0]), torch.cat(seen[n][1])) for n in names}
