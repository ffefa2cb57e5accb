"""Suffix-only evaluation: run the unchanged front of the network once per batch.

Scoring a layer's candidates changes only that layer (and, for some schemes, a few modules
around it), so everything computed before the first changed module is the same for every
candidate. The model is traced once with ``torch.fx``; for a layer, its graph is cut at the
earliest node any replaced module touches: the *cut values* are what the nodes before the
cut computed and the nodes after it read. For each candidate only the *suffix* (the nodes
after the cut) runs, with the candidate's modules passed in, feeding a per-candidate copy of
the evaluator's metric (``reset / update / compute``).

Several layers are scored in one pass over the data, in graph order: per batch, each
layer's *advance* graph brings the previous layer's cut values up to its own, so the
unchanged network runs once per batch for the whole pass instead of once per layer (the
ResNet benchmark's fronts cost as much as six whole evaluations per batch otherwise). One
layer's cut values (two layers' when they share a round, see :class:`_Pass`) for one batch
are held at a time.

The computation per candidate is the plain forward's, op for op, on the same batches, so
scores match whole-model evaluation (the tests check 1e-6; in practice they are equal).

Candidates run in parallel threads (``workers``), each with its share of torch's threads.
On CPU the convolutions of small networks gain little from torch's intra-op threads (one
forward of the benchmark ResNet is 1.1x faster on 2 threads than on 1), while two forwards
side by side use both cores fully. The model's own modules are never swapped or changed.

In-place ops: a suffix op that writes into a cut value (``out += identity``, an
``nn.ReLU(inplace=True)`` fed from before the cut) would corrupt it for the other
candidates. So in a layer's first round every candidate gets its own copy of every cut
value, and the version counters of the copies show which ones the suffix writes into; from
then on only those are copied. A write into an uncopied value after that (one that depends
on the candidate) is caught by the originals' version counters and the batch is run again.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_leaves

from evaluators import BatchEvaluator

__all__ = [
    "Stage",
    "SuffixScorer",
    "SuffixUnavailable",
    "check_cuttable",
    "default_workers",
    "split_stages",
    "trace_model",
]

_MAX_DEFAULT_WORKERS = 4  # each worker holds one candidate's activations at a time


class SuffixUnavailable(Exception):
    """Raised when suffix-only evaluation cannot run here; the message says why.

    Internal: :func:`greedy_compress.dictionary.build.build_eval_scores` catches it, warns once and
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


def check_cuttable(graph: fx.Graph, names: Collection[str]) -> None:
    """Raise :class:`SuffixUnavailable` unless ``graph`` calls every one of ``names`` whole."""
    nodes = list(graph.nodes)
    unused = [name for name in names if not any(_touches(node, [name]) for node in nodes)]
    if unused:
        raise SuffixUnavailable(f"module(s) {unused} are not called in the traced graph")
    inner = traced_through(graph, names)
    if inner:
        raise SuffixUnavailable(f"module(s) {sorted(inner)} were traced into, not called whole")


def _call_candidate(candidate: Mapping[str, nn.Module], name: str, *args: Any, **kwargs: Any):
    """What a suffix calls in place of module ``name``: the candidate's module."""
    return candidate[name](*args, **kwargs)


def _candidate_attr(candidate: Mapping[str, nn.Module], target: str) -> Any:
    """What a suffix reads in place of parameter or buffer ``target`` of a replaced module."""
    for name, module in candidate.items():
        if target == name:
            return module
        if target.startswith(name + "."):
            return operator.attrgetter(target[len(name) + 1 :])(module)
    raise KeyError(target)


@dataclass(frozen=True)
class Stage:
    """One layer's part of a pass over the network.

    ``advance(*values) -> cut``: from the previous stage's cut values (the first stage: the
    model's inputs) to this stage's. ``suffix(*cut, candidate)``: the model's output with
    ``candidate`` (``{name: module}``) in place of the modules it names.
    """

    advance: fx.GraphModule
    suffix: fx.GraphModule
    position: int  # index of the first suffix node in the graph
    start: str  # its name, for messages


def _cut_values(nodes: list[fx.Node], start: int) -> list[fx.Node]:
    """Nodes before ``start`` read from ``start`` on, in first-use order."""
    tail = set(nodes[start:])
    cut: dict[fx.Node, None] = {}
    for node in nodes[start:]:
        for arg in node.all_input_nodes:
            if arg not in tail and arg.op != "get_attr":
                cut.setdefault(arg)
    return list(cut)


