"""Pruning benchmark: top-1 accuracy at 0.7 / 0.5 / 0.3 of the MACs, before fine-tuning.

For each benchmark model (the trained digits CNN and ResNet of ``common.py``, plus a VGG-
and a MobileNetV2-style model trained here on 16x16 digits and cached the same way) and each
pruning scheme (channel pruning with and without reconstruction, filter pruning by l2 / gm /
nuclear norm), build the eval-score dictionary once, then for every target:

* greedy: the greedy selection, applied, with its MAC ratio *measured* on the pruned model;
* uniform: every prunable layer keeps the same fraction of its channels (same scheme, same
  channel ranking), the largest fraction whose measured MACs meet the target.

Pruning layers interact (pruning a layer's inputs and its producer's inputs both shrink the
producer), so the dictionary's additive cost prediction is optimistic when several layers
are pruned; both methods are therefore priced exactly: every solver lowers the target it
asks of its additive step until the exact cost the dictionary records meets the real target
(``meet_exact_cost``), and the uniform fraction is bisected on the exact cost. Every
reported ratio is then measured with ``count_macs`` on the really pruned model and checked
against the exact price. "asked" is
the target the solver was finally given.

Run: python benchmarks/bench_pruning.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from common import BENCHMARK_MODELS, trained_cached

from evaluators import TopKAccuracy
from greedy_compress import GreedySolver, apply_selection, build_eval_scores, count_macs
from greedy_compress.demo.data import DigitsData, load_digits_data
from greedy_compress.demo.models import TinyMobileNetV2, TinyVGG
from greedy_compress.demo.run import cache_dir
from greedy_compress.errors import TargetUnreachableError
from greedy_compress.schemes import ChannelPruning, FilterPruning
from greedy_compress.selection.manual import available_layers, manual_selection

TARGETS = (0.7, 0.5, 0.3)
CANDIDATES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
SAMPLES = 128


def _trained(name: str, model: nn.Module, epochs: int) -> tuple[nn.Module, DigitsData]:
    data = load_digits_data(size=16)
    return trained_cached(model, data, cache_dir() / f"{name}-s16-e{epochs}-seed0-v1.pt", epochs)


def trained_vgg() -> tuple[nn.Module, DigitsData]:
    """TinyVGG (widths 16, 32, 64; flatten into the head) on 16x16 digits, cached."""
    torch.manual_seed(0)
    return _trained("tiny_vgg-w16", TinyVGG(in_channels=1, image_size=16), epochs=10)


def trained_mobilenet() -> tuple[nn.Module, DigitsData]:
    """TinyMobileNetV2 (depthwise, inverted residuals) on 16x16 digits, cached."""
    torch.manual_seed(0)
    return _trained("tiny_mobilenet_v2-w8", TinyMobileNetV2(in_channels=1), epochs=12)


MODELS = {**BENCHMARK_MODELS, "tiny_vgg": trained_vgg, "tiny_mbv2": trained_mobilenet}


def schemes(data: DigitsData) -> dict[str, object]:
    """The schemes compared, data-driven ones sampling the training set."""
    loader = data.train_loader()
    return {
        "channel+recon": ChannelPruning(data=loader, num_reconstruction_samples=SAMPLES),
        "channel-norecon": ChannelPruning(
            data=loader, num_reconstruction_samples=SAMPLES, reconstruct=False
        ),
        "filter_l2": FilterPruning(criterion="l2"),
        "filter_gm": FilterPruning(criterion="gm"),
        "filter_nuclear": FilterPruning(criterion="nuclear", data=loader, num_samples=SAMPLES),
    }


def measured_ratio(selection, scheme, macs) -> float:
    """The selection's exact MAC ratio, from the prepared scheme's channel counts (checked
    against the really pruned model for every reported row)."""
    ranks = {name: choice.rank for name, choice in selection.choices.items()}
    return scheme.selection_cost(ranks).macs / macs


def greedy_at(scores, scheme, target, macs):
    """The greedy selection, priced exactly (what ``compress`` does for pruning schemes)."""
    try:
        selection = GreedySolver().solve(scores, target=target)  # exact for pruning
    except TargetUnreachableError:
        return None
    return selection, measured_ratio(selection, scheme, macs)


def uniform_at(model, scheme, example, target, macs, layers):
    """Every prunable layer at one channel fraction, the largest that meets ``target``."""
    sizes = {name: scheme.prunable_layers()[name].size for name in layers}
    low, high, best = 0.0, 1.0, None
    for _ in range(12):
        fraction = (low + high) / 2
        ranks = {n: max(1, math.floor(fraction * size + 1e-9)) for n, size in sizes.items()}
        if scheme.selection_cost(ranks).macs <= target * macs:
            best, low = fraction, fraction
        else:
            high = fraction
    if best is None:
        return None
    selection = manual_selection(
        model,
        dict.fromkeys(layers, best),
        scheme=scheme,
        example_input=example,
        ratio_of="rank",
    )
    return selection, measured_ratio(selection, scheme, macs)


def main() -> None:
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared machine
    rows = []
    for model_name, factory in MODELS.items():
        model, data = factory()
        evaluator = TopKAccuracy(data.val_loader())
        example = data.val_images[:1]
        macs = count_macs(model, example)
        for scheme_name, scheme in schemes(data).items():
            start = time.perf_counter()
            scores = build_eval_scores(
                model,
                evaluator,
                scheme=scheme,
                candidates=CANDIDATES,
                example_input=example,
                progress=False,
            )
            seconds = time.perf_counter() - start
            layers = list(available_layers(model, scheme=scheme, example_input=example).layers)
            print(
                f"{model_name:12s} {scheme_name:16s} {macs:>10,} MACs  layers {len(layers):2d}  "
                f"dictionary {seconds:6.1f}s  baseline acc {scores.baseline:.4f}",
                flush=True,
            )
            for target in TARGETS:
                greedy = greedy_at(scores, scheme, target, macs)
                uniform = uniform_at(model, scheme, example, target, macs, layers)
                row = [model_name, scheme_name, target, scores.baseline]
                for found in (greedy, uniform):
                    if found is None:
                        row += [float("nan"), float("nan")]
                        continue
                    small = apply_selection(model, found[0], scheme=scheme, example_input=example)
                    ratio = count_macs(small, example) / macs
                    assert abs(ratio - found[1]) < 1e-12, (ratio, found[1])  # exact
                    row += [ratio, evaluator(small)]
                asked = greedy[0].details.get("asked_target") if greedy is not None else None
                row.append(float("nan") if asked is None else asked)
                rows.append(row)
    print()
    print(
        f"{'model':12s} {'scheme':16s} {'target':>6s} {'base':>6s} | {'greedy MACs':>11s} "
        f"{'top-1':>6s} {'asked':>6s} | {'uniform MACs':>12s} {'top-1':>6s}"
    )
    for name, scheme_name, target, base, g_ratio, g_acc, u_ratio, u_acc, asked in rows:
        print(
            f"{name:12s} {scheme_name:16s} {target:6.2f} {base:6.4f} | {g_ratio:11.3f} "
            f"{g_acc:6.4f} {asked:6.3f} | {u_ratio:12.3f} {u_acc:6.4f}"
        )


if __name__ == "__main__":
    main()
