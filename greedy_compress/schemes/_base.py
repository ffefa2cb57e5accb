"""The interface every compression scheme implements, and the rank arithmetic they share.

A scheme turns one layer into a cheaper module at a given *rank* (the size knob: kept
singular values, kept channels, ...). The dictionary and the solvers speak ratios, so the
base class maps "keep this fraction of the layer's cost" to the largest rank that meets it,
rounded down to a multiple of ``multiplicity``.

Every hook a caller may use is declared on :class:`Scheme`, with a default where one makes
sense, so callers never probe for capabilities. The lifecycle, in the order the pipeline
calls the hooks:

1. :meth:`Scheme.with_data` (schemes that sample data get it; others return themselves) and
   :meth:`Scheme.check_ready` (a missing constructor argument fails before any work);
2. :meth:`Scheme.prepare` once per model (model-wide context: the channel graph, samples);
3. per layer: :meth:`Scheme.skip_reason`, :meth:`Scheme.max_rank`, the analytic
   :meth:`Scheme.cost` and :meth:`Scheme.candidates` (by default :meth:`Scheme.candidate`
   for each asked ratio);
4. :meth:`Scheme.exact_costs`: how a whole selection is priced (None: layer costs add up);
5. :meth:`Scheme.factorize_in` once per layer, then ``Factorization.replacements`` per rank
   (and ``Factorization.output_error`` per rank, for a two-level dictionary's proxy).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from greedy_compress.graph import ChannelCosts
from greedy_compress.model.cost import Cost, CostMetric, float32_reason
from greedy_compress.model.profile import LayerInfo, ModelProfile
from greedy_compress.model.statistics import InputMoment
from greedy_compress.model.swap import Replacement
from greedy_compress.schemes._equivalent import equivalent_weight

__all__ = ["Candidate", "Factorization", "Scheme"]


@dataclass(frozen=True)
class Candidate:
    """One way to compress a layer: the ratio asked for, the rank it gave, what it costs.

    ``kept_ratio`` is the fraction of the layer's cost (in the metric it was chosen for)
    really kept after rank rounding; it can differ from ``asked_ratio``.
    """

    asked_ratio: float
    rank: int
    cost: Cost
    kept_ratio: float


class Factorization(ABC):
    """A layer's decomposition, computed once and truncated to any rank."""

    @abstractmethod
    def build(self, rank: int) -> nn.Module:
        """Return a new module approximating the layer at ``rank``."""

    def replacements(self, name: str, rank: int) -> dict[str, Replacement]:
        """New modules to put into the model, by fully-qualified name, for layer ``name``.

        Most schemes replace only the layer itself; a scheme that also changes other
        modules (channel pruning shrinks the layers feeding the pruned one) overrides this.
        A replacement may also be a parameter (a layer scale sliced with the channels).
        """
        return {name: self.build(rank)}

    def build_ranks(self, ranks: tuple[int, ...]) -> nn.Module:
        """A new module at explicit per-mode ``ranks`` (one per entry of
        :meth:`Scheme.mode_ranks`: Tucker's in and out rank). The default has one mode:
        :meth:`build` at that rank."""
        (rank,) = ranks
        return self.build(rank)

    def output_error(self, rank: int, moment: InputMoment, original: nn.Module) -> float | None:
        """The layer's mean squared output error at ``rank`` on the data behind ``moment``
        (the second moment of ``original``'s inputs): ``tr(ΔW H ΔWᵀ)`` per output vector.

        By default the compressed layer's dense equivalent weight is read off by probing it
        (every decomposition computes a linear map of the same input patches); None when it
        is no such map. Schemes with a closed form (the whitened SVD's tail sum) override it.
        """
        weight = getattr(original, "weight", None)
        dense = equivalent_weight(self.build(rank), original)
        if dense is None or not isinstance(weight, torch.Tensor):
            return None
        return moment.error(weight.detach().to(torch.float64) - dense)

    def replay(self, rank: int) -> dict[str, Any] | None:
        """What rebuilding this layer at ``rank`` later needs beyond the rank (pruning: the
        kept channel indices, which came from data), as JSON-able data; None when the rank
        says it all (SVD and decompositions)."""
        return None


