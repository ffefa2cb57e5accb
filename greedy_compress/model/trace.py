"""Trace a model with ``torch.fx``: the one tracer behind the channel graph and the fast path.

The model is traced in eval mode (what is compressed is the inference model: modules that
branch on ``self.training`` take their eval branch), chosen modules can be kept whole as
leaves, and a failure names the module fx was inside.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_leaves

from greedy_compress.errors import GraphTraceError
from greedy_compress.model.modes import eval_mode

__all__ = ["trace_model"]


class _Tracer(fx.Tracer):
    """fx's default tracer, with extra modules (by name) kept whole, that remembers which
    module it was inside when tracing failed."""

    def __init__(self, leaves: frozenset[str]) -> None:
        super().__init__()
        self.extra_leaves = leaves
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.extra_leaves or super().is_leaf_module(
            m, module_qualified_name
        )

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module sees the error first
                self.failed_in = self.path_of_module(m)
            raise


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


def _defaults(model: nn.Module) -> dict[str, Any] | None:
    """The forward's arguments after the first that have defaults: the pipeline calls models
    with one input, so they take their defaults (and control flow on them traces)."""
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    found = {
        p.name: p.default
        for p in parameters
        if p.kind in kinds and p.default is not inspect.Parameter.empty
    }
    return found or None


def trace_model(
    model: nn.Module, *, leaves: Collection[str] = (), example: Any = None
) -> fx.GraphModule:
    """Trace ``model`` in eval mode (its modules' modes are restored afterwards), as called
    with one input: arguments after the first take their defaults.

    Args:
        model: the model.
        leaves: names of modules to keep whole (not traced into).
        example: an input; when given, the trace must reproduce the model's output on it.

    Returns:
        A ``GraphModule`` whose ``call_module`` and ``get_attr`` targets are names in ``model``.

    Raises:
        GraphTraceError: fx cannot trace the model (typically data-dependent control flow;
            the message names the module), or the trace computes something else on
            ``example``.

    Example:
        >>> traced = trace_model(nn.Sequential(nn.Linear(2, 2)), example=torch.zeros(1, 2))
        >>> [n.op for n in traced.graph.nodes]
        ['placeholder', 'call_module', 'output']
    """
    tracer = _Tracer(frozenset(leaves))
    with eval_mode(model):
        try:
            graph = tracer.trace(model, concrete_args=_defaults(model))
        except Exception as error:  # fx raises many types; all mean "not traceable"
            where = tracer.failed_in or ""
            module = model.get_submodule(where) if where else model
            label = f"module {where!r}" if where else "the model's own forward"
            first_line = str(error).splitlines()[0] if str(error) else repr(error)
            raise GraphTraceError(
                f"torch.fx cannot trace {label} ({type(module).__name__}): "
                f"{type(error).__name__}: {first_line}"
            ) from error
        traced = fx.GraphModule(model, graph)
        if example is not None:
            try:
                with torch.no_grad():
                    expected, got = model(example), traced(example)
            except Exception as error:
                raise GraphTraceError(
                    f"the torch.fx trace of {type(model).__name__} fails on the example input: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if not _same_outputs(expected, got):
                raise GraphTraceError(
                    f"the torch.fx trace of {type(model).__name__} does not reproduce its "
                    "output on the example input (control flow that depends on the data?)"
                )
    return traced
