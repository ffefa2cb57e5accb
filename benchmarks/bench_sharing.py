"""Two processes building into one dictionary file: evaluations and wall time vs one build.

Each build runs in its own process with one torch thread and one worker: first one build
alone, then two started together on one fresh ``scores_path`` (they share the work under the
file's lock). Printed: the evaluations each made (whole-model, a plain callable counting its
calls), their sum over the lone build's, and wall times, the lone build's over the pair's.
Each process evaluates the baseline once, so the ideal sum is the lone count + 1.

Run: python benchmarks/bench_sharing.py [--model digits_cnn] [--candidates 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BENCHMARK_MODELS  # first: sets OMP_WAIT_POLICY

# isort: split
import torch

from evaluators import TopKAccuracy
from greedy_compress import build_eval_scores


class CountingEvaluator:
    """Top-1 accuracy on the validation set, counting its calls."""

    def __init__(self, loader: object, name: str) -> None:
        self.inner, self.calls, self.name = TopKAccuracy(loader), 0, name  # type: ignore[arg-type]

    def __call__(self, model: torch.nn.Module) -> float:
        self.calls += 1
        return self.inner(model)


def build(model_name: str, candidates: int, path: str) -> None:
    """One build (run in a child process); prints its call count and time as JSON."""
    torch.set_num_threads(1)
    model, data = BENCHMARK_MODELS[model_name]()
    evaluator = CountingEvaluator(data.val_loader(), name=f"{model_name}-val")
    shape = (1, *next(iter(data.val_loader()))[0].shape[1:])
    start = time.perf_counter()
    build_eval_scores(
        model,
        evaluator,
        candidates=candidates,
        input_shape=shape,
        workers=1,
        progress=False,
        scores_path=path,
    )
    print(json.dumps({"calls": evaluator.calls, "seconds": time.perf_counter() - start}))


def _start(model_name: str, candidates: int, path: Path) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--child", str(path), "--model", model_name]
    command += ["--candidates", str(candidates)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a build failed with exit code {process.returncode}")
    return dict(json.loads(out.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(BENCHMARK_MODELS), default="digits_cnn")
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        build(args.model, args.candidates, args.child)
        return
    BENCHMARK_MODELS[args.model]()  # train and cache it once, outside the timed builds
    with tempfile.TemporaryDirectory() as folder:
        alone = _result(_start(args.model, args.candidates, Path(folder) / "alone.json"))
        shared = Path(folder) / "shared.json"
        started = time.perf_counter()
        pair = [_start(args.model, args.candidates, shared) for _ in range(2)]
        results = [_result(process) for process in pair]
        pair_seconds = time.perf_counter() - started
    calls = [int(r["calls"]) for r in results]
    print(f"{args.model}, {args.candidates} candidates, whole-model evaluation, 1 thread each")
    print(f"one build alone:        {alone['calls']:4.0f} evaluations, {alone['seconds']:6.1f} s")
    print(
        f"two builds, one file:   {calls[0]} + {calls[1]} = {sum(calls)} evaluations "
        f"({sum(calls) / alone['calls']:.3f}x the lone build; ideal {alone['calls'] + 1:.0f}, "
        f"one baseline each), {pair_seconds:6.1f} s for both "
        f"(lone / pair time {alone['seconds'] / pair_seconds:.2f}x)"
    )


if __name__ == "__main__":
    main()