def split_stages(
    model: nn.Module, graph: fx.Graph, name_sets: Sequence[Collection[str]]
) -> list[Stage]:
    """One :class:`Stage` per set of names, for a pass in the order of ``position``.

    Each stage is cut before the first node that calls or reads a module of its set; its
    advance starts from the cut of the stage before it in graph order. Parameters and
    buffers (``get_attr``) are read live, never cached.

    Raises:
        SuffixUnavailable: some name is not called by the graph, or was traced into.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
        >>> graph = trace_model(net, torch.zeros(1, 2))
        >>> [stage.start for stage in split_stages(net, graph, [["2"], ["0"]])]
        ['_2', '_0']
    """
    nodes = list(graph.nodes)
    positions = []
    for names in name_sets:
        check_cuttable(graph, names)
        positions.append(next(i for i, node in enumerate(nodes) if _touches(node, names)))
    stages: dict[int, Stage] = {}
    previous: tuple[int, list[fx.Node]] | None = None
    for index in sorted(range(len(name_sets)), key=positions.__getitem__):
        position = positions[index]
        cut = _cut_values(nodes, position)
        stages[index] = Stage(
            advance=fx.GraphModule(model, _advance_graph(nodes, previous, position, cut)),
            suffix=fx.GraphModule(model, _suffix_graph(nodes, position, cut, name_sets[index])),
            position=position,
            start=nodes[position].name,
        )
        previous = position, cut
    return [stages[index] for index in range(len(name_sets))]


