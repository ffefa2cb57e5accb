"""Cut the traced network into stages: per layer, the nodes before its first changed module
(the front, shared by every candidate) and after it (the suffix, run per candidate).

A layer's *cut values* are what the front computed and the suffix reads. Several layers
are scored in one pass over the data, in graph order, so each stage's *advance* graph brings
the previous stage's cut values up to its own: the unchanged network runs once per batch.
The suffix calls the candidate's modules, passed in as its last input, in place of the
model's (fx ``call_function`` nodes), so the model itself is never modified.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

__all__ = ["Stage", "SuffixUnavailable", "check_cuttable", "split_stages", "traced_through"]


class SuffixUnavailable(Exception):
    """Raised when suffix-only evaluation cannot run here; the message says why.

    Internal: :func:`greedy_compress.dictionary.build.build_eval_scores` catches it, warns
    once and evaluates whole models instead.
    """


def _touches(node: fx.Node, names: Collection[str]) -> bool:
    if node.op not in ("call_module", "get_attr"):
        return False
    target = str(node.target)
    return any(target == name or target.startswith(name + ".") for name in names)


def traced_through(graph: fx.Graph, names: Collection[str]) -> set[str]:
    """The ``names`` that fx traced into (not called as one module) in ``graph``: their
    children are called, or their parameters read, by the graph itself."""
    return {
        name
        for node in graph.nodes
        if node.op in ("call_module", "get_attr")
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


def _call_candidate(
    candidate: Mapping[str, nn.Module], name: str, *args: Any, **kwargs: Any
) -> Any:
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
        >>> from greedy_compress.model.trace import trace_model
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
        >>> graph = trace_model(net).graph
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
