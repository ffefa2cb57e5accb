"""Channel pruning with weight reconstruction (AIMET's method, after He et al. 2017).

For a layer and a number of input channels to keep: rank the input channels by how much
they contribute to the layer's output on sampled data, keep the strongest, remove the others
from the layer and from the layers producing them (with their BatchNorms and depthwise convs),
then refit the layer's weights by least squares so that, on the sampled data, its output
from the kept channels matches the original model's output.

With ``statistics=True`` the ranking and the refit come from the layer input statistics
(:mod:`greedy_compress.model.statistics`) instead of sampled rows: the least-squares normal
equations of the original output are ``H w = H w_original`` with ``H`` the second moment of
the layer's input patches, so one calibration pass over the samples serves every layer, with
every position of every sample (no ``max_rows`` cap) and no model run per layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from greedy_compress._util.constraints import check_positive_int
from greedy_compress.errors import GreedyCompressError
from greedy_compress.graph import (
    ORIGINAL_OUTPUTS,
    ChannelGroup,
    DependencyGraph,
    finish_replacements,
    group_keeps,
    keeps_replacements,
)
from greedy_compress.model.hashing import tensor_hash
from greedy_compress.model.modules import weight_of
from greedy_compress.model.resume import Cut, can_run_to, run_to
from greedy_compress.model.sampling import take_samples
from greedy_compress.model.statistics import Calibration, InputMoment
from greedy_compress.model.swap import Replacement
from greedy_compress.schemes._base import Factorization
from greedy_compress.schemes._consumer_fit import ConsumerFit
from greedy_compress.schemes._pruning import GroupPruning, PruningFactorization
from greedy_compress.schemes._rows import (
    _chosen_rows,
    _design_rows,
    _positions,
    _target_rows,
    _targets,  # noqa: F401 - importable from here, as before
    design_matrix,
    design_rows,
    sampled_rows,
)

__all__ = ["ChannelPruning", "design_matrix", "design_rows", "sampled_rows"]


class _ChannelPruningFactorization(PruningFactorization):
    def __init__(
        self,
        *,
        scheme: ChannelPruning,
        model: nn.Module,
        graph: DependencyGraph,
        group: ChannelGroup,
        name: str,
        fits: dict[str, ConsumerFit],
    ) -> None:
        energy = torch.stack([fit.energy for fit in fits.values()]).sum(dim=0)
        order = torch.sort(energy, descending=True, stable=True).indices.tolist()
        super().__init__(model, graph, group, order, name=name)
        self.scheme, self.fits = scheme, fits

    def replacements(self, name: str, rank: int) -> dict[str, Replacement]:
        keep = self.keep(rank)
        keeps = group_keeps(self.graph, self.group, keep)
        modules = keeps_replacements(self.graph, keeps)
        if self.scheme.reconstruct and rank < self.group.size:  # nothing removed: keep as is
            for reader, fit in self.fits.items():
                fit.refit(modules[reader], keep)  # type: ignore[arg-type]
        return finish_replacements(self.model, self.graph, keeps, modules)


class ChannelPruning(GroupPruning):
    """Prune a layer's input channels and reconstruct its weights by least squares.

    Args:
        data: input batches (e.g. a training DataLoader yielding (inputs, targets)).
        num_reconstruction_samples: how many inputs of ``data`` to sample.
        max_rows: at most this many output positions are used per least-squares fit
            (randomly chosen, seeded), which bounds time and memory.
        reconstruct: refit the weights (True, AIMET's method) or only slice them.
        statistics: rank and refit from the layer input statistics of the
            ``num_reconstruction_samples`` samples (every position, one calibration pass for
            all layers; see the module docstring) instead of ``max_rows`` sampled rows.

    When the input channels also feed other layers (after a residual add, or a
    concatenation), they are pruned from all of them, each refit to its own original
    output, under the first reader's name (the others are skipped with that reason). Layers
    reading a concatenation of several groups, or channels that also feed a grouped conv,
    are skipped with the reason: filter pruning handles those.

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
        statistics: bool = False,
    ) -> None:
        super().__init__()
        self.data = data
        self.num_reconstruction_samples = check_positive_int(
            num_reconstruction_samples, "num_reconstruction_samples", "ChannelPruning"
        )
        self.max_rows = check_positive_int(max_rows, "max_rows", "ChannelPruning")
        self.reconstruct = bool(reconstruct)
        self.statistics = bool(statistics)
        self._calibration: Calibration | None = None
        self._targets_for: tuple[int, int] | None = None
        self._target_cache: dict[str, torch.Tensor] = {}
        self._cut: Cut | None = None
        self._channels_last: tuple[torch.Tensor, torch.Tensor] | None = None

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
        settings = {
            "num_reconstruction_samples": self.num_reconstruction_samples,
            "max_rows": self.max_rows,
            "reconstruct": self.reconstruct,
            "samples": tensor_hash(self._samples) if self._samples is not None else None,
        }
        if self.statistics:  # only then: plain dictionaries keep their fingerprints
            settings["statistics"] = True
        return settings

    def _moments(self, reference: nn.Module) -> dict[str, InputMoment]:
        assert self._samples is not None
        if self._calibration is None or self._calibration.data is not self._samples:
            self._calibration = Calibration(self._samples, num_samples=len(self._samples))
        return self._calibration.moments(reference)

    def group_for(self, graph: DependencyGraph, name: str) -> tuple[ChannelGroup | None, str]:
        use = graph.modules.get(name)
        if use is None or use.role not in ("conv", "linear"):
            return None, "not a Conv/Linear of the traced model"
        if len({s.group for s in use.inputs}) != 1:
            return None, "its input is a concatenation of several channel groups"
        group = graph.groups[use.inputs[0].group]
        if group.blocked is not None:
            return None, f"its input channels are {group.blocked}"
        if group.size // group.parts < 2:
            return None, "it has a single input channel" + (" per head" if group.parts > 1 else "")
        if name in group.producers or name in group.carriers:
            return None, (
                "its output channels are tied to its own input channels (by a residual add "
                "through a depthwise conv), so the refit cannot keep its outputs; "
                "filter pruning prunes those channels"
            )
        owner = next((c for c in group.consumers if graph.in_model(c)), name)
        if owner != name:
            return None, (
                f"its input channels also feed {owner}; "
                "they are pruned (and every reader refit) with that layer"
            )
        if graph.stacked_with(group.id):
            return None, (
                "its input channels are laid side by side with others of equal width in one "
                "reshape (a fused qkv projection); head_pruning and snp prune them together"
            )
        grouped = [c for c in group.consumers if graph.modules[c].groups > 1]
        if grouped:
            return None, (
                f"its input channels also feed the grouped conv {grouped[0]}, which the "
                "least-squares refit does not handle; filter pruning prunes those channels"
            )
        return group, ""

    def rank_channels(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup, name: str
    ) -> list[int]:  # pragma: no cover - factorize_in ranks with the data it collects
        return list(range(group.size))

    def _reference_targets(self, readers: list[str]) -> dict[str, torch.Tensor]:
        """The prepared model's output rows of ``readers`` (what refits aim at), sampled once
        for every layer reading a prunable group, in one pass."""
        assert self._samples is not None and self._graph is not None
        key = (id(self._graph), id(self._samples))
        if self._targets_for != key:
            self._targets_for, self._target_cache = key, {}
        missing = [r for r in readers if r not in self._target_cache]
        if missing:
            wanted = set(missing).union(*(g.consumers for g in self._groups.values()))
            wanted -= set(self._target_cache)
            self._target_cache.update(
                sampled_rows(
                    self._graph.view,
                    dict.fromkeys(sorted(wanted), _target_rows),
                    self._run_samples(self._graph),
                    self.max_rows,
                )
            )
        return {r: self._target_cache[r] for r in readers}

    def _run_samples(self, graph: DependencyGraph) -> torch.Tensor:
        """The samples as the model runs fastest: image batches channels-last (convs run
        faster that way on CPUs; the values are the same but for rounding), unless the
        model's trace reshapes with ``view``, which that memory layout can break."""
        assert self._samples is not None
        samples = self._samples
        views = graph.traced is None or any(
            n.op == "call_method" and n.target in ("view", "as_strided")
            for n in graph.traced.graph.nodes
        )
        if samples.dim() != 4 or views:
            return samples
        if self._channels_last is None or self._channels_last[0] is not samples:
            self._channels_last = (samples, samples.contiguous(memory_format=torch.channels_last))
        return self._channels_last[1]

    def _designs(
        self, model: nn.Module, graph: DependencyGraph, group: ChannelGroup, readers: list[str]
    ) -> dict[str, torch.Tensor]:
        """The readers' sampled design rows in ``model`` as it is now.

        A model being built (a copy of the prepared one, pruned layer by layer) is run from
        where the previous layer's run cut (:func:`~greedy_compress.model.resume.run_to`),
        so its prefix runs about once in all; the cut is kept until :meth:`end_build`. Each
        reader's rows are gathered at the drawn positions only.
        """
        assert self._samples is not None
        samples, view = self._run_samples(graph), graph.view
        if graph.traced is None or not can_run_to(graph.traced, readers):
            return sampled_rows(view, dict.fromkeys(readers, _design_rows), samples, self.max_rows)
        kept: dict[str, list[torch.Tensor]] = {r: [] for r in readers}

        def on_input(reader: str, first: int, inputs: torch.Tensor) -> None:
            layer = view.get_submodule(reader)
            per = _positions(layer, inputs)
            count = per * inputs.shape[0]
            chosen = _chosen_rows(per * samples.shape[0], self.max_rows)
            if chosen is None:
                rows = torch.arange(count)
            else:
                low = first * per
                rows = chosen[(chosen >= low) & (chosen < low + count)] - low
            kept[reader].append(design_rows(layer, inputs.detach(), rows.to(inputs.device)))

        building = model is not self._model
        changes = [*group.members, *(m for g in group.parted for m in graph.groups[g].members)]
        cut, self._cut = self._cut, None
        self._cut = run_to(
            graph.traced,
            view,
            samples,
            readers,
            on_input,
            changes=changes if building else None,
            cut=cut if building else None,
        )
        return {reader: torch.cat(found) for reader, found in kept.items()}

    def end_build(self) -> None:
        """Drop the values kept between the layers of a build."""
        self._cut = None

    def factorize_in(self, model: nn.Module, name: str) -> Factorization:
        if self._structure_only:  # shapes only: the weights are loaded afterwards
            return super().factorize_in(model, name)
        graph, group = self.group_in(model, name)
        assert self._samples is not None and self._graph is not None
        view = graph.view
        readers = list(group.consumers)
        if self.statistics:
            reference = self._graph.view  # the prepared model, as the graph names its layers
            moments = self._moments(reference)
            missing = [r for r in readers if r not in moments]
            if missing:
                raise GreedyCompressError(
                    f"ChannelPruning(statistics=True) has no input statistics for layer "
                    f"{missing[0]!r} (a layer inside a module the calibration pass does not "
                    "see); use statistics=False for this model."
                )
            fits = {
                reader: ConsumerFit.from_moment(
                    view.get_submodule(reader),
                    graph.modules[reader].inputs,
                    group.id,
                    moments[reader],
                    weight_of(reference.get_submodule(reader)),
                    getattr(view.get_submodule(reader), ORIGINAL_OUTPUTS, None),
                )
                for reader in readers
            }
            return _ChannelPruningFactorization(
                scheme=self, model=model, graph=graph, group=group, name=name, fits=fits
            )
        designs = self._designs(model, graph, group, readers)
        targets = self._reference_targets(readers)
        fits = {}
        for reader in readers:  # each layer reading the channels is refit to its old output
            layer = view.get_submodule(reader)
            design, wanted = designs[reader], targets[reader]
            # An earlier pruning may have removed some of this reader's outputs already.
            still = getattr(layer, ORIGINAL_OUTPUTS, None)
            if still is not None:
                wanted = wanted[:, torch.tensor(still, device=wanted.device)]
            layout = graph.modules[reader].inputs
            fits[reader] = ConsumerFit(layer, layout, group.id, design, wanted)
        return _ChannelPruningFactorization(
            scheme=self, model=model, graph=graph, group=group, name=name, fits=fits
        )
