"""Suffix-only evaluation: run the unchanged front of the network once per batch.

Scoring a layer's candidates changes only that layer (and, for some schemes, a few modules
around it), so everything computed before the first changed module is the same for every
candidate. The model is traced once with ``torch.fx``; for a layer, its graph is cut at the
earliest node any replaced module touches. Per batch the *prefix* runs once and keeps the
values the *suffix* reads; then, for each candidate, the replacements are swapped into the
suffix and only the suffix runs, feeding a per-candidate copy of the evaluator's metric
(``reset / update / compute``). At most one batch of cut values is held at a time.

The computation per candidate is the plain forward's, op for op, on the same batches, so
scores match whole-model evaluation (the tests check 1e-6; in practice they are equal).

In-place ops: a suffix op that writes into a cut value (``out += identity``, an
``nn.ReLU(inplace=True)`` fed from the prefix) would corrupt it for the next candidate.
Every tensor's version counter is checked after each candidate; a cut value that changed is
recomputed and, from then on, cloned before each candidate reads it.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_leaves

from evaluators import BatchEvaluator
from greedy_compress.swap import swapped

__all__ = ["SuffixScorer", "SuffixUnavailable", "split_graph", "trace_model"]


class SuffixUnavailable(Exception):
    """Raised when suffix-only evaluation cannot run here; the message says why.

    Internal: :func:`greedy_compress.search.build_eval_scores` catches it, warns once and
    evaluates whole models instead.
    """


class _Tracer(fx.Tracer):
    """fx's default tracer, with extra modules (by name) kept whole as leaves."""

    def __init__(self, leaves: frozenset[str]) -> None:
        super().__init__()
        self.extra_leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.extra_leaves or super().is_leaf_module(
            m, module_qualified_name
        )


def _same_outputs(expected: Any, got: Any) -> bool:
    left, right = tree_leaves(expected), tree_leaves(got)
    if len(left) != len(right):
        return False
    for a, b in zip(left, right, strict=True):
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
                return False
            if a.shape != b.shape or not torch.equal(a, b):
                return False
        elif a != b:
            return False
    return True


def trace_model(
    model: nn.Module, example: torch.Tensor, *, leaves: Collection[str] = ()
) -> fx.Graph:
    """Trace ``model`` (in eval mode) and check the trace reproduces it on ``example``.

    Args:
        model: the model; its train/eval state is restored.
        example: an input the model accepts.
        leaves: names of modules to keep whole (not traced into).

    Returns:
        The graph; its ``call_module`` and ``get_attr`` targets are names in ``model``.

    Raises:
        SuffixUnavailable: fx cannot trace the model, or the trace computes something else.

    Example:
        >>> graph = trace_model(nn.Sequential(nn.Linear(2, 2)), torch.zeros(1, 2))
        >>> [n.op for n in graph.nodes]
        ['placeholder', 'call_module', 'output']
    """
    was_training = model.training
    model.eval()
    try:
        try:
            graph = _Tracer(frozenset(leaves)).trace(model)
            traced = fx.GraphModule(model, graph)
            with torch.no_grad():
                expected, got = model(example), traced(example)
        except Exception as error:  # fx raises many kinds (TraceError, TypeError, ...)
            raise SuffixUnavailable(
                f"torch.fx cannot trace {type(model).__name__}: {type(error).__name__}: {error}"
            ) from error
    finally:
        model.train(was_training)
    if not _same_outputs(expected, got):
        raise SuffixUnavailable(
            f"the torch.fx trace of {type(model).__name__} does not reproduce its output on the "
            "example input (control flow that depends on the data?)"
        )
    return graph


def _touches(node: fx.Node, names: Collection[str]) -> bool:
    if node.op not in ("call_module", "get_attr"):
        return False
    target = str(node.target)
    return any(target == name or target.startswith(name + ".") for name in names)


def traced_through(graph: fx.Graph, names: Collection[str]) -> set[str]:
    """The ``names`` that fx traced into (not called as one module) in ``graph``."""
    return {
        name
        for node in graph.nodes
        if node.op == "call_module"
        for name in names
        if str(node.target).startswith(name + ".")
    }


@dataclass(frozen=True)
class Split:
    """A model cut in two: ``prefix(*inputs) -> tuple`` of the values ``suffix(*values)``
    reads; ``suffix`` computes the model's output and holds the modules to swap."""

    prefix: fx.GraphModule
    suffix: fx.GraphModule
    start: str  # the first suffix node, for messages


def split_graph(model: nn.Module, graph: fx.Graph, names: Collection[str]) -> Split:
    """Cut ``graph`` before the first node that calls or reads a module in ``names``.

    Parameters and buffers (``get_attr``) the suffix reads are read live, never cached.

    Raises:
        SuffixUnavailable: some name is not called by the graph, or was traced into.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
        >>> split = split_graph(net, trace_model(net, torch.zeros(1, 2)), ["2"])
        >>> split.start
        '_2'
    """
    nodes = list(graph.nodes)
    unused = [name for name in names if not any(_touches(node, [name]) for node in nodes)]
    if unused:
        raise SuffixUnavailable(f"module(s) {unused} are not called in the traced graph")
    inner = traced_through(graph, names)
    if inner:
        raise SuffixUnavailable(f"module(s) {sorted(inner)} were traced into, not called whole")
    start = next(i for i, node in enumerate(nodes) if _touches(node, names))
    head, tail = nodes[:start], nodes[start:]
    in_tail = set(tail)
    cut: list[fx.Node] = []  # head values the tail reads, in first-use order
    for node in tail:
        for arg in node.all_input_nodes:
            if arg not in in_tail and arg.op != "get_attr" and arg not in cut:
                cut.append(arg)

    prefix_graph = fx.Graph()
    prefix_env: dict[fx.Node, fx.Node] = {}
    for node in head:
        prefix_env[node] = prefix_graph.node_copy(node, lambda n: prefix_env[n])
    prefix_graph.output(tuple(prefix_env[node] for node in cut))

    suffix_graph = fx.Graph()
    suffix_env = {node: suffix_graph.placeholder(f"cut_{i}") for i, node in enumerate(cut)}

    def lookup(node: fx.Node) -> fx.Node:
        if node not in suffix_env:  # a parameter or buffer read before the cut
            suffix_env[node] = suffix_graph.node_copy(node)
        return suffix_env[node]

    for node in tail:
        if node.op == "output":
            suffix_graph.output(fx.node.map_arg(node.args[0], lookup))
        else:
            suffix_env[node] = suffix_graph.node_copy(node, lookup)
    return Split(
        prefix=fx.GraphModule(model, prefix_graph),
        suffix=fx.GraphModule(model, suffix_graph),
        start=tail[0].name,
    )


