"""Dictionary build: whole-model evaluation (plain) vs suffix-only evaluation (fast).

For the demo CNN and the ResNet-style model, at two eval-set sizes: the median build time of
each path (builds interleaved in one process: plain, fast, plain, fast, ...), their ratio,
evaluations per second, the peak memory the build adds (each path built once in a fresh
process, peak RSS over the RSS before the build), and the largest score difference
between the two dictionaries. Then the fast build sharded over 1 and 2 processes under
torchrun (gloo), and, with ``--profile``, where the fast build's time goes.

Run: python benchmarks/bench_search.py [--repeats 3] [--profile]
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

from evaluators import TopKAccuracy
from greedy_compress import build_eval_scores

ROOT = Path(__file__).resolve().parent.parent
SCHEME = "spatial_svd"
SIZES = {"128": dict(batch_size=128, max_batches=1), "359": dict(batch_size=128)}  # samples


def make_build(model_name: str, size: str, fast: bool):
    """A zero-argument build of the dictionary, and the number of evaluations it makes."""
    model, data = BENCHMARK_MODELS[model_name]()
    options = SIZES[size]
    evaluator = TopKAccuracy(
        data.val_loader(batch_size=options["batch_size"]), max_batches=options.get("max_batches")
    )
    return functools.partial(
        build_eval_scores,
        model,
        evaluator,
        scheme=SCHEME,
        example_input=data.val_images[:1],
        progress=False,
        fast=fast,
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


def memory_worker(model_name: str, size: str, fast: bool) -> None:
    """Build once in this fresh process; print the peak RSS the build added, in MiB.

    RSS is sampled every millisecond from a thread (``ru_maxrss`` would also count the
    imports and the model loading before the build).
    """
    import threading

    build = make_build(model_name, size, fast)
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
    print(json.dumps({"peak_mib": (max(peak, _rss_bytes()) - before) / 2**20}))


def peak_memory(model_name: str, size: str, fast: bool) -> float:
    command = [sys.executable, __file__, "--memory-worker", model_name, size, str(int(fast))]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def shard_worker(out: str) -> None:
    """One torchrun rank: time the sharded fast build of the ResNet (full eval set)."""
    from torch import distributed as dist

    dist.init_process_group("gloo")
    build = make_build("tiny_resnet", "359", fast=True)
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
    """Where the fast ResNet build spends its time: front vs rest of the network per layer,
    Python functions (cProfile) and torch ops (torch.profiler)."""
    import cProfile
    import pstats

    import torch

    import greedy_compress.suffix as suffix

    spent: dict[str, list[float]] = {}
    split_graph = suffix.split_graph

    def timing_split(model, graph, names):
        split = split_graph(model, graph, names)
        record = spent.setdefault(",".join(names), [0.0, 0.0])
        for index, part in enumerate((split.prefix, split.suffix)):
            forward = part.forward

            def timed_forward(*args, _forward=forward, _index=index):
                start = time.perf_counter()
                result = _forward(*args)
                record[_index] += time.perf_counter() - start
                return result

            part.forward = timed_forward
        return split

    build = make_build("tiny_resnet", "359", fast=True)
    build()  # warm up
    suffix.split_graph = timing_split
    try:
        total, _ = timed(build)
    finally:
        suffix.split_graph = split_graph
    front = sum(r[0] for r in spent.values())
    rest = sum(r[1] for r in spent.values())
    print("\nfast build (tiny_resnet, 359 samples): time per layer in the front (once per batch)")
    print("and in the rest of the network (once per batch and candidate):")
    for name, (a, b) in spent.items():
        print(f"  {name:28s} front {a:6.3f}s  rest {b:6.3f}s")
    print(
        f"  total {total:.2f}s: front {front:.2f}s ({front / total:.0%}), rest {rest:.2f}s "
        f"({rest / total:.0%}), other {total - front - rest:.2f}s "
        f"({(total - front - rest) / total:.0%}: baseline, SVDs, tracing, metrics)"
    )

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
    parser.add_argument("--no-shard", action="store_true", help="skip the 1 vs 2 processes part")
    parser.add_argument("--memory-worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--shard-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch  # after common, which sets OMP_WAIT_POLICY before torch starts

    if args.memory_worker:
        model_name, size, fast = args.memory_worker
        memory_worker(model_name, size, fast == "1")
        return
    if args.shard_worker:
        shard_worker(args.shard_worker)
        return

    print(f"scheme {SCHEME}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats")
    header = (
        f"{'model':12s} {'samples':>7s} {'evals':>5s} {'plain s':>8s} {'fast s':>7s} "
        f"{'speedup':>7s} {'plain ev/s':>10s} {'fast ev/s':>9s} {'plain MiB':>9s} "
        f"{'fast MiB':>8s} {'max |diff|':>10s}"
    )
    print(header)
    for model_name in BENCHMARK_MODELS:
        for size in SIZES:
            builds = {fast: make_build(model_name, size, fast) for fast in (False, True)}
            times: dict[bool, list[float]] = {False: [], True: []}
            results = {}
            for _ in range(args.repeats):
                for fast in (False, True):
                    seconds, results[fast] = timed(builds[fast])
                    times[fast].append(seconds)
            plain, fast = (statistics.median(times[f]) for f in (False, True))
            count = evaluations(results[True])
            memory = [peak_memory(model_name, size, f) for f in (False, True)]
            print(
                f"{model_name:12s} {size:>7s} {count:5d} {plain:8.2f} {fast:7.2f} "
                f"{plain / fast:6.2f}x {count / plain:10.1f} {count / fast:9.1f} "
                f"{memory[0]:9.1f} {memory[1]:8.1f} {max_difference(*results.values()):10.2g}"
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
