"""Selection benchmark: does the selection hold up on the real combined model?

For each benchmark model (spatial SVD, 10 candidates, top-1 accuracy on the validation
split) and each target 0.7 / 0.5 / 0.3 of the MACs, three methods share one dictionary:

- plain:  AIMET's threshold search (``GreedySolver(fill_budget=False)``),
- exact:  the same plus the shared exact-budget step (the default),
- repair: exact, then ``repair_selection`` with ``max_drop`` = 0.02 (two accuracy points),
- mono:   exact, solved on monotone fits of the score curves (``monotone=True``).

Printed per row: MAC ratio measured on the built model (count_macs), the dictionary's
predicted accuracy, the real accuracy, and for repair the extra evaluations it made (beyond
the one combined check) and whether it met max_drop. Also a flat-dictionary case like the
issue's: the TinyResNet of tests/test_repair.py (digits 0 vs 1, 64 eval images).

Run: python benchmarks/bench_selection.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BENCHMARK_MODELS  # first: sets OMP_WAIT_POLICY

# isort: split

import torch
from torch.utils.data import DataLoader, TensorDataset

from evaluators import TopKAccuracy
from greedy_compress import (
    apply_selection,
    build_eval_scores,
    count_macs,
    predicted_score,
    repair_selection,
)
from greedy_compress.demo.data import load_digits_data
from greedy_compress.demo.models import TinyResNet
from greedy_compress.demo.training import train_classifier
from greedy_compress.selection import GreedySolver

TARGETS = (0.7, 0.5, 0.3)
MAX_DROP = 0.02


def flat_binary_resnet():
    """The tests' flat-dictionary case: TinyResNet, digits 0 vs 1, 64 eval images."""
    data = load_digits_data(size=8)
    keep, val_keep = data.train_labels < 2, data.val_labels < 2
    val = TensorDataset(data.val_images[val_keep][:64], data.val_labels[val_keep][:64])
    torch.manual_seed(0)
    model = TinyResNet(in_channels=1, num_classes=2, width=8, blocks=1)
    generator = torch.Generator().manual_seed(0)
    train = TensorDataset(data.train_images[keep], data.train_labels[keep])
    train_classifier(
        model, DataLoader(train, batch_size=32, shuffle=True, generator=generator), epochs=3
    )
    return model, TopKAccuracy(DataLoader(val, batch_size=64)), val.tensors[0][:1], 5


def benchmark_cases():
    for name, factory in BENCHMARK_MODELS.items():
        model, data = factory()
        yield name, model, TopKAccuracy(data.val_loader()), data.val_images[:1], 10
    yield ("flat_resnet01", *flat_binary_resnet())


def main() -> None:
    rows = []
    for name, model, evaluator, example, candidates in benchmark_cases():
        start = time.perf_counter()
        scores = build_eval_scores(
            model,
            evaluator,
            scheme="spatial_svd",
            candidates=candidates,
            example_input=example,
            progress=False,
        )
        curves = GreedySolver().solve(scores, target=0.5).details["non_monotone"]
        print(
            f"{name}: baseline accuracy {scores.baseline:.4f}, "
            f"dictionary {time.perf_counter() - start:.1f}s, "
            f"{len(curves)} of {len(scores.layers)} layer curves not monotone",
            flush=True,
        )
        macs = count_macs(model, example)
        for target in TARGETS:
            plain = GreedySolver(fill_budget=False).solve(scores, target=target)
            exact = GreedySolver().solve(scores, target=target)
            mono = GreedySolver().solve(scores, target=target, monotone=True)
            score = evaluator(apply_selection(model, exact))
            start = time.perf_counter()
            repaired, result = repair_selection(
                model, evaluator, scores, exact, max_drop=MAX_DROP, score=score
            )
            seconds = time.perf_counter() - start
            methods = (("plain", plain), ("exact", exact), ("repair", repaired), ("mono", mono))
            for label, selection in methods:
                small = apply_selection(model, selection)
                extra = (
                    f"{result.evaluations:3d} {'yes' if result.success else 'no':>3s} "
                    f"{seconds:5.1f}s"
                    if label == "repair"
                    else ""
                )
                rows.append(
                    f"{name:13s} {target:6.2f} {label:6s} "
                    f"{count_macs(small, example) / macs:6.3f} "
                    f"{predicted_score(scores, selection):9.4f} {evaluator(small):7.4f} {extra}"
                )
    print()
    print(
        f"{'model':13s} {'target':>6s} {'method':6s} {'MACs':>6s} {'predicted':>9s} "
        f"{'top-1':>7s} extra evals / within max_drop {MAX_DROP} / repair time"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
