"""Score one model's candidates with a :class:`~evaluators.BatchEvaluator`, suffix only.

Scoring a layer's candidates changes only that layer (and, for some schemes, a few modules
around it), so everything computed before the first changed module is the same for every
candidate. The model is traced once with ``torch.fx`` and cut per layer
(:mod:`~greedy_compress.dictionary.suffix.stages`); several layers are scored in one pass
over the data (:mod:`~greedy_compress.dictionary.suffix.passes`), their candidates side by
side in threads (:mod:`~greedy_compress.dictionary.suffix.workers`). The computation per
candidate is the plain forward's, op for op, on the same batches, so scores match
whole-model evaluation (the tests check 1e-6; in practice they are equal).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import torch
from torch import fx, nn

from evaluators import BatchEvaluator
from greedy_compress.dictionary.suffix.passes import Pass, Replacements
from greedy_compress.dictionary.suffix.stages import (
    SuffixUnavailable,
    check_cuttable,
    split_stages,
    traced_through,
)
from greedy_compress.dictionary.suffix.workers import worker_pool
from greedy_compress.errors import GraphTraceError
from greedy_compress.model.modes import eval_mode
from greedy_compress.model.trace import trace_model

__all__ = ["SuffixScorer"]


class SuffixScorer:
    """Scores candidates of one model with a :class:`~evaluators.BatchEvaluator`, suffix only.

    The model is traced on first use (and again, keeping more modules whole, when a
    candidate replaces a module fx traced into).

    Args:
        model: the model; it is put in eval mode while scoring and restored. With several
            ``workers`` its modules run in several threads at once, so their ``forward``
            must not write to the module (no caching into attributes).
        evaluator: supplies the batches and the metric (``reset / update / compute``).
        example: an input the model accepts, to check the trace.
        workers: candidates scored at once, in threads; torch's threads are shared
            between them. See :func:`default_workers`.

    Example:
        >>> from greedy_compress.schemes import WeightSVD
        >>> scorer = SuffixScorer(model, evaluator, example_input)
        >>> small = WeightSVD().compress(model.classifier, 8)
        >>> scores = scorer.score({8: {"classifier": small}, 10: {"classifier": model.classifier}})
        >>> scores[10] == evaluator(model)
        True
    """

    def __init__(
        self,
        model: nn.Module,
        evaluator: BatchEvaluator,
        example: torch.Tensor,
        *,
        workers: int = 1,
    ) -> None:
        self.model = model
        self.evaluator = evaluator
        self.example = example
        self.workers = workers
        self._graphs: dict[frozenset[str], fx.Graph] = {}

    def graph(self, leaves: frozenset[str] = frozenset()) -> fx.Graph:
        """The model's graph with ``leaves`` kept whole (traced once per set of leaves)."""
        if leaves not in self._graphs:
            try:
                traced = trace_model(self.model, leaves=leaves, example=self.example)
            except GraphTraceError as error:
                raise SuffixUnavailable(str(error)) from error
            self._graphs[leaves] = traced.graph
        return self._graphs[leaves]

    def leaves_for(self, names: Collection[str]) -> frozenset[str]:
        """The leaves of the graph in which ``names`` can be cut (see :meth:`graph`).

        Raises:
            SuffixUnavailable: the model cannot be traced, or not cut for these modules.
        """
        leaves: frozenset[str] = frozenset()
        if traced_through(self.graph(), names):
            leaves = frozenset(names)
        check_cuttable(self.graph(leaves), names)
        return leaves

    def score(self, replacements: Replacements) -> dict[int, Any]:
        """The metric's value for each ``rank -> {name: module}`` set of replacements.

        Raises:
            SuffixUnavailable: the model cannot be cut for these modules.
        """
        (result,) = self.score_layers([replacements])
        if isinstance(result, SuffixUnavailable):
            raise result
        return result

    def score_layers(
        self, layers: Sequence[Replacements]
    ) -> list[dict[int, Any] | SuffixUnavailable]:
        """:meth:`score` for several layers, in one pass over the data where they share a
        graph; a layer that cannot be scored this way gets the reason instead."""
        results: list[dict[int, Any] | SuffixUnavailable | None] = [None] * len(layers)
        groups: dict[frozenset[str], list[int]] = {}
        for index, replacements in enumerate(layers):
            names = {name for modules in replacements.values() for name in modules}
            try:
                groups.setdefault(self.leaves_for(names), []).append(index)
            except SuffixUnavailable as why:
                results[index] = why
        for leaves, indices in groups.items():
            passed = self._pass(self.graph(leaves), [layers[i] for i in indices])
            for index, result in zip(indices, passed, strict=True):
                results[index] = result
        return results  # type: ignore[return-value]  # every entry is set

    def _pass(
        self, graph: fx.Graph, layers: Sequence[Replacements]
    ) -> list[dict[int, Any] | SuffixUnavailable]:
        """Score ``layers`` (all cuttable in ``graph``) in one pass over the data."""
        name_sets = [{n for modules in r.values() for n in modules} for r in layers]
        stages = split_stages(self.model, graph, name_sets)
        order = sorted(range(len(layers)), key=lambda i: stages[i].position)
        chain = [stages[i] for i in order]
        for replacements in layers:
            for modules in replacements.values():
                for module in modules.values():
                    if isinstance(module, nn.Module):  # not a parameter
                        module.eval()  # whole-model evaluation puts them in eval mode too
        count = max(1, min(self.workers, max(map(len, layers))))
        with eval_mode(self.model), torch.no_grad(), worker_pool(count) as workers:
            run = Pass(chain, [layers[i] for i in order], self.evaluator, workers)
            for inputs, targets in self.evaluator.batches(self.model):
                run.batch(inputs, targets)
        results = run.results()
        return [results[order.index(i)] for i in range(len(layers))]