class Scheme(ABC):
    """A way to compress layers. Subclasses set ``name`` and the four abstract methods.

    Class attributes a subclass may set:
        name: the registry name.
        costs_interact: True when compressing one layer changes the cost of others (pruning
            removes channels from the layers around it), so a selection must be priced by
            :meth:`exact_costs`; False (default) when layer costs add up.
        rank_unit: what a rank counts, for listings (``"rank"``, ``"output channels"``...).
        manual_values: what manual mode accepts per layer besides a kept ratio (a float in
            (0, 1]): ``"ratio"`` (nothing else), ``"rank"`` (an int rank in
            ``[1, max_rank]``: SVD, CP), ``"ranks"`` (one int per entry of
            :meth:`mode_ranks`: Tucker's in and out rank), or ``"indices"`` (instead of a
            ratio: the channels to remove).
    """

    name: ClassVar[str]
    costs_interact: ClassVar[bool] = False
    rank_unit: ClassVar[str] = "rank"
    manual_values: ClassVar[str] = "ratio"

    @abstractmethod
    def skip_reason(self, layer: LayerInfo) -> str | None:
        """Why this scheme cannot handle ``layer``, or None when it can."""

    @abstractmethod
    def max_rank(self, layer: LayerInfo) -> int:
        """The rank at which the compressed layer reproduces the original exactly."""

    @abstractmethod
    def cost(self, layer: LayerInfo, rank: int) -> Cost:
        """Analytic cost of the compressed layer at ``rank`` (exact, matches measurement)."""

    @abstractmethod
    def factorize(self, module: nn.Module) -> Factorization:
        """Decompose ``module`` once; the result builds the compressed layer at any rank."""

    # Lifecycle hooks with defaults --------------------------------------------------------

    @property
    def uses_data(self) -> bool:
        """Whether the scheme samples data (then give it with :meth:`with_data`)."""
        return False

    def with_data(self, data: Iterable[Any] | None) -> Scheme:
        """This scheme, given ``data`` if it samples data and has none yet; schemes that
        need none return themselves."""
        return self

    def with_multiplicity(self, multiplicity: int) -> Scheme:
        """This scheme for ranks rounded to multiples of ``multiplicity``. Only schemes whose
        rank sets several sizes (Tucker's two core ranks) need to know; the rest return
        themselves (the rank itself is rounded by :meth:`rank_for_ratio`)."""
        return self

    def check_ready(self) -> None:  # noqa: B027 - a hook: by default nothing is missing
        """Raise a clear error when a needed constructor argument (data) is missing; called
        before any expensive work. Nothing is missing by default."""

    def prepare(
        self,
        model: nn.Module,
        *,
        example_input: torch.Tensor | None = None,
        profile: ModelProfile | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ModelProfile | None:
        """Hook run once per model before any cost is computed or layer compressed.

        :func:`~greedy_compress.build_eval_scores` calls it with the model's ``profile``;
        :func:`~greedy_compress.apply_selection` with the selection's ``details``. Schemes
        that need model-wide context (the channel-dependency graph, data) build it here and
        may return a profile whose layer costs cover every module they change. The default
        does nothing and returns ``profile``.
        """
        return profile

    def end_build(self) -> None:  # noqa: B027 - a hook: by default nothing is kept
        """Called once a model is built (:func:`~greedy_compress.schemes.build.build_compressed`,
        after its last layer): drop what was kept from one layer to the next. Nothing by
        default."""

    def settings(self) -> dict[str, Any]:
        """Constructor settings the scores depend on, recorded in the dictionary's
        fingerprint (JSON-able; empty by default, as for the SVD schemes)."""
        return {}

    def exact_costs(self) -> ChannelCosts | None:
        """How a whole selection is priced when :attr:`costs_interact` (after
        :meth:`prepare`); None, the default, when the layers' costs add up. The dictionary
        records it, so every solver prices selections exactly."""
        return None

    def factorize_in(self, model: nn.Module, name: str) -> Factorization:
        """Decompose layer ``name`` of ``model``. Schemes that need more than the layer
        (the model's graph, data) override this; by default it is :meth:`factorize`."""
        return self.factorize(model.get_submodule(name))

    def mode_ranks(self, layer: LayerInfo) -> tuple[int, ...]:
        """The largest value of each rank an explicit manual value sets (``manual_values
        "ranks"``): one mode by default, ``(max_rank,)``; Tucker: ``(R_in, R_out)``."""
        return (self.max_rank(layer),)

    def cost_at_ranks(self, layer: LayerInfo, ranks: tuple[int, ...]) -> Cost:
        """Analytic cost at explicit per-mode ``ranks`` (as many as :meth:`mode_ranks`);
        by default the one rank's :meth:`cost`."""
        (rank,) = ranks
        return self.cost(layer, rank)

    def rank_step(self, layer: LayerInfo) -> int:
        """Valid ranks of ``layer`` are multiples of this (1 by default; pruning a group split
        into heads keeps the same number of channels in each head)."""
        return 1

    def compress(self, module: nn.Module, rank: int) -> nn.Module:
        """Return a new module replacing ``module`` at ``rank``."""
        return self.factorize(module).build(rank)

    # Shared arithmetic; schemes rarely need to override these -----------------------------

    def rounding_reason(
        self, layer: LayerInfo, multiplicity: int, metric: CostMetric = "mac"
    ) -> str | None:
        """Why no candidate of ``layer`` can be rounded to a multiple of ``multiplicity`` that
        compresses it (its full rank is below the multiple, or the smallest multiple already
        costs as much as the layer), or None."""
        if multiplicity <= 1:
            return None
        top = self.max_rank(layer)
        if top < multiplicity:
            return (
                f"its largest {self.rank_unit} count {top} is below the multiplicity "
                f"{multiplicity}: no rounded candidate compresses it"
            )
        smallest = self.cost(layer, multiplicity).get(metric) / layer.cost.get(metric)
        if smallest >= 1:
            return (
                f"{multiplicity} {self.rank_unit}s (the smallest multiple of the multiplicity) "
                f"keep {smallest:.0%} of its {metric} cost: no rounded candidate compresses it"
            )
        return None

    def unsupported_reason(self, layer: LayerInfo, metric: CostMetric) -> str | None:
        """Why the layer must be skipped for ``metric``: unsupported, or nothing to save."""
        reason = self.skip_reason(layer) or float32_reason(layer.cost, metric)
        if reason is not None:
            return reason
        if self.cost(layer, 1).get(metric) >= layer.cost.get(metric):
            return f"{self.name} cannot lower its {metric} cost even at rank 1"
        return None

    def rank_for_ratio(
        self, layer: LayerInfo, ratio: float, metric: CostMetric, multiplicity: int = 1
    ) -> int:
        """Largest rank whose cost is at most ``ratio`` of the layer's, rounded to a multiple.

        The rank is rounded down to a multiple of ``multiplicity`` (but at least one
        multiple, and at most ``max_rank``), so the kept ratio may land above or below
        ``ratio``; :meth:`candidate` reports it.
        """
        budget = ratio * layer.cost.get(metric)
        low, high = 1, self.max_rank(layer)
        if self.cost(layer, low).get(metric) > budget:
            rank = low
        else:  # cost grows with rank: binary search the largest rank within budget
            while low < high:
                middle = (low + high + 1) // 2
                if self.cost(layer, middle).get(metric) <= budget:
                    low = middle
                else:
                    high = middle - 1
            rank = low
        rounded = max(multiplicity, rank // multiplicity * multiplicity)
        return min(rounded, self.max_rank(layer))

    def candidates(
        self,
        layer: LayerInfo,
        ratios: Sequence[float],
        metric: CostMetric,
        multiplicity: int = 1,
    ) -> list[Candidate]:
        """The candidates ``layer`` is scored at: by default one per asked ratio
        (:meth:`candidate`); a scheme with its own grid (quantization's bit widths)
        overrides this."""
        return [self.candidate(layer, ratio, metric, multiplicity) for ratio in ratios]

    def candidate(
        self, layer: LayerInfo, ratio: float, metric: CostMetric, multiplicity: int = 1
    ) -> Candidate:
        """The rank, cost and kept ratio for an asked ``ratio``."""
        rank = self.rank_for_ratio(layer, ratio, metric, multiplicity)
        cost = self.cost(layer, rank)
        return Candidate(
            asked_ratio=ratio,
            rank=rank,
            cost=cost,
            kept_ratio=cost.get(metric) / layer.cost.get(metric),
        )
