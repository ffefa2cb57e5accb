"""One pass over the data for several stages, with in-place writes kept out of the cut.

Per batch the pass advances from stage to stage and scores each stage's candidates. A
suffix op that writes into a cut value (``out += identity``, an ``nn.ReLU(inplace=True)``
fed from before the cut) would corrupt it for the other candidates. So in a stage's first
round every candidate gets its own copy of every cut value, and the version counters of
the copies show which ones the suffix writes into; from then on only those are copied. A
write into an uncopied value after that (one that depends on the candidate) is caught by
the originals' version counters and the batch is run again.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_leaves, tree_map

from evaluators import BatchEvaluator
from greedy_compress.dictionary.suffix.stages import Stage, SuffixUnavailable
from greedy_compress.dictionary.suffix.workers import WorkerPool

__all__ = ["Pass", "Replacements", "fresh_metric"]

Replacements = Mapping[int, Mapping[str, Any]]  # rank -> {name: module or parameter}


def _versions(values: tuple[Any, ...]) -> list[tuple[int, ...]]:
    return [
        tuple(t._version for t in tree_leaves(v) if isinstance(t, torch.Tensor)) for v in values
    ]


def _clone(value: Any) -> Any:
    return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, value)


def _storages(value: Any) -> set[int]:
    return {
        t.untyped_storage().data_ptr() for t in tree_leaves(value) if isinstance(t, torch.Tensor)
    }


def fresh_metric(evaluator: BatchEvaluator) -> BatchEvaluator:
    """An independent copy of ``evaluator``'s metric state, sharing its loader, reset."""
    metric = copy.deepcopy(evaluator, memo={id(evaluator.loader): evaluator.loader})
    metric.reset()
    return metric


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


@dataclass
class _CutState:
    """What one layer's scoring has learnt about in-place writes into its cut values."""

    checked: bool = False  # has the first round (everything copied) run?
    copied: set[int] = field(default_factory=set)  # cut values a suffix op writes into


class Pass:
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
        workers: WorkerPool,
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
                _forward,
                {rank: (stage.suffix, m, cut, copies) for rank, m in self.jobs[step].items()},
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
            _forward,
            {
                (s, rank): (self.chain[s].suffix, modules, cuts[s], self.states[s].copied)
                for s in cuts
                for rank, modules in self.jobs[s].items()
            },
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
