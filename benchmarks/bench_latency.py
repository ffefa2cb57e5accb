"""Latency benchmark: what a latency target gives, measured, next to the same MAC target.

For each reference model (the trained digits CNN and ResNet of ``common.py``, the VGG- and
MobileNetV2-style models of ``bench_pruning.py``) and each scheme (spatial SVD, weight SVD,
channel pruning, filter pruning by l2 norm, and a mixed dictionary of both SVDs), build one
latency dictionary (``cost="latency"``: every candidate timed next to its original layer),
then:

* latency target 0.6: the greedy selection, the combined model timed next to the original
  and repaired while it misses (``meet_latency``, as ``compress`` does): the measured
  latency ratio (median of paired rounds) with its spread, the dictionary's additive
  prediction, the repair rounds and the top-1 accuracy;
* MAC target 0.6, from the same dictionary: its measured MAC ratio, its latency ratio
  measured the same way, and the top-1 accuracy.

Every latency is measured in this process, each compressed model interleaved round by round
with the original, so the machine's load cancels in the ratio. It prints ``/proc/loadavg``
before and after. Accuracies are before any fine-tuning.

Run: python benchmarks/bench_latency.py [--batch-size 32] [--threads 1] [--repeats 15]
     [--models ...] [--schemes ...] [--candidates 9]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_pruning import trained_mobilenet, trained_vgg
from common import BENCHMARK_MODELS

from evaluators import TopKAccuracy
from greedy_compress import (
    BuildSettings,
    TargetUnreachableError,
    apply_selection,
    build_eval_scores,
    combine_scores,
    count_macs,
    select,
)
from greedy_compress.errors import NoCompressibleLayerError
from greedy_compress.schemes import scheme_with_data
from greedy_compress.selection import meet_latency, reachable_ratio

MODELS = {**BENCHMARK_MODELS, "tiny_vgg": trained_vgg, "tiny_mbv2": trained_mobilenet}
SCHEMES = ("spatial_svd", "weight_svd", "channel_pruning", "filter_pruning_l2", "mixed")
TARGET = 0.6


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


def dictionaries(model, data, evaluator, example, settings, schemes):
    """One latency dictionary per scheme asked for (the mixed one from both SVDs)."""
    built, needed = {}, set(schemes)
    if "mixed" in needed:
        needed |= {"spatial_svd", "weight_svd"}
    for name in [s for s in SCHEMES if s in needed and s != "mixed"]:
        start = time.perf_counter()
        try:
            built[name] = build_eval_scores(
                model,
                evaluator,
                scheme=scheme_with_data(name, data.train_loader()),
                example_input=example,
                settings=settings,
            )
        except NoCompressibleLayerError as error:
            print(f"  {name}: {error}", flush=True)
            continue
        dropped = sum(map(len, built[name].latency.dropped.values()))
        print(
            f"  {name:18s} dictionary {time.perf_counter() - start:6.1f}s  layers "
            f"{len(built[name].layers)}  dropped {dropped} candidates (slower than the original)",
            flush=True,
        )
    if "mixed" in schemes and {"spatial_svd", "weight_svd"} <= set(built):
        built["mixed"] = combine_scores([built["spatial_svd"], built["weight_svd"]])
    return {name: built[name] for name in schemes if name in built}


def row(model, data, evaluator, example, scores, meter):
    """The latency target and the MAC target on one dictionary."""
    scheme = (
        None if scores.scheme == "mixed" else scheme_with_data(scores.scheme, data.train_loader())
    )
    macs = count_macs(model, example)
    result = {"reachable": reachable_ratio(scores, cost="latency")}
    try:
        selection = select(scores, target=TARGET)
        kept, check = meet_latency(
            model,
            scores,
            selection,
            solve=lambda asked: select(scores, target=asked),
            meter=meter,
            example=example,
            scheme=scheme,
        )
        small = apply_selection(model, kept, scheme=scheme, example_input=example)
        result["latency"] = (check, evaluator(small), count_macs(small, example) / macs)
    except TargetUnreachableError:
        result["latency"] = None
    try:
        by_macs = select(scores, target=TARGET, cost="mac")
        small = apply_selection(model, by_macs, scheme=scheme, example_input=example)
        paired = meter.compare(small, model, example)
        result["mac"] = (paired, evaluator(small), count_macs(small, example) / macs)
    except TargetUnreachableError:
        result["mac"] = None
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--candidates", type=int, default=9)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # the whole run, timing included
    settings = BuildSettings(
        cost="latency",
        candidates=args.candidates,
        progress=False,
        latency_batch_size=args.batch_size,
        latency_threads=args.threads,
        latency_repeats=args.repeats,
    )
    meter = settings.latency_meter
    print(f"loadavg before: {loadavg()}", flush=True)
    print(
        f"batch {args.batch_size}, {args.threads} thread(s), {args.repeats} paired rounds, "
        f"{args.candidates} candidates, target {TARGET}",
        flush=True,
    )
    rows = []
    for model_name in args.models:
        model, data = MODELS[model_name]()
        evaluator = TopKAccuracy(data.val_loader())
        example = data.val_images[:1]
        print(f"{model_name}: baseline top-1 {evaluator(model):.4f}", flush=True)
        found = dictionaries(model, data, evaluator, example, settings, args.schemes)
        for scheme_name, scores in found.items():
            rows.append(
                (model_name, scheme_name, row(model, data, evaluator, example, scores, meter))
            )
    print(f"loadavg after: {loadavg()}")
    print()
    print(
        f"{'model':12s} {'scheme':18s} | latency target {TARGET}: {'measured':>16s} "
        f"{'predicted':>9s} {'rounds':>6s} {'MACs':>5s} {'top-1':>6s} | MAC target {TARGET}: "
        f"{'latency':>16s} {'MACs':>5s} {'top-1':>6s}"
    )
    for model_name, scheme_name, result in rows:
        line = f"{model_name:12s} {scheme_name:18s} | "
        if result["latency"] is None:
            line += f"unreachable (smallest predicted {result['reachable']:.3f})".ljust(62)
        else:
            check, accuracy, mac_ratio = result["latency"]
            verdict = "" if check.ratio <= TARGET else (" ~" if check.met else " !")
            measured = f"x{check.ratio:.3f}±{check.spread:.3f}{verdict}"
            line += (
                f"{'':18s}{measured:>16s} {check.predicted_ratio:9.3f} {len(check.rounds):6d} "
                f"{mac_ratio:5.3f} {accuracy:6.4f}"
            )
        line += " | "
        if result["mac"] is None:
            line += "unreachable"
        else:
            paired, accuracy, mac_ratio = result["mac"]
            latency = f"x{paired.ratio:.3f}±{paired.spread:.3f}"
            line += f"{'':14s}{latency:>16s} {mac_ratio:5.3f} {accuracy:6.4f}"
        print(line)
    print("~: above the target but within the measured spread; !: above it by more")


if __name__ == "__main__":
    main()
