"""Data-aware compression and the two-level dictionary, on the harder corrupted digits.

For each reference model trained on the corrupted digits (:mod:`harder_digits`), with a
plain callable evaluator (top-1 on the validation split; what AIMET users have):

1. build time, interleaved in one process (``repeats`` rounds, medians, ratios against the
   plain whole-model path measured in the same rounds):
   - ``whole``: the exact build, every candidate a whole-model evaluation (``fast=False``);
   - ``memo``: the exact build with the front memo (``fast=True``, the default);
   - ``two-level``: proxies from one calibration pass (collected inside the timed call),
     the evaluator only at ``probes`` candidates per layer;
2. top-1 before fine-tuning at 0.5 and 0.3 of the MACs: uniform (every layer at one ratio),
   plain scheme (exact dictionary), data-aware scheme (exact dictionary), data-aware
   two-level dictionary, and that one after :func:`check_end_to_end` (3 selections + moves,
   at most 8 evaluations).

Calibrated so that a uniform 0.5 costs clearly more than 5 points (printed as ``uniform``).

Run: python benchmarks/bench_data_aware.py [--quick]   (quick: one model, one scheme, two
rounds; prints ``/proc/loadavg`` before and after, and each build's evaluation count)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

from bench_core import uniform_selection
from harder_digits import HARDER_MODELS

from evaluators import TopKAccuracy
from greedy_compress import apply_selection, build_eval_scores, count_macs, select
from greedy_compress.dictionary import build_two_level_scores
from greedy_compress.model.statistics import Calibration
from greedy_compress.schemes import SpatialSVD, WeightSVD
from greedy_compress.selection import check_end_to_end

TARGETS = (0.5, 0.3)
SCHEMES = {"spatial_svd": SpatialSVD, "weight_svd": WeightSVD}


def load() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", nargs="+", choices=list(HARDER_MODELS), default=None)
    args = parser.parse_args()
    models = args.models or (["digits_cnn"] if args.quick else list(HARDER_MODELS))
    schemes = ["spatial_svd"] if args.quick else ["spatial_svd", "weight_svd"]
    candidates = 10
    repeats = 2 if args.quick else 3
    print(f"load before: {load()}")
    for model_name in models:
        model, data = HARDER_MODELS[model_name]()
        accuracy = TopKAccuracy(data.val_loader())

        calls = [0]

        def plain(model, accuracy=accuracy, calls=calls):  # a plain callable
            calls[0] += 1
            return accuracy(model)

        example = data.val_images[:1]
        options = dict(candidates=candidates, example_input=example, progress=False)
        base = accuracy(model)
        full_macs = count_macs(model, example)
        print(f"\n== {model_name}: baseline top-1 {base:.4f}")
        for scheme_name in schemes:
            times: dict[str, list[float]] = {"whole": [], "memo": [], "two-level": []}
            evaluations: dict[str, int] = {}
            results = {}
            for _ in range(repeats):  # interleaved rounds
                for kind in times:
                    calls[0] = 0
                    start = time.perf_counter()
                    if kind == "two-level":
                        aware = SCHEMES[scheme_name](
                            data_aware=True, data=Calibration(data.train_loader())
                        )
                        results[kind] = build_two_level_scores(
                            model, plain, scheme=aware, **options
                        )
                    else:
                        results[kind] = build_eval_scores(
                            model, plain, scheme=scheme_name, fast=kind == "memo", **options
                        )
                    times[kind].append(time.perf_counter() - start)
                    evaluations[kind] = calls[0]
            medians = {kind: statistics.median(values) for kind, values in times.items()}
            same = all(
                [e.score for e in results["memo"].layers[n].entries]
                == [e.score for e in layer.entries]
                for n, layer in results["whole"].layers.items()
            )
            print(f"-- {scheme_name}: build seconds (median of {repeats}), ratio vs whole")
            for kind, seconds in medians.items():
                print(
                    f"  {kind:>9}: {seconds:7.2f} s  x{medians['whole'] / seconds:5.2f}"
                    f"  ({evaluations[kind]} evaluations)"
                )
            print(f"  memo scores identical to whole-model scores: {same}")
            two = results["two-level"]
            total = sum(len(layer.entries) for layer in two.layers.values())
            print(f"  two-level: {total - two.predicted} of {total} scores measured")

            calibration = Calibration(data.train_loader())
            aware = SCHEMES[scheme_name](data_aware=True, data=calibration)
            exact_aware = build_eval_scores(model, plain, scheme=aware, **options)
            two_aware = build_two_level_scores(model, plain, scheme=aware, **options)
            plain_scores = results["whole"]
            for target in TARGETS:
                row: dict[str, tuple[float, float]] = {}

                def measure(small, accuracy=accuracy, example=example, full=full_macs):
                    return accuracy(small), count_macs(small, example) / full

                uniform = uniform_selection(plain_scores, target)
                if uniform is not None:
                    row["uniform"] = measure(apply_selection(model, uniform, example_input=example))
                row["plain"] = measure(apply_selection(model, select(plain_scores, target=target)))
                row["aware"] = measure(
                    apply_selection(model, select(exact_aware, target=target), scheme=aware)
                )
                row["aware two-level"] = measure(
                    apply_selection(model, select(two_aware, target=target), scheme=aware)
                )
                checked, check = check_end_to_end(
                    model, plain, two_aware, target=target, max_evaluations=8, scheme=aware
                )
                small = apply_selection(model, checked, scheme=aware)
                row["two-level + e2e"] = (check.final_score, measure(small)[1])
                shown = ", ".join(f"{k} {v:.4f} (MACs {r:.3f})" for k, (v, r) in row.items())
                print(f"  top-1 at {target}: {shown}")
    print(f"\nload after: {load()}")


if __name__ == "__main__":
    main()
