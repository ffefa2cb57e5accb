"""Run a traced model on samples up to chosen modules, resuming from where the last run cut.

Channel pruning with reconstruction prunes a model layer by layer, and each layer's refit
needs its readers' inputs in the model pruned so far. Running the model from its input for
every layer re-runs the same prefix again and again (quadratic in the depth). A
:class:`Cut` keeps, per batch, the values live at a point of the traced graph; the next run
starts there, as long as nothing before that point changed since (the same nodes, the same
module and parameter objects, no parameter or buffer modified in place: checked, and the
run starts from the input otherwise). So the pruned model is run about once in total.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from greedy_compress.model.modes import eval_mode

__all__ = ["Cut", "can_run_to", "run_to"]

_INPLACE_FUNCTIONS = {
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    operator.ifloordiv,
    operator.imod,
    operator.ipow,
    operator.iand,
    operator.ior,
    operator.ixor,
    operator.setitem,
}


@dataclass
class Cut:
    """Per batch, the values live before node ``position`` of a traced model, with what
    computed them (``state``: for each node before it, its module or attribute and the
    versions of its tensors) and the run they belong to (``key``)."""

    position: int
    key: tuple[Any, ...]
    state: list[Any]
    values: list[dict[str, Any]]


def _target_state(root: nn.Module, node: fx.Node) -> Any:
    """What a node before a cut depends on that may change: its module (and the versions of
    the module's tensors) or its attribute, compared by identity."""
    if node.op == "call_module":
        module = root.get_submodule(str(node.target))
        tensors = [*module.parameters(), *module.buffers()]
        return (node.format_node(), module, [(t, t._version) for t in tensors])
    if node.op == "get_attr":
        value: Any = root
        for part in str(node.target).split("."):
            value = getattr(value, part)
        version = value._version if isinstance(value, torch.Tensor) else None
        return (node.format_node(), value, version)
    return (node.format_node(),)


def _same_state(left: Any, right: Any) -> bool:
    if len(left) != len(right) or left[0] != right[0]:
        return False
    if len(left) == 1:
        return True
    if left[1] is not right[1]:
        return False
    if isinstance(left[2], list):
        return len(left[2]) == len(right[2]) and all(
            a is b and va == vb for (a, va), (b, vb) in zip(left[2], right[2], strict=True)
        )
    return bool(left[2] == right[2])


def _mutates(root: nn.Module, node: fx.Node) -> bool:
    """Whether a node may modify its first argument in place."""
    if node.op == "call_module":
        return bool(getattr(root.get_submodule(str(node.target)), "inplace", False))
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.endswith("__")
    if node.op == "call_function":
        return node.target in _INPLACE_FUNCTIONS or node.kwargs.get("inplace") is True
    return False


def _mutated_later(root: nn.Module, nodes: list[fx.Node], start: int) -> set[str]:
    """Values made before ``start`` that a node at or after it may modify in place, directly
    or through an alias: any node but a module call is taken to alias its inputs (a view,
    an in-place op), and so is a module working in place."""
    parent = {n.name: n.name for n in nodes}

    def root_of(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for node in nodes:
        if node.op != "call_module" or _mutates(root, node):
            for used in node.all_input_nodes:
                parent[root_of(used.name)] = root_of(node.name)
    touched = {
        root_of(node.args[0].name)
        for node in nodes[start:]
        if _mutates(root, node) and node.args and isinstance(node.args[0], fx.Node)
    }
    return {n.name for n in nodes[:start] if root_of(n.name) in touched}


def _copied(env: Mapping[str, Any], names: Collection[str]) -> dict[str, Any]:
    """``env`` with the tensors ``names`` copied, values sharing memory sharing their copy
    the same way (one copy per storage), so in-place changes reach the same values."""
    copies: dict[int, Any] = {}
    out = dict(env)
    for name in names:
        value = env.get(name)
        if not isinstance(value, torch.Tensor):
            continue
        storage = value.untyped_storage()
        copy = copies.setdefault(storage.data_ptr(), storage.clone())
        out[name] = torch.empty(0, dtype=value.dtype, device=value.device).set_(
            copy, value.storage_offset(), value.size(), value.stride()
        )
    return out


def _module_position(nodes: list[fx.Node], names: Collection[str]) -> int:
    """The first node calling (or reading an attribute of) one of the modules ``names``,
    or of a module inside one of them; ``len(nodes)`` if none does."""
    for i, node in enumerate(nodes):
        if node.op in ("call_module", "get_attr"):
            target = str(node.target)
            if any(target == n or target.startswith(n + ".") for n in names):
                return i
    return len(nodes)


InputHook = Callable[[str, int, torch.Tensor], None]


def can_run_to(traced: fx.GraphModule, wanted: Collection[str]) -> bool:
    """Whether :func:`run_to` can run ``traced`` to the modules ``wanted``: the trace has one
    input and calls each of them exactly once.

    Example:
        >>> can_run_to(fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2))), ["0"])
        True
    """
    nodes = list(traced.graph.nodes)
    if not nodes or nodes[0].op != "placeholder" or sum(n.op == "placeholder" for n in nodes) != 1:
        return False
    called = [str(n.target) for n in nodes if n.op == "call_module" and n.target in wanted]
    return bool(wanted) and sorted(called) == sorted(set(wanted))


def run_to(
    traced: fx.GraphModule,
    root: nn.Module,
    samples: torch.Tensor,
    wanted: Collection[str],
    on_input: InputHook,
    *,
    changes: Collection[str] | None = None,
    cut: Cut | None = None,
    batch_size: int = 16,
) -> Cut | None:
    """Run ``root`` (as ``traced`` describes it) on ``samples`` in batches until every module
    named in ``wanted`` got its input: ``on_input(name, first_sample, input)`` is called for
    each (in eval mode, without gradients).

    ``traced`` is a trace of ``root`` (its node targets are names in ``root``; modules are
    looked up in ``root`` at run time). The run starts from ``cut`` when it still holds
    (same samples, batches and prefix), else from the input. It returns the cut to start
    the next run from: before the first node of the modules in ``changes`` (those the
    caller is about to change), or None where that lies before this run's start (or
    ``changes`` is None: no cut is kept).

    Raises:
        ValueError: the trace has more than one input, or a module of ``wanted`` is not
            called exactly once in it (:func:`can_run_to` says so beforehand).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> traced = fx.symbolic_trace(net)
        >>> seen = {}
        >>> cut = run_to(traced, net, torch.randn(4, 2), ["2"],
        ...              lambda name, start, x: seen.setdefault(name, x.shape), changes=["2"])
        >>> seen["2"], cut.position
        (torch.Size([4, 3]), 3)
    """
    if not can_run_to(traced, wanted):
        raise ValueError(
            "run_to needs a trace with one input calling each module of 'wanted' exactly once"
        )
    nodes = list(traced.graph.nodes)
    position = {n.name: i for i, n in enumerate(nodes)}
    calls = {i for i, n in enumerate(nodes) if n.op == "call_module" and n.target in wanted}
    stop = max(calls)
    key = (id(samples), samples.data_ptr(), samples.shape, batch_size)
    state = [_target_state(root, n) for n in nodes]
    start = 0
    if (
        cut is not None
        and cut.key == key
        and 0 < cut.position <= stop
        and all(_same_state(a, b) for a, b in zip(cut.state, state[: cut.position], strict=True))
    ):
        start = cut.position
    save = -1 if changes is None else min(_module_position(nodes, changes), stop)
    if save < max(start, 1):
        save = -1  # the next change lies before this run's start: the next run starts over
    last_use = {n.name: max((position[u.name] for u in n.users), default=len(nodes)) for n in nodes}
    mutated = _mutated_later(root, nodes, save) if save > 0 else set()
    device = next((p.device for p in root.parameters()), samples.device)
    saved: list[dict[str, Any]] = []
    with eval_mode(root), torch.no_grad():
        for batch, first in enumerate(range(0, samples.shape[0], batch_size)):
            if start > 0:
                assert cut is not None
                env = dict(cut.values[batch])
            else:
                env = {nodes[0].name: samples[first : first + batch_size].to(device)}
            for i in range(max(start, 1), stop + 1):
                if i == save:
                    saved.append(_copied(env, mutated))
                node = nodes[i]
                if i in calls:
                    given = node.args[0]
                    on_input(
                        str(node.target),
                        first,
                        env[given.name] if isinstance(given, fx.Node) else given,
                    )
                if i == stop:
                    break
                env[node.name] = _execute(root, node, env)
                for used in node.all_input_nodes:
                    if last_use[used.name] <= i:
                        env.pop(used.name, None)
    return Cut(save, key, state[:save], saved) if save > 0 else None


def _execute(root: nn.Module, node: fx.Node, env: Mapping[str, Any]) -> Any:
    args = fx.node.map_arg(node.args, lambda n: env[n.name])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n.name])
    if node.op == "call_module":
        return root.get_submodule(str(node.target))(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)  # type: ignore[operator]
    if node.op == "call_method":
        self_value, *rest = args
        return getattr(self_value, str(node.target))(*rest, **kwargs)
    if node.op == "get_attr":
        value: Any = root
        for part in str(node.target).split("."):
            value = getattr(value, part)
        return value
    raise ValueError(f"cannot run node {node.format_node()}")
