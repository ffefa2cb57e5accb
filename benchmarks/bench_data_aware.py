"""Data-aware compression and the two-level dictionary, on the corrupted digits.

For each reference model trained on :func:`common.corrupt_digits` (the corruption every
benchmark uses), with a plain callable evaluator (top-1 on the validation split; what AIMET
users have):

1. build time, interleaved in one process (``--repeats`` rounds, medians, ratios against
   the plain whole-model path measured in the same rounds):
   - ``whole``: the exact build, every candidate a whole-model evaluation (``fast=False``);
   - ``memo``: the exact build with the front memo (``fast=True``, the default);
   - ``two-level``: proxies from one calibration pass of ``--calibration`` samples (inside
     the timed call), the evaluator only at ``--probes`` candidates per layer;
   and where the time goes per evaluation: the build's wall time per evaluation, the time
   spent inside the evaluator, the rest (the build's own overhead), and a bare call of the
   same evaluation function on the unchanged model, timed in the same rounds;
2. top-1 before fine-tuning at 0.5 and 0.3 of the MACs: uniform (every layer at one ratio;
   the calibration check: at 0.5 it must cost clearly more than 5 points), plain scheme
   (exact dictionary), data-aware scheme (exact dictionary), data-aware two-level
   dictionary as built, after :func:`refine_two_level` (the predicted scores the optimum
   rests on measured), and after :func:`check_end_to_end` (refinement, 3 selections and
   local moves, at most 8 end-to-end evaluations), with what each cost in evaluations.

Run: python benchmarks/bench_data_aware.py [--quick] [--repeats N] [--models ...]
(quick: one model, one scheme, two rounds; prints ``/proc/loadavg`` before and after;
``--calibration``: samples of the calibration pass, 32 by default)
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
from common import CORRUPTED_MODELS

from evaluators import TopKAccuracy
from greedy_compress import apply_selection, build_eval_scores, count_macs, select
from greedy_compress.dictionary import build_two_level_scores
from greedy_compress.model.statistics import Calibration
from greedy_compress.schemes import SpatialSVD, WeightSVD
from greedy_compress.selection import check_end_to_end, refine_two_level

TARGETS = (0.5, 0.3)
SCHEMES = {"spatial_svd": SpatialSVD, "weight_svd": WeightSVD}
KINDS = ("whole", "memo", "two-level")


def load() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


class Plain:
    """A plain callable around the accuracy, counting its calls and the time inside it."""

    def __init__(self, accuracy: TopKAccuracy) -> None:
        self.accuracy, self.calls, self.seconds = accuracy, 0, 0.0

    def __call__(self, model) -> float:
        self.calls += 1
        start = time.perf_counter()
        try:
            return self.accuracy(model)
        finally:
            self.seconds += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", nargs="+", choices=list(CORRUPTED_MODELS), default=None)
    parser.add_argument("--schemes", nargs="+", choices=list(SCHEMES), default=None)
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--probes", type=int, default=1)
    parser.add_argument("--calibration", type=int, default=32, help="calibration samples")
    args = parser.parse_args()
    models = args.models or (["digits_cnn"] if args.quick else list(CORRUPTED_MODELS))
    schemes = args.schemes or (["spatial_svd"] if args.quick else list(SCHEMES))
    repeats = args.repeats or (2 if args.quick else 3)
    print(f"load before: {load()}")
    for model_name in models:
        model, data = CORRUPTED_MODELS[model_name]()
        accuracy = TopKAccuracy(data.val_loader())
        plain = Plain(accuracy)
        example = data.val_images[:1]
        options = dict(candidates=args.candidates, example_input=example, progress=False)
        base = accuracy(model)
        full_macs = count_macs(model, example)  # also pays torch's one-time imports
        print(f"\n== {model_name}: baseline top-1 {base:.4f}")
        for scheme_name in schemes:

            def aware_scheme(scheme_name=scheme_name, data=data):
                calibration = Calibration(data.train_loader(), num_samples=args.calibration)
                return SCHEMES[scheme_name](data_aware=True, data=calibration)

            times: dict[str, list[float]] = {kind: [] for kind in (*KINDS, "bare")}
            inside: dict[str, list[float]] = {kind: [] for kind in KINDS}
            evaluations: dict[str, int] = {}
            results = {}
            for _ in range(repeats):  # interleaved rounds
                start = time.perf_counter()
                accuracy(model)
                times["bare"].append(time.perf_counter() - start)
                for kind in KINDS:
                    plain.calls, plain.seconds = 0, 0.0
                    start = time.perf_counter()
                    if kind == "two-level":
                        results[kind] = build_two_level_scores(
                            model, plain, scheme=aware_scheme(), probes=args.probes, **options
                        )
                    else:
                        results[kind] = build_eval_scores(
                            model, plain, scheme=scheme_name, fast=kind == "memo", **options
                        )
                    times[kind].append(time.perf_counter() - start)
                    inside[kind].append(plain.seconds)
                    evaluations[kind] = plain.calls
            medians = {kind: statistics.median(values) for kind, values in times.items()}
            bare = medians["bare"]
            same = results["memo"] == results["whole"]
            print(f"-- {scheme_name}: build seconds (median of {repeats}), ratio vs whole")
            for kind in KINDS:
                seconds, count = medians[kind], evaluations[kind]
                within = statistics.median(inside[kind])
                print(
                    f"  {kind:>9}: {seconds:7.2f} s  x{medians['whole'] / seconds:5.2f}"
                    f"  ({count} evaluations; per evaluation {seconds / count * 1e3:6.1f} ms"
                    f" = {within / count * 1e3:6.1f} ms in the evaluator"
                    f" + {(seconds - within) / count * 1e3:5.1f} ms outside;"
                    f" bare call {bare * 1e3:6.1f} ms)"
                )
            print(f"  memo dictionary identical to the whole-model one: {same}")
            two = results["two-level"]
            total = sum(len(layer.entries) for layer in two.layers.values())
            print(f"  two-level: {total - two.predicted} of {total} scores measured")

            aware = aware_scheme()
            plain.calls = 0
            exact_aware = build_eval_scores(model, plain, scheme=aware, **options)
            plain.calls = 0
            two_aware = build_two_level_scores(
                model, plain, scheme=aware, probes=args.probes, **options
            )
            two_calls = plain.calls
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
                row["two-level"] = measure(
                    apply_selection(model, select(two_aware, target=target), scheme=aware)
                )
                plain.calls = 0
                refined, how = refine_two_level(
                    model, plain, two_aware, target=target, scheme=aware
                )
                row["refined"] = measure(
                    apply_selection(model, select(refined, target=target), scheme=aware)
                )
                plain.calls = 0
                checked, check = check_end_to_end(
                    model, plain, two_aware, target=target, max_evaluations=8, scheme=aware
                )
                e2e_calls = plain.calls
                small = apply_selection(model, checked, scheme=aware)
                row["refined + e2e"] = (check.final_score, measure(small)[1])
                shown = ", ".join(f"{k} {v:.4f} (MACs {r:.3f})" for k, (v, r) in row.items())
                print(f"  top-1 at {target}: {shown}")
                print(
                    f"    evaluations: two-level build {two_calls}, refinement "
                    f"{len(how.measured)} (converged {how.converged}), refinement + check "
                    f"{e2e_calls} (trusted {check.trusted}); exact build "
                    f"{evaluations['whole']}"
                )
    print(f"\nload after: {load()}")


if __name__ == "__main__":
    main()
