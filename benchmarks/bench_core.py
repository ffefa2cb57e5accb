"""Core benchmark: dictionary build cost, and accuracy at 0.7 / 0.5 / 0.3 of MACs.

For each benchmark model and both SVD schemes: time to build the eval-score dictionary
(median of 3 builds), evaluations per second, then for each target the achieved MAC ratio
and top-1 accuracy (before any fine-tuning) of the greedy selection, against a uniform
baseline computed in the same run (every layer at the same candidate ratio, the largest that
meets the target).

Run: python benchmarks/bench_core.py
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BENCHMARK_MODELS, median_time  # first: sets OMP_WAIT_POLICY

from evaluators import TopKAccuracy
from greedy_compress import apply_selection, build_eval_scores, count_macs, select
from greedy_compress.selection import LayerChoice, Selection

TARGETS = (0.7, 0.5, 0.3)
SCHEMES = ("spatial_svd", "weight_svd")


def uniform_selection(scores, target: float) -> Selection | None:
    """Every scored layer at one common candidate ratio: the largest that meets the target."""
    total = scores.model_cost.macs
    fixed = scores.fixed_cost("mac")
    ratios = sorted({e.asked_ratio for layer in scores.layers.values() for e in layer.entries})
    for ratio in reversed(ratios):
        entries = {
            name: next(e for e in layer.entries if e.asked_ratio == ratio)
            for name, layer in scores.layers.items()
        }
        if fixed + sum(e.cost.macs for e in entries.values()) <= target * total:
            return Selection(
                scheme=scores.scheme,
                solver="uniform",
                cost_metric="mac",
                target=target,
                predicted_ratio=(fixed + sum(e.cost.macs for e in entries.values())) / total,
                choices={
                    n: LayerChoice(e.kept_ratio, e.rank, e.score or 0.0) for n, e in entries.items()
                },
            )
    return None


def main() -> None:
    rows = []
    for model_name, factory in BENCHMARK_MODELS.items():
        model, data = factory()
        evaluator = TopKAccuracy(data.val_loader())
        example = data.val_images[:1]
        macs = count_macs(model, example)
        for scheme in SCHEMES:
            build = functools.partial(
                build_eval_scores,
                model,
                evaluator,
                scheme=scheme,
                example_input=example,
                progress=False,
            )
            seconds, scores = median_time(build)
            evaluations = 1 + sum(len({e.rank for e in s.entries}) for s in scores.layers.values())
            print(
                f"{model_name:12s} {scheme:12s} {macs:>10,} MACs  layers {len(scores.layers):2d}  "
                f"dictionary {seconds:6.2f}s  {evaluations / seconds:6.1f} evals/s  "
                f"baseline acc {scores.baseline:.4f}"
            )
            for target in TARGETS:
                for label, selection in (
                    ("greedy", select(scores, target=target)),
                    ("uniform", uniform_selection(scores, target)),
                ):
                    if selection is None:
                        rows.append((model_name, scheme, target, label, float("nan"), float("nan")))
                        continue
                    small = apply_selection(model, selection)
                    ratio = count_macs(small, example) / macs
                    rows.append((model_name, scheme, target, label, ratio, evaluator(small)))
    print()
    print(f"{'model':12s} {'scheme':12s} {'target':>6s} {'method':8s} {'MACs':>6s} {'top-1':>6s}")
    for model_name, scheme, target, label, ratio, accuracy in rows:
        print(
            f"{model_name:12s} {scheme:12s} {target:6.2f} {label:8s} {ratio:6.3f} {accuracy:6.4f}"
        )


if __name__ == "__main__":
    main()
