"""The pruner interface (NNI's): ``calc_mask(layer, config)``, one class, one registry line.

A pruner takes the model and an NNI ``config_list`` (``sparsity`` in [0, 1), ``op_types``
with ``"default"``, ``op_names``, ``exclude``); :meth:`Pruner.compress` attaches a mask to
each configured layer's weight with ``torch.nn.utils.parametrize`` (the weight becomes
``original * mask``), in place, like NNI. The training loop calls
:meth:`~Pruner.update_epoch` at each epoch and :meth:`~Pruner.step` after each batch
(no-ops unless a pruner uses them, as AGP does).
"""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from greedy_compress._util.constraints import Constraint, Interval, bad_parameter
from greedy_compress._util.registry import Registry
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.config_list import ConfigList, ConfigSpec, resolve_config_list
from greedy_compress.model.mask import keep_largest, model_masks, set_mask
from greedy_compress.model.modules import weight_of

__all__ = [
    "SPARSITY",
    "Pruner",
    "available_pruners",
    "get_pruner",
    "load_masks",
    "magnitude_mask",
    "register_pruner",
]

SPARSITY = Interval(float, 0, 1, closed="left")


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A mask zeroing exactly ``round(sparsity * numel)`` entries of smallest magnitude
    (ties: the lower index goes first).

    Example:
        >>> magnitude_mask(torch.tensor([[0.5, -0.1], [2.0, 0.1]]), 0.5)
        tensor([[1., 0.],
                [1., 0.]])
    """
    return keep_largest(weight, weight.numel() - round(sparsity * weight.numel()))


class Pruner:
    """Base of every pruner. Subclasses set ``name`` and implement :meth:`calc_mask`.

    Class attributes a subclass may set: ``default_types`` (what ``"default"`` stands
    for), ``supported_types``, ``extra_keys`` (its own config keys, with constraints and
    defaults).

    Args:
        model: the model to prune; :meth:`compress` masks it in place.
        config_list: NNI entries, each with ``sparsity`` (the fraction of weights zeroed).
    """

    name: ClassVar[str]
    default_types: ClassVar[tuple[str, ...]] = ("Conv1d", "Conv2d", "Linear")
    supported_types: ClassVar[tuple[str, ...]] = ("Conv1d", "Conv2d", "Linear")
    extra_keys: ClassVar[dict[str, tuple[Constraint, Any]]] = {}

    def __init__(self, model: nn.Module, config_list: ConfigList) -> None:
        if not isinstance(model, nn.Module):
            raise bad_parameter("model", type(self).__name__, "an nn.Module", model)
        self.model = model
        self.configs = resolve_config_list(model, config_list, self.spec())
        self.epoch = 0
        self.steps = 0
        self.compressed = False

    @classmethod
    def spec(cls) -> ConfigSpec:
        """What this pruner's config list accepts."""
        return ConfigSpec(
            owner=cls.__name__,
            default_types=cls.default_types,
            supported_types=cls.supported_types,
            keys={"sparsity": SPARSITY, **{k: rule for k, (rule, _) in cls.extra_keys.items()}},
            required=("sparsity",),
            defaults={k: default for k, (_, default) in cls.extra_keys.items()},
        )

    @abstractmethod
    def calc_mask(self, layer: nn.Module, config: dict[str, Any]) -> torch.Tensor:
        """The mask for ``layer``'s weight (same shape; 1 keeps, 0 prunes). ``layer.weight``
        is the currently masked weight."""

    def update_epoch(self, epoch: int) -> None:
        """Called at the start of each training epoch."""
        self.epoch = int(epoch)

    def step(self) -> None:
        """Called after each training batch."""
        self.steps += 1

    def layer_config(self, name: str) -> dict[str, Any]:
        """The config a layer is pruned with (what :meth:`calc_mask` receives)."""
        return self.configs[name]

    def update_masks(self) -> None:
        """Recompute and set every configured layer's mask."""
        for name in self.configs:
            layer = self.model.get_submodule(name)
            mask = self.calc_mask(layer, self.layer_config(name))
            if mask.shape != weight_of(layer).shape:
                raise GreedyCompressError(
                    f"{type(self).__name__}.calc_mask gave a mask of shape {tuple(mask.shape)} "
                    f"for {name!r}, whose weight is {tuple(weight_of(layer).shape)}."
                )
            set_mask(layer, mask.to(weight_of(layer).dtype))

    def compress(self) -> nn.Module:
        """Mask every configured layer (in place) and return the model."""
        if self.compressed:
            raise GreedyCompressError(f"{type(self).__name__}.compress() was already called.")
        self.update_masks()
        self.compressed = True
        return self.model

    def masks(self) -> dict[str, torch.Tensor]:
        """``{"<layer>.weight": mask}`` of the model's masks."""
        return model_masks(self.model)

    def sparsities(self) -> dict[str, float]:
        """Each configured layer's fraction of zero mask entries."""
        masks = self.masks()
        return {
            name: float((masks[f"{name}.weight"] == 0).double().mean())
            for name in self.configs
            if f"{name}.weight" in masks
        }


def load_masks(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Put masks saved by ``export_model(mask_path=...)`` on ``model`` (weights-only load).

    Raises:
        GreedyCompressError: a mask names a parameter the model lacks or has another shape.
    """
    masks = torch.load(path, map_location="cpu", weights_only=True)
    for key, mask in masks.items():
        module_name, _, parameter = key.rpartition(".")
        try:
            module = model.get_submodule(module_name)
            current = getattr(module, parameter)
        except AttributeError as error:
            raise GreedyCompressError(
                f"The mask file names {key!r}, which the model lacks."
            ) from error
        if tuple(current.shape) != tuple(mask.shape):
            raise GreedyCompressError(
                f"The mask for {key!r} has shape {tuple(mask.shape)}; the parameter has "
                f"{tuple(current.shape)}."
            )
        set_mask(module, mask, parameter)
    return model


_PRUNERS: Registry[Pruner] = Registry("pruner", Pruner)


def register_pruner(cls: type[Pruner]) -> type[Pruner]:
    """Add a pruner class under its ``name`` (usable as a decorator)."""
    return _PRUNERS.register(cls)


def available_pruners() -> list[str]:
    """Names of the registered pruners, sorted."""
    return _PRUNERS.names()


def get_pruner(name: str, owner: str = "get_pruner") -> type[Pruner]:
    """The pruner class registered as ``name``."""
    return _PRUNERS.get_class(name, owner)
