"""Ways to choose per-layer ratios, compared: accuracy before fine-tuning at 0.7 / 0.5 / 0.3.

For each benchmark model, one eval-score dictionary per scheme (and their combination,
"mixed") is built on the *search* half of the validation set; every method then picks
per-layer ratios for each target, the compressed model is built, its MACs are measured, and
its top-1 accuracy is reported on both halves: the search half (what the methods optimized,
Optuna directly) and the *held-out* half (what they did not see). All in one run.

Adding a method is one entry in ``METHODS``: a function ``(context, scores, target) ->
Selection | None`` (None: the method does not apply, printed as "-"). Adding a scheme is one
entry in ``SCHEMES``. A method that needs no dictionary (a recommendation) can ignore
``scores`` and use ``context.model`` and ``context.example``.

Run: python benchmarks/bench_strategies.py [--models digits_cnn] [--trials 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from bench_core import uniform_selection
from common import BENCHMARK_MODELS  # first: sets OMP_WAIT_POLICY
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from evaluators import TopKAccuracy
from greedy_compress import (
    EvalScores,
    GreedyCompressError,
    TargetUnreachableError,
    apply_selection,
    build_eval_scores,
    combine_scores,
    count_macs,
    get_scheme,
    profile_model,
    recommend_slamp,
    recommend_vbmf,
    select,
)
from greedy_compress.model.profile import ModelProfile
from greedy_compress.schemes import Scheme
from greedy_compress.selection import Selection
from greedy_compress.selection.optuna_search import optuna_search

TARGETS = (0.7, 0.5, 0.3)
SCHEMES = ["spatial_svd", "weight_svd"]  # each gets a dictionary; "mixed" combines them all
PRUNING_SCHEMES = ["filter_pruning_l2"]  # own dictionaries, not mixed (their layers compound)
OPTUNA_TRIALS = 20


@dataclass
class Context:
    """What a method may use: the model, an example input, the search-half evaluator."""

    model: nn.Module
    example: torch.Tensor
    evaluator: TopKAccuracy
    settings: dict = field(default_factory=dict)


Method = Callable[[Context, EvalScores, float], "Selection | None"]


def _uniform(context: Context, scores: EvalScores, target: float) -> Selection | None:
    return None if scores.scheme == "mixed" else uniform_selection(scores, target)


def _optuna(context: Context, scores: EvalScores, target: float) -> Selection | None:
    if hasattr(
        get_scheme(SCHEMES[0] if scores.scheme == "mixed" else scores.scheme), "selection_cost"
    ):
        return None  # pruning dictionaries: not supported by the Optuna search (yet)
    result = optuna_search(
        context.model,
        context.evaluator,
        scores,
        target=target,
        n_trials=context.settings["trials"],
        seed=0,
        progress=False,
    )
    return result.selection


def _prepared(context: Context, name: str) -> tuple[Scheme, ModelProfile]:
    """The scheme prepared on the model (pruning schemes need its graph), once per name."""
    cache = context.settings.setdefault("prepared", {})
    if name not in cache:
        scheme = get_scheme(name)
        profile = profile_model(context.model, context.example)
        profile = scheme.prepare(context.model, example_input=context.example, profile=profile)
        cache[name] = (scheme, profile)
    return cache[name]


def _solve(context: Context, solver: str, scores: EvalScores, target: float) -> Selection:
    # exact also for pruning, whose layers compound (the dictionary records how)
    return select(scores, target=target, solver=solver)


def _measured_ratio(context: Context, selection: Selection) -> float:
    small = apply_selection(context.model, selection, example_input=context.example)
    return count_macs(small, context.example) / count_macs(context.model, context.example)


def _largest_meeting(
    make: Callable[[float], Selection | None],
    context: Context,
    target: float,
    low: float,
    high: float,
    steps: int = 10,
) -> Selection | None:
    """Bisect a recommendation's knob (more kept as it grows) for the largest measured
    MAC ratio within ``target``: recommendations take no target themselves."""
    best = None
    for _ in range(steps):
        middle = (low + high) / 2
        selection = make(middle)
        if selection is not None and _measured_ratio(context, selection) <= target:
            best, low = selection, middle
        else:
            high = middle
    return best


def _vbmf(context: Context, scores: EvalScores, target: float) -> Selection | None:
    if scores.scheme not in ("weight_svd", "spatial_svd", "tucker", "cp"):
        return None

    def make(calibration: float) -> Selection:
        return recommend_vbmf(
            context.model,
            scheme=scores.scheme,
            calibration=calibration,
            example_input=context.example,
        )

    return _largest_meeting(make, context, target, -1.0, 1.0)


def _slamp(context: Context, scores: EvalScores, target: float) -> Selection | None:
    if not scores.scheme.startswith("filter_pruning"):
        return None
    scheme, profile = _prepared(context, scores.scheme)
    layers = [n for n, info in profile.layers.items() if not scheme.unsupported_reason(info, "mac")]

    def make(kept: float) -> Selection | None:
        try:
            recommendation = recommend_slamp(context.model, ratio=1.0 - kept, layers=layers)
            return recommendation.to_selection(
                context.model, scheme=scheme, example_input=context.example
            )
        except GreedyCompressError:
            return None

    return _largest_meeting(make, context, target, 0.02, 0.98)


METHODS: dict[str, Method] = {
    "uniform": _uniform,
    "vbmf": _vbmf,
    "slamp": _slamp,
    "greedy": lambda context, scores, target: _solve(context, "greedy", scores, target),
    "knapsack": lambda context, scores, target: _solve(context, "knapsack", scores, target),
    "optuna": _optuna,
}


def _halves(images: torch.Tensor, labels: torch.Tensor) -> tuple[DataLoader, DataLoader]:
    middle = len(labels) // 2
    return (
        DataLoader(TensorDataset(images[:middle], labels[:middle]), batch_size=256),
        DataLoader(TensorDataset(images[middle:], labels[middle:]), batch_size=256),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(BENCHMARK_MODELS))
    parser.add_argument("--trials", type=int, default=OPTUNA_TRIALS, help="Optuna evaluations")
    args = parser.parse_args(argv)

    rows = []
    for model_name in args.models:
        model, data = BENCHMARK_MODELS[model_name]()
        search_loader, held_out_loader = _halves(data.val_images, data.val_labels)
        search, held_out = TopKAccuracy(search_loader), TopKAccuracy(held_out_loader)
        example = data.val_images[:1]
        context = Context(model, example, search, {"trials": args.trials})
        macs = count_macs(model, example)
        dictionaries = {}
        for scheme in [*SCHEMES, *PRUNING_SCHEMES]:
            start = time.perf_counter()
            dictionaries[scheme] = build_eval_scores(
                model, search, scheme=scheme, example_input=example, progress=False
            )
            print(
                f"{model_name}: {scheme} dictionary {time.perf_counter() - start:.1f}s, "
                f"{len(dictionaries[scheme].layers)} layers"
            )
        dictionaries["mixed"] = combine_scores([dictionaries[s] for s in SCHEMES])
        print(
            f"{model_name}: {macs:,} MACs, accuracy search {search(model):.4f}, "
            f"held-out {held_out(model):.4f}"
        )
        for scheme, scores in dictionaries.items():
            for target in TARGETS:
                for method_name, method in METHODS.items():
                    start = time.perf_counter()
                    try:
                        selection = method(context, scores, target)
                    except TargetUnreachableError:
                        selection = None
                    seconds = time.perf_counter() - start
                    if selection is None:
                        rows.append((model_name, scheme, target, method_name, None))
                        continue
                    small = apply_selection(model, selection, example_input=example)
                    result = (count_macs(small, example) / macs, search(small), held_out(small))
                    rows.append((model_name, scheme, target, method_name, (*result, seconds)))

    print()
    print(
        f"{'model':12s} {'scheme':18s} {'target':>6s} {'method':9s} {'MACs':>6s} "
        f"{'search':>7s} {'held-out':>8s} {'time':>7s}"
    )
    for model_name, scheme, target, method_name, result in rows:
        head = f"{model_name:12s} {scheme:18s} {target:6.2f} {method_name:9s}"
        if result is None:
            print(f"{head} {'-':>6s} {'-':>7s} {'-':>8s} {'-':>7s}")
            continue
        ratio, search_acc, held_acc, seconds = result
        print(f"{head} {ratio:6.3f} {search_acc:7.4f} {held_acc:8.4f} {seconds:6.2f}s")


if __name__ == "__main__":
    main()
