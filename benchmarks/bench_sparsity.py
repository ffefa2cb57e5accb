"""Unstructured sparsity in the selection: the ``sparsity`` scheme alone, ``weight_svd`` alone
and their mixed dictionary, knapsack at memory targets 0.5 / 0.3 / 0.2.

On the demo DigitsCNN (trained, cached), one dictionary per scheme (``cost="memory"``, top-1
on the validation digits), combined into a mixed one. For each target and dictionary, the
knapsack's selection is built and exported with ``export_model(sparse_path=...)`` (masked
weights in CSR, dense where that is smaller), and the table gives:

* predicted: the selection's kept parameter bytes (``predicted_ratio`` x the model's);
* in file: the parameter bytes of the tensors the file holds (its tensor bytes less the
  batch-norm buffers, which are no parameters), which must equal the prediction;
* file: the file's size on disk (the tensors plus torch.save's zip container);
* top-1 before any fine-tuning.

The mixed dictionary is solved twice: with the default exact-budget fill, and without it
(``KnapsackSolver(fill_budget=False)``), since the fill's upgrades assume a costlier
candidate is a better one, which a mixed dictionary does not promise.

Run: python benchmarks/bench_sparsity.py [--quick]   (--quick: 5 candidates per layer)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

import io
import sys
import tempfile
import time
from pathlib import Path

import torch

from evaluators import TopKAccuracy
from greedy_compress import KnapsackSolver, apply_selection, build_eval_scores, select
from greedy_compress.demo.run import trained_digits_cnn
from greedy_compress.dictionary.mixed import combine_scores
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.export import export_model

QUICK = "--quick" in sys.argv
TARGETS = (0.5, 0.3, 0.2)
CANDIDATES = 5 if QUICK else 10
SHAPE = (1, 1, 8, 8)


def _tensor_bytes(state: dict) -> int:
    return sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))


def main() -> None:
    model, data = trained_digits_cnn(progress=True)
    evaluator = TopKAccuracy(data.val_loader())
    dense = io.BytesIO()
    torch.save(model.state_dict(), dense)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    print(f"DigitsCNN: top-1 {evaluator(model):.4f}, dense state dict {len(dense.getvalue())} B")
    single = {}
    for scheme in ("sparsity", "weight_svd"):
        start = time.perf_counter()
        single[scheme] = build_eval_scores(
            model,
            evaluator,
            scheme=scheme,
            cost="memory",
            candidates=CANDIDATES,
            input_shape=SHAPE,
            progress=False,
        )
        print(f"{scheme} dictionary: {time.perf_counter() - start:.1f} s")
    dictionaries = {**single, "mixed": combine_scores(list(single.values()))}
    runs = [(name, "knapsack", scores) for name, scores in dictionaries.items()]
    runs.append(("mixed", "knapsack, no fill", dictionaries["mixed"]))
    model_bytes = dictionaries["mixed"].model_cost.bits / 8
    print()
    print("| target | dictionary | solver | predicted B | in file B | file B | top-1 | layers |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sparse.pt"
        for target in TARGETS:
            for name, solver_name, scores in runs:
                solver = KnapsackSolver(fill_budget=solver_name == "knapsack")
                try:
                    selection = select(scores, target=target, solver=solver)
                except TargetUnreachableError as error:
                    print(f"| {target} | {name} | {solver_name} | unreachable: {error} |")
                    continue
                small = apply_selection(model, selection)
                size = export_model(small, sparse_path=path).sizes["sparse"]
                in_file = _tensor_bytes(torch.load(path, weights_only=True)) - buffers
                predicted = selection.predicted_ratio * model_bytes
                per_layer = [c.scheme or selection.scheme for c in selection.choices.values()]
                counts = [f"{s} x{per_layer.count(s)}" for s in sorted(set(per_layer))]
                print(
                    f"| {target} | {name} | {solver_name} | {predicted:.0f} | {in_file} | {size} "
                    f"| {evaluator(small):.4f} | {', '.join(counts)} |"
                )


if __name__ == "__main__":
    main()
