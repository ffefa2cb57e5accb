"""Dictionary build: whole-model evaluation (plain) vs suffix-only evaluation (fast).

For the demo CNN and the ResNet-style model, at three eval-set sizes, three builds:
``plain`` (whole-model evaluation, one candidate at a time, torch's own threads: what
AIMET does), ``suffix`` (suffix-only, ``workers=1``) and ``fast`` (suffix-only with the
default workers: candidates side by side in threads). For each: the median build time
(builds interleaved in one process: plain, suffix, fast, plain, ...), the median over
repeats of the plain build's time over this build's, evaluations per second, the peak
memory the build adds (each built once in a fresh process, peak RSS over the RSS before the
build), and the largest score difference from plain. Then the fast build sharded over 1
and 2 processes under torchrun (gloo), and, with ``--profile``, where the fast build's time
goes.

Run: python benchmarks/bench_search.py [--repeats 3] [--models M ...] [--sizes N ...]
[--no-shard] [--profile]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BENCHMARK_MODELS  # first: sets OMP_WAIT_POLICY

# isort: split
import torch
from torch.utils.data import DataLoader, TensorDataset

from evaluators import TopKAccuracy
from greedy_compress import build_eval_scores

ROOT = Path(__file__).resolve().parent.parent
SCHEME = "spatial_svd"
# Eval-set sizes (samples): one batch of the validation half, all of it, and, to show how
# the per-pass costs (tracing, graphs, SVDs, baseline) amortize on a realistic size, every
# digits image, training ones included (only the timing and the equality matter here).
SIZES = {
    "128": dict(batch_size=128, max_batches=1),
    "359": dict(batch_size=128),
    "1797": dict(batch_size=128, every_image=True),
}


# name -> build_eval_scores options
VARIANTS = {
    "plain": dict(fast=False),
    "suffix": dict(fast=True, workers=1),
    "fast": dict(fast=True),
}


def make_build(model_name: str, size: str, variant: str):
    """A zero-argument build of the dictionary with one of the ``VARIANTS``."""
    model, data = BENCHMARK_MODELS[model_name]()
    options = SIZES[size]
    loader = data.val_loader(batch_size=options["batch_size"])
    if options.get("every_image"):
        images = torch.cat([data.train_images, data.val_images])
        labels = torch.cat([data.train_labels, data.val_labels])
        loader = DataLoader(TensorDataset(images, labels), batch_size=options["batch_size"])
    evaluator = TopKAccuracy(loader, max_batches=options.get("max_batches"))
    return functools.partial(
        build_eval_scores,
        model,
        evaluator,
        scheme=SCHEME,
        example_input=data.val_images[:1],
        progress=False,
        **VARIANTS[variant],
    )


def evaluations(scores) -> int:
    return 1 + sum(len({e.rank for e in layer.entries}) for layer in scores.layers.values())


def max_difference(a, b) -> float:
    worst = abs(a.baseline - b.baseline)
    for name, layer in a.layers.items():
        for x, y in zip(layer.entries, b.layers[name].entries, strict=True):
            worst = max(worst, abs(x.score - y.score))
    return worst


def timed(build) -> tuple[float, object]:
    start = time.perf_counter()
    scores = build()
    return time.perf_counter() - start, scores


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_worker(model_name: str, size: str, variant: str) -> None:
    """Build once in this fresh process (variant ``once``: evaluate the model once, the
    plain evaluation a build is compared with); print the peak RSS the work added and the
    process's whole peak RSS, in MiB.

    RSS is sampled every millisecond from a thread (``ru_maxrss`` would also count the
    imports and the model loading before the build).
    """
    import threading

    if variant == "once":
        built = make_build(model_name, size, "plain")
        model, evaluator = built.args

        def build() -> None:
            evaluator(model)

    else:
        build = make_build(model_name, size, variant)
    before = peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    build()
    done.set()
    sampler.join()
    peak = max(peak, _rss_bytes())
    print(json.dumps({"peak_mib": (peak - before) / 2**20, "process_mib": peak / 2**20}))


def peak_memory(model_name: str, size: str, variant: str) -> dict[str, float]:
    """``peak_mib`` (what the work added) and ``process_mib`` (the process's peak RSS)."""
    command = [sys.executable, __file__, "--memory-worker", model_name, size, variant]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def shard_worker(out: str) -> None:
    """One torchrun rank: time the sharded fast build of the ResNet (full eval set)."""
    from torch import distributed as dist

    dist.init_process_group("gloo")
    build = make_build("tiny_resnet", "359", "fast")
    dist.barrier()
    seconds, scores = timed(build)
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps({"seconds": seconds, "evaluations": evaluations(scores)}))
    dist.destroy_process_group()


