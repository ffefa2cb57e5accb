"""What the decompositions with a data-aware option share: calibration data, the layer input
statistics it gives, and the checks that keep plain and data-aware scores apart.

A data-aware decomposition minimizes the layer's output error on calibration data instead of
the weight error: with ``H = E[x xᵀ]`` of the layer's inputs and ``S`` its Cholesky factor,
``||(W - W') x||`` on that data is ``||(W - W') S||_F``, so decomposing ``W S`` and undoing
``S`` afterwards (SVD-LLM's whitening) gives the best layer output at every rank. The moments
come from one :class:`~greedy_compress.model.statistics.Calibration` pass per model, collected
in :meth:`DataAwareScheme.prepare` and shared by every layer.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import BOOLEAN, Interval, bad_parameter, check
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.profile import ModelProfile
from greedy_compress.model.statistics import Calibration, InputMoment
from greedy_compress.schemes._base import Factorization, Scheme

__all__ = ["DataAwareScheme", "check_scheme_settings"]

_DAMPING = Interval(float, 0, None)


def check_scheme_settings(scheme: Scheme, details: Mapping[str, Any] | None) -> None:
    """Refuse to build a selection with a scheme whose data-awareness differs from the one
    the selection's dictionary was scored with (``details["scheme_settings"]``).

    Raises:
        GreedyCompressError: the selection was scored data-aware and the scheme is plain, or
            the other way round.
    """
    if not details or not isinstance(details.get("scheme_settings"), Mapping):
        return
    scored = bool(details["scheme_settings"].get("data_aware", False))
    mine = bool(scheme.settings().get("data_aware", False))
    if scored != mine:
        kind = "data-aware" if scored else "plain"
        raise GreedyCompressError(
            f"The selection was scored with {kind} {scheme.name}; build it with the same "
            f"scheme (e.g. scheme={type(scheme).__name__}(data_aware={scored}"
            + (", data=...)" if scored else ")")
            + "), or its layers get other weights than the dictionary scored."
        )


class DataAwareScheme(Scheme):
    """Base of the decompositions with a data-aware option (plain by default).

    Subclasses implement :meth:`decompose`, given the layer's input moment when data-aware.

    Args:
        data_aware: minimize the layer's output error on calibration data (True) instead of
            the weight error (False, the default).
        data: calibration input batches (e.g. a training DataLoader), or a
            :class:`~greedy_compress.model.statistics.Calibration` to share (and cache)
            the statistics between schemes and runs. Needed when ``data_aware``.
        damping: added to the inputs' second moment, as a fraction of its mean diagonal, so
            that its Cholesky factor stays well conditioned where inputs never vary.
    """

    def __init__(
        self,
        *,
        data_aware: bool = False,
        data: Iterable[Any] | Calibration | None = None,
        damping: float = 0.01,
    ) -> None:
        owner = type(self).__name__
        self.data_aware = check(data_aware, BOOLEAN, "data_aware", owner)
        self.damping = check(damping, _DAMPING, "damping", owner)
        if not isinstance(data, (Calibration, type(None))) and (
            isinstance(data, (str, bytes)) or not isinstance(data, Iterable)
        ):
            raise bad_parameter("data", owner, "None, input batches or a Calibration", data)
        self.calibration = (
            data if isinstance(data, Calibration) or data is None else Calibration(data)
        )
        self._model: nn.Module | None = None
        self._moments: dict[str, InputMoment] = {}

    @abstractmethod
    def decompose(self, module: nn.Module, moment: InputMoment | None) -> Factorization:
        """Decompose ``module``: plainly when ``moment`` is None, else data-aware."""

    @property
    def uses_data(self) -> bool:
        """A data-aware scheme samples calibration data; a plain one none."""
        return self.data_aware

    def with_data(self, data: Iterable[Any] | Calibration | None) -> Scheme:
        if not self.data_aware or data is None or self.calibration is not None:
            return self
        given = copy.copy(self)
        given.calibration = data if isinstance(data, Calibration) else Calibration(data)
        given._moments = {}
        return given

    def check_ready(self) -> None:
        if not self.data_aware:
            return
        if self.calibration is None:
            raise bad_parameter(
                "data",
                type(self).__name__,
                "input batches or a Calibration when data_aware=True (the layers' input "
                "statistics come from them)",
                None,
            )
        self.calibration.samples  # noqa: B018 - draws the samples: bad data fails here

    def settings(self) -> dict[str, Any]:
        if not self.data_aware:
            return {}  # plain scores depend on no setting (as before the option existed)
        self.check_ready()
        assert self.calibration is not None
        return {"data_aware": True, "damping": self.damping, **self.calibration.settings()}

    def prepare(
        self,
        model: nn.Module,
        *,
        example_input: torch.Tensor | None = None,
        profile: ModelProfile | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ModelProfile | None:
        """Collect the layers' input moments (data-aware), after checking that a selection's
        ``details`` were scored with the same data-awareness."""
        check_scheme_settings(self, details)
        if self.data_aware:
            self.check_ready()
            assert self.calibration is not None
            self._model, self._moments = model, self.calibration.moments(model)
        return profile

    def moment(self, name: str) -> InputMoment:
        """The input moment of layer ``name`` of the prepared model.

        Raises:
            GreedyCompressError: :meth:`prepare` has not run, or the layer has none.
        """
        if name not in self._moments:
            raise GreedyCompressError(
                f"Data-aware {self.name} needs the input statistics of layer {name!r}: call "
                "prepare(model, example_input=...) first (build_eval_scores and "
                "apply_selection do)."
            )
        return self._moments[name]

    def factorize(self, module: nn.Module) -> Factorization:
        if self.data_aware:
            raise GreedyCompressError(
                f"Data-aware {self.name} needs the layer's input statistics, so it needs the "
                "model: use factorize_in(model, name) after prepare()."
            )
        return self.decompose(module, None)

    def factorize_in(self, model: nn.Module, name: str) -> Factorization:
        module = model.get_submodule(name)
        return self.decompose(module, self.moment(name) if self.data_aware else None)