def _versions(values: tuple[Any, ...]) -> list[tuple[int, ...]]:
    return [
        tuple(t._version for t in tree_leaves(v) if isinstance(t, torch.Tensor)) for v in values
    ]


def _clone(value: Any) -> Any:
    return torch.utils._pytree.tree_map(
        lambda t: t.clone() if isinstance(t, torch.Tensor) else t, value
    )


def _storages(value: Any) -> set[int]:
    return {
        t.untyped_storage().data_ptr() for t in tree_leaves(value) if isinstance(t, torch.Tensor)
    }


def fresh_metric(evaluator: BatchEvaluator) -> BatchEvaluator:
    """An independent copy of ``evaluator``'s metric state, sharing its loader, reset."""
    metric = copy.deepcopy(evaluator, memo={id(evaluator.loader): evaluator.loader})
    metric.reset()
    return metric


class SuffixScorer:
    """Scores candidates of one model with a :class:`~evaluators.BatchEvaluator`, suffix only.

    The model is traced on first use (and again, keeping more modules whole, when a
    candidate replaces a module fx traced into).

    Args:
        model: the model; it is put in eval mode while scoring and restored.
        evaluator: supplies the batches and the metric (``reset / update / compute``).
        example: an input the model accepts, to check the trace.

    Example:
        >>> scorer = SuffixScorer(model, TopKAccuracy(loader), example)  # doctest: +SKIP
        >>> scorer.score("layer1.0.conv1", {4: {"layer1.0.conv1": small_conv}})  # doctest: +SKIP
        {4: 0.93}
    """

    def __init__(self, model: nn.Module, evaluator: BatchEvaluator, example: torch.Tensor) -> None:
        self.model = model
        self.evaluator = evaluator
        self.example = example
        self._graphs: dict[frozenset[str], fx.Graph] = {}

    def graph(self, leaves: frozenset[str] = frozenset()) -> fx.Graph:
        """The model's graph with ``leaves`` kept whole (traced once per set of leaves)."""
        if leaves not in self._graphs:
            self._graphs[leaves] = trace_model(self.model, self.example, leaves=leaves)
        return self._graphs[leaves]

    def split(self, names: Collection[str]) -> Split:
        """The model cut before the first node touching ``names``."""
        graph = self.graph()
        if traced_through(graph, names):
            graph = self.graph(frozenset(names))
        return split_graph(self.model, graph, names)

    def score(self, replacements: Mapping[int, Mapping[str, nn.Module]]) -> dict[int, Any]:
        """The metric's value for each ``rank -> {name: module}`` set of replacements.

        Raises:
            SuffixUnavailable: the model cannot be cut for these modules.
        """
        names = sorted({name for modules in replacements.values() for name in modules})
        split = self.split(names)
        for modules in replacements.values():
            for module in modules.values():
                module.eval()  # whole-model evaluation puts them in eval mode too
        metrics = {rank: fresh_metric(self.evaluator) for rank in replacements}
        cloned: set[int] = set()  # cut values a suffix op writes into
        model, was_training = self.model, self.model.training
        model.eval()
        try:
            # no_grad, not inference_mode: inference tensors have no version counter.
            with torch.no_grad():
                for inputs, targets in self.evaluator.batches(model):
                    self._score_batch(split, inputs, targets, replacements, metrics, cloned)
        finally:
            model.train(was_training)
        return {rank: metric.compute() for rank, metric in metrics.items()}

    def _score_batch(
        self,
        split: Split,
        inputs: Any,
        targets: torch.Tensor,
        replacements: Mapping[int, Mapping[str, nn.Module]],
        metrics: Mapping[int, BatchEvaluator],
        cloned: set[int],
    ) -> None:
        cut = split.prefix(inputs)
        versions = _versions(cut)
        for rank, modules in replacements.items():
            values = tuple(_clone(v) if i in cloned else v for i, v in enumerate(cut))
            with swapped(split.suffix, modules):
                outputs = split.suffix(*values)
            metrics[rank].update(outputs, targets.to(outputs.device))
            changed = [i for i, v in enumerate(_versions(cut)) if v != versions[i]]
            if changed:  # a suffix op wrote into a cut value: rebuild it, clone from now on
                others = set().union(*(_storages(v) for i, v in enumerate(cut) if i not in changed))
                if any(_storages(cut[i]) & others for i in changed):
                    raise SuffixUnavailable(
                        f"an in-place op after {split.start!r} writes into a value that shares "
                        "memory with another one computed before it"
                    )
                cloned.update(changed)
                cut = split.prefix(inputs)
                versions = _versions(cut)