def sharded(processes: int) -> tuple[float, int]:
    threads = max(1, (os.cpu_count() or 1) // processes)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(processes),
            __file__,
            "--shard-worker",
            str(out),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        result = json.loads(out.read_text())
    return result["seconds"], result["evaluations"]


def profile_fast() -> None:
    """Where the fast ResNet build spends its time: advancing the unchanged network (once
    per batch and pass), the candidates' suffixes (in the worker threads) and the rest;
    then Python functions (cProfile) and torch ops (torch.profiler)."""
    import cProfile
    import pstats

    from greedy_compress.dictionary.suffix import scorer as suffix
    from greedy_compress.dictionary.suffix.workers import WorkerPool

    spent = {"advance": 0.0, "candidates": 0.0}

    def timing(function, key):
        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - start

        return timed_call

    split_stages, run = suffix.split_stages, WorkerPool.run

    def timing_split(*args, **kwargs):
        stages = split_stages(*args, **kwargs)
        for stage in stages:
            stage.advance.forward = timing(stage.advance.forward, "advance")
        return stages

    build = make_build("tiny_resnet", "359", "fast")
    build()  # warm up
    suffix.split_stages, WorkerPool.run = timing_split, timing(run, "candidates")
    try:
        total, _ = timed(build)
    finally:
        suffix.split_stages, WorkerPool.run = split_stages, run
    other = total - sum(spent.values())
    print("\nfast build (tiny_resnet, 359 samples), wall time on the calling thread:")
    print(f"  total {total:.2f}s")
    for key, label in (("advance", "advancing the unchanged network"), ("candidates", "suffixes")):
        print(f"  {label} {spent[key]:.2f}s ({spent[key] / total:.0%})")
    print(f"  other {other:.2f}s ({other / total:.0%}: baseline, tracing, graphs, SVDs, metrics)")

    profiler = cProfile.Profile()
    profiler.enable()
    build()
    profiler.disable()
    print("\ncProfile of one fast build, by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(10)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        build()
    print("torch.profiler, by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--models", nargs="+", default=list(BENCHMARK_MODELS))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--no-shard", action="store_true", help="skip the 1 vs 2 processes part")
    parser.add_argument("--memory-worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--shard-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        memory_worker(*args.memory_worker)
        return
    if args.shard_worker:
        shard_worker(args.shard_worker)
        return

    print(f"scheme {SCHEME}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats")
    print(
        "speed-up = median over repeats of plain time / time; MiB = peak memory the build "
        "adds; RSS x = the build process's peak RSS over that of a process evaluating the "
        "model once (same imports, model and data); diff = max |score - plain|"
    )
    print(
        f"{'model':12s} {'samples':>7s} {'evals':>5s} {'build':>6s} {'seconds':>7s} "
        f"{'speedup':>7s} {'evals/s':>7s} {'MiB':>6s} {'RSS x':>6s} {'diff':>7s}"
    )
    for model_name in args.models:
        for size in args.sizes:
            builds = {variant: make_build(model_name, size, variant) for variant in VARIANTS}
            times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            results = {}
            for _ in range(args.repeats):
                for variant, build in builds.items():
                    seconds, results[variant] = timed(build)
                    times[variant].append(seconds)
            medians = {variant: statistics.median(times[variant]) for variant in VARIANTS}
            count = evaluations(results["plain"])
            once = peak_memory(model_name, size, "once")["process_mib"]
            for variant in VARIANTS:
                # builds of one repeat ran back to back: their ratio is steadier than the
                # ratio of the medians when the machine's load drifts
                ratios = [p / v for p, v in zip(times["plain"], times[variant], strict=True)]
                memory = peak_memory(model_name, size, variant)
                difference = max_difference(results["plain"], results[variant])
                print(
                    f"{model_name:12s} {size:>7s} {count:5d} {variant:>6s} "
                    f"{medians[variant]:7.2f} {statistics.median(ratios):6.2f}x "
                    f"{count / medians[variant]:7.1f} {memory['peak_mib']:6.1f} "
                    f"{memory['process_mib'] / once:5.2f}x {difference:7.2g}"
                )

    if not args.no_shard:
        print("\nfast build of tiny_resnet (359 samples) sharded with torchrun (gloo):")
        runs: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(max(1, args.repeats - 1)):
            for processes in (1, 2):
                seconds, count = sharded(processes)
                runs[processes].append(seconds)
        one, two = (statistics.median(runs[p]) for p in (1, 2))
        print(f"  1 process : {one:6.2f}s  {count / one:6.1f} evals/s")
        print(f"  2 processes: {two:6.2f}s  {count / two:6.1f} evals/s  speedup {one / two:.2f}x")

    if args.profile:
        profile_fast()


if __name__ == "__main__":
    main()
