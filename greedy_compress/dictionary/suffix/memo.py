"""Suffix-only evaluation for plain callables: the unchanged front runs once per batch.

A plain ``evaluator(model) -> float`` runs the whole model on its data for every candidate,
though the candidates of one layer differ only from that layer on. Here the model it gets is
the model itself, with the candidate swapped in as before, but its ``forward`` replaced for
the duration: the traced front (:mod:`~greedy_compress.dictionary.suffix.stages`) runs on a
batch only the first time that batch is seen for the layer, and its values are reused for
the layer's later candidates; the suffix runs with the candidate's modules. The evaluator,
its data loading and its metric are untouched; scores equal whole-model evaluation.

A batch is reused only when it equals (``torch.equal``) the one the first candidate saw at
the same call, the model is called with one tensor, and the front's modules are in eval mode
(so the front is deterministic and changes no buffer); otherwise the front runs as usual. Reused
values are held for one layer at a time, up to ``MEMO_BYTES``, and checked by their version
counters before each reuse: a suffix that writes into one in place ends the reuse for the
layer. Forward hooks registered on modules of the front do not run for reused batches.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_leaves, tree_map

from greedy_compress.dictionary.suffix.stages import (
    Stage,
    SuffixUnavailable,
    check_cuttable,
    split_stages,
    traced_through,
)
from greedy_compress.errors import GraphTraceError
from greedy_compress.model.swap import Replacement
from greedy_compress.model.trace import trace_model

__all__ = ["MEMO_BYTES", "FrontMemo"]

MEMO_BYTES = 1 << 30  # front values kept per layer (and the inputs they came from)


def _versions(values: tuple[Any, ...]) -> list[int]:
    return [t._version for t in tree_leaves(values) if isinstance(t, torch.Tensor)]


def _normal(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_inference():
        return value.clone()
    return value


def _size(values: Any) -> int:
    if isinstance(values, torch.Tensor):
        return values.numel() * values.element_size()
    if isinstance(values, (tuple, list)):
        return sum(_size(v) for v in values)
    return 0


class _LayerMemo:
    """One layer's front values, by call index, with the inputs they were computed from."""

    def __init__(self, stage: Stage, budget: int) -> None:
        self.stage = stage
        self.budget = budget
        self.used = 0
        self.entries: list[tuple[torch.Tensor, tuple[Any, ...], list[int]] | None] = []
        self.hits = 0
        self.written = False  # a suffix wrote into the front's values: reuse nothing
        advance = stage.advance
        self.called = [  # the model's modules the front runs, with all their children
            module
            for node in advance.graph.nodes
            if node.op == "call_module"
            for module in advance.get_submodule(str(node.target)).modules()
        ]

    def front(self, index: int, inputs: torch.Tensor, reusable: bool) -> tuple[Any, ...]:
        if reusable and not self.written and index < len(self.entries):
            entry = self.entries[index]
            if (
                entry is not None
                and entry[0].shape == inputs.shape
                and entry[0].dtype == inputs.dtype
                and torch.equal(entry[0], inputs)
            ):
                if _versions(entry[1]) == entry[2]:
                    self.hits += 1
                    return entry[1]
                # A suffix wrote into the values in place (``x += ...`` on a value from
                # before the cut): they are spoilt, and would be for every later candidate.
                self.written, self.entries = True, []
        # Normal tensors, also under the evaluator's inference_mode: they count versions.
        with torch.inference_mode(False), torch.no_grad():
            cut = tuple(self.stage.advance(inputs))
            # A value the front passes through unchanged (the evaluator's own input, made
            # under its inference_mode) counts no versions: a normal copy of it does.
            cut = tree_map(_normal, cut)
        if index == len(self.entries) and not self.written:  # the first candidate's calls
            size = _size(cut) + _size(inputs)
            keep = reusable and self.used + size <= self.budget
            entry = (inputs.clone(), cut, _versions(cut)) if keep else None
            self.entries.append(entry)
            self.used += size if keep else 0
        return cut

    def reusable(self) -> bool:
        """Whether the front is deterministic and changes no buffer: its modules in eval mode."""
        return not any(module.training for module in self.called)


class FrontMemo:
    """Scores a plain callable's candidates with each layer's front computed once per batch.

    Args:
        model: the model (traced with ``torch.fx`` on first use).
        example: an input the model accepts, to check the trace.
        budget: bytes of front values (and their inputs) kept per layer.

    Example:
        >>> from greedy_compress.model.swap import swapped
        >>> from greedy_compress.schemes import WeightSVD
        >>> memo = FrontMemo(model, example_input)
        >>> small = {"classifier": WeightSVD().compress(model.classifier, 8)}
        >>> with memo.layer(["classifier"]) as run:
        ...     with swapped(model, small), run.candidate(small):
        ...         first = evaluator(model)
        ...     with swapped(model, small), run.candidate(small):
        ...         again = evaluator(model)
        >>> first == again, run.hits > 0
        (True, True)
    """

    def __init__(self, model: nn.Module, example: Any, *, budget: int = MEMO_BYTES) -> None:
        self.model = model
        self.example = example
        self.budget = budget
        self._graphs: dict[frozenset[str], fx.Graph | None] = {}

    def _graph(self, leaves: frozenset[str]) -> fx.Graph | None:
        if leaves not in self._graphs:
            try:
                self._graphs[leaves] = trace_model(
                    self.model, leaves=leaves, example=self.example
                ).graph
            except GraphTraceError:
                self._graphs[leaves] = None
        return self._graphs[leaves]

    def stage(self, names: Collection[str]) -> Stage | None:
        """The stage cut before the first of ``names``, or None when the model cannot be
        traced or cut there (then candidates are evaluated as they are)."""
        graph = self._graph(frozenset())
        if graph is None:
            return None
        leaves = frozenset(names) if traced_through(graph, names) else frozenset()
        graph = self._graph(leaves)
        if graph is None:
            return None
        try:
            check_cuttable(graph, names)
            (stage,) = split_stages(self.model, graph, [names])
        except SuffixUnavailable:
            return None
        return stage

    @contextmanager
    def layer(self, names: Collection[str]) -> Iterator[_LayerRun]:
        """Candidates of one layer (replacing ``names``) evaluated inside the block share
        its front values."""
        stage = self.stage(names)
        run = _LayerRun(self.model, None if stage is None else _LayerMemo(stage, self.budget))
        try:
            yield run
        finally:
            run.memo = None  # the values go with the layer


class _LayerRun:
    def __init__(self, model: nn.Module, memo: _LayerMemo | None) -> None:
        self.model = model
        self.memo = memo
        self._hits = 0

    @property
    def hits(self) -> int:
        """Batches whose front values were reused so far."""
        return self._hits if self.memo is None else self.memo.hits

    @contextmanager
    def candidate(self, modules: Mapping[str, Replacement]) -> Iterator[None]:
        """While the block runs, calling the model runs its suffix with ``modules``."""
        memo = self.memo
        if memo is None:
            yield
            return
        model, calls = self.model, [0]

        def forward(*args: Any, **kwargs: Any) -> Any:
            index = calls[0]
            calls[0] += 1
            if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
                return memo.stage.suffix(*memo.stage.advance(*args, **kwargs), modules)
            return memo.stage.suffix(*memo.front(index, args[0], memo.reusable()), modules)

        missing = object()
        previous = model.__dict__.get("forward", missing)
        model.__dict__["forward"] = forward  # an instance attribute: nn.Module calls it
        try:
            yield
        finally:
            if previous is missing:
                del model.__dict__["forward"]
            else:
                model.__dict__["forward"] = previous
            self._hits = memo.hits