def _advance_graph(
    nodes: list[fx.Node],
    previous: tuple[int, list[fx.Node]] | None,
    position: int,
    cut: list[fx.Node],
) -> fx.Graph:
    """The graph from the previous stage's cut values (or the model inputs) to ``cut``."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    if previous is None:
        span = nodes[:position]  # starts with the model's placeholders
    else:
        before, before_cut = previous
        env.update({node: graph.placeholder(f"cut_{i}") for i, node in enumerate(before_cut)})
        span = nodes[before:position]

    def lookup(node: fx.Node) -> fx.Node:
        if node not in env:  # a parameter or buffer read before this span
            env[node] = graph.node_copy(node)
        return env[node]

    for node in span:
        env[node] = graph.node_copy(node, lookup)
    graph.output(tuple(lookup(node) for node in cut))
    return graph


def _suffix_graph(
    nodes: list[fx.Node], position: int, cut: list[fx.Node], names: Collection[str]
) -> fx.Graph:
    """The graph from ``cut`` to the output, calling the replaced modules of a
    ``candidate`` passed as the last input."""
    graph = fx.Graph()
    env = {node: graph.placeholder(f"cut_{i}") for i, node in enumerate(cut)}
    candidate = graph.placeholder("candidate")

    def lookup(node: fx.Node) -> fx.Node:
        if node not in env:  # a parameter or buffer read before the cut
            env[node] = convert(node)
        return env[node]

    def convert(node: fx.Node) -> fx.Node:
        if node.op == "call_module" and str(node.target) in names:
            args = fx.node.map_arg(node.args, lookup)
            kwargs = fx.node.map_arg(node.kwargs, lookup)
            return graph.call_function(
                _call_candidate, (candidate, str(node.target), *args), kwargs
            )
        if node.op == "get_attr" and _touches(node, names):
            return graph.call_function(_candidate_attr, (candidate, str(node.target)))
        return graph.node_copy(node, lookup)

    for node in nodes[position:]:
        if node.op == "output":
            graph.output(fx.node.map_arg(node.args[0], lookup))
        else:
            env[node] = convert(node)
    return graph


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


def default_workers(model: nn.Module) -> int:
    """How many candidates to score at once by default: on CPU one per torch thread (at
    most 4, as each holds a batch of activations), elsewhere 1 (a GPU runs one at a time).

    Example:
        >>> default_workers(nn.Linear(2, 2)) == min(torch.get_num_threads(), 4)
        True
    """
    devices = {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()}
    if devices - {"cpu"}:
        return 1
    return max(1, min(torch.get_num_threads(), _MAX_DEFAULT_WORKERS))


# A candidate's work on one batch: (suffix, its modules, the cut values, which to copy).
_Job = tuple[fx.GraphModule, Mapping[str, nn.Module], tuple[Any, ...], Collection[int]]


class _Workers:
    """Runs candidates' suffixes, in this thread or in a pool of threads, each pool thread
    with ``threads`` torch threads."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pool = ThreadPoolExecutor(count) if count > 1 else None
        self.threads = max(1, torch.get_num_threads() // count)

    def run(self, jobs: Mapping[Any, _Job]) -> dict[Any, tuple[Any, set[int]]]:
        """``key -> (suffix output, indices of the copied cut values it wrote into)`` for
        each ``key -> (suffix, modules, cut values, indices of the values to copy)``."""
        if self.pool is None or len(jobs) == 1:
            return {key: _forward(*job) for key, job in jobs.items()}
        futures = {key: self.pool.submit(self._pooled, *job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}

    def _pooled(self, *job: Any) -> tuple[Any, set[int]]:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # per OS thread; the caller's is restored
        return _forward(*job)


def _forward(
    suffix: fx.GraphModule,
    modules: Mapping[str, nn.Module],
    cut: tuple[Any, ...],
    copies: Collection[int],
) -> tuple[Any, set[int]]:
    # Copied here, so at most one set of copies per worker exists at a time.
    values = tuple(_clone(v) if i in copies else v for i, v in enumerate(cut))
    before = _versions(values)
    # no_grad (thread-local), not inference_mode: inference tensors have no version counter.
    with torch.no_grad():
        output = suffix(*values, modules)
    after = _versions(values)
    return output, {i for i in copies if after[i] != before[i]}


@contextmanager
def _workers(count: int) -> Iterator[_Workers]:
    threads = torch.get_num_threads()
    workers = _Workers(count)
    try:
        yield workers
    finally:
        if workers.pool is not None:
            workers.pool.shutdown()
            # torch.set_num_threads in a pool thread also sets the count that new threads
            # start with; put it back.
            torch.set_num_threads(threads)


@dataclass
class _CutState:
    """What one layer's scoring has learnt about in-place writes into its cut values."""

    checked: bool = False  # has the first round (everything copied) run?
    copied: set[int] = field(default_factory=set)  # cut values a suffix op writes into


Replacements = Mapping[int, Mapping[str, nn.Module]]  # rank -> {name: module}


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
        >>> scorer = SuffixScorer(model, TopKAccuracy(loader), example)  # doctest: +SKIP
        >>> scorer.score({4: {"layer1.0.conv1": small_conv}})  # doctest: +SKIP
        {4: 0.93}
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
            self._graphs[leaves] = trace_model(self.model, self.example, leaves=leaves)
        return self._graphs[leaves]

    def graph_for(self, names: Collection[str]) -> frozenset[str]:
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
                groups.setdefault(self.graph_for(names), []).append(index)
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
                    module.eval()  # whole-model evaluation puts them in eval mode too
        model, was_training = self.model, self.model.training
        model.eval()
        count = max(1, min(self.workers, max(map(len, layers))))
        try:
            with torch.no_grad(), _workers(count) as workers:
                run = _Pass(chain, [layers[i] for i in order], self.evaluator, workers)
                for inputs, targets in self.evaluator.batches(model):
                    run.batch(inputs, targets)
        finally:
            model.train(was_training)
        results = run.results()
        return [results[order.index(i)] for i in range(len(layers))]


class _Pass:
    """One pass over the data for stages in graph order: per batch, advance from stage to
    stage and score each stage's candidates (see the module notes).

    With several workers, a stage whose candidates do not divide evenly between them is
    scored in one round with the next stage (both stages' cut values are then held), so
    no worker waits idle at the end of the round; never in the first batch, which checks
    every stage alone, nor where the next stage's advance writes into this stage's cut.
    """

    def __init__(
        self,
        chain: Sequence[Stage],
        jobs: Sequence[Replacements],
        evaluator: BatchEvaluator,
        workers: _Workers,
    ) -> None:
        self.chain, self.jobs, self.workers = chain, jobs, workers
        self.metrics = [{rank: fresh_metric(evaluator) for rank in r} for r in jobs]
        self.states = [_CutState() for _ in jobs]
        self.failed: dict[int, SuffixUnavailable] = {}
        self.clean_advances: set[int] = set()  # steps whose advance left the cut before alone

    def results(self) -> list[dict[int, Any] | SuffixUnavailable]:
        """Per step: ``rank -> metric value``, or why the step could not be scored."""
        return [
            self.failed[step]
            if step in self.failed
            else {rank: m.compute() for rank, m in self.metrics[step].items()}
            for step in range(len(self.chain))
        ]

    def batch(self, inputs: Any, targets: torch.Tensor) -> None:
        """Score every stage's candidates on one batch."""
        step, cut = 0, self.chain[0].advance(inputs)
        while step < len(self.chain):
            paired, cut = self._pair(step, cut, inputs, targets)
            if paired:
                step += 1
            else:
                cut = self._single(step, cut, inputs, targets)
            step += 1
            if step < len(self.chain):
                before = _versions(cut)
                cut, previous = self.chain[step].advance(*cut), cut
                if _versions(previous) == before:
                    self.clean_advances.add(step)
                else:
                    self.clean_advances.discard(step)

    def _update(self, step: int, outputs: Mapping[int, Any], targets: torch.Tensor) -> None:
        for rank, output in outputs.items():
            self.metrics[step][rank].update(output, targets.to(output.device))

    def _single(
        self, step: int, cut: tuple[Any, ...], inputs: Any, targets: torch.Tensor
    ) -> tuple[Any, ...]:
        """Score stage ``step`` alone; return its cut values (recomputed if written)."""
        if step in self.failed:
            return cut
        try:
            outputs, cut = self._rounds(step, cut, inputs)
        except SuffixUnavailable as why:
            self.failed[step] = why
            return self._cut_at(step, inputs)  # it may have been written
        self._update(step, outputs, targets)
        return cut

    def _rounds(
        self, step: int, cut: tuple[Any, ...], inputs: Any
    ) -> tuple[dict[int, Any], tuple[Any, ...]]:
        """Every candidate's output on one batch at stage ``step``, and the stage's cut
        values (recomputed if a candidate wrote into them; see the module notes)."""
        stage, state = self.chain[step], self.states[step]
        while True:
            copies = state.copied if state.checked else set(range(len(cut)))
            versions = _versions(cut)
            results = self.workers.run(
                {rank: (stage.suffix, m, cut, copies) for rank, m in self.jobs[step].items()}
            )
            changed = {i for i, v in enumerate(_versions(cut)) if v != versions[i]}
            if not state.checked:
                state.checked = True
                state.copied = set().union(*(written for _, written in results.values()))
                _check_unshared(cut, state.copied, stage.start)
            if not changed:
                return {rank: output for rank, (output, _) in results.items()}, cut
            # A candidate wrote into a value the first round did not see written: the
            # candidates of this round may have read it changed. Copy it and run again.
            _check_unshared(cut, changed, stage.start)
            state.copied |= changed
            cut = self._cut_at(step, inputs)

    def _cut_at(self, step: int, inputs: Any) -> tuple[Any, ...]:
        """Stage ``step``'s cut values, computed afresh from the batch inputs."""
        cut = self.chain[0].advance(inputs)
        for stage in self.chain[1 : step + 1]:
            cut = stage.advance(*cut)
        return cut

    def _pair(
        self, step: int, cut: tuple[Any, ...], inputs: Any, targets: torch.Tensor
    ) -> tuple[bool, tuple[Any, ...]]:
        """Score stages ``step`` and ``step + 1`` in one round if that helps and is safe:
        ``(True, cut of step + 1)``, else ``(False, cut of step)``."""
        following = step + 1
        if not (
            self.workers.count > 1
            and len(self.jobs[step]) % self.workers.count
            and following < len(self.chain)
            and following in self.clean_advances
            and all(self.states[s].checked and s not in self.failed for s in (step, following))
        ):
            return False, cut
        before = _versions(cut)
        cuts = {step: cut, following: self.chain[following].advance(*cut)}
        if _versions(cut) != before:  # this time the advance wrote into the cut
            self.clean_advances.discard(following)
            return False, self._cut_at(step, inputs)
        versions = {s: _versions(c) for s, c in cuts.items()}
        results = self.workers.run(
            {
                (s, rank): (self.chain[s].suffix, modules, cuts[s], self.states[s].copied)
                for s in cuts
                for rank, modules in self.jobs[s].items()
            }
        )
        if any(_versions(c) != versions[s] for s, c in cuts.items()):
            # A candidate wrote into a value no earlier round saw written: score both
            # stages alone, which copies it from now on.
            return False, self._cut_at(step, inputs)
        for s in cuts:
            self._update(s, {rank: results[s, rank][0] for rank in self.jobs[s]}, targets)
        return True, cuts[following]


def _check_unshared(cut: tuple[Any, ...], written: Collection[int], start: str) -> None:
    """Copying a written cut value separately is only right if no other shares its memory.

    Raises:
        SuffixUnavailable: one does.
    """
    others = set().union(*(_storages(v) for i, v in enumerate(cut) if i not in written))
    if any(_storages(cut[i]) & others for i in written):
        raise SuffixUnavailable(
            f"an in-place op after {start!r} writes into a value that shares memory with "
            "another one computed before it"
        )
