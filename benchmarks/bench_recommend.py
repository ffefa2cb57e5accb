"""Recommendations and decomposition fits: what they give and what they cost.

1. Per-layer fit time at the rank that keeps half of the layer's MACs, for tucker and cp
   against spatial_svd measured in the same run (interleaved, median of 3), on each
   benchmark model's conv layers.
2. VBMF recommendations (no evaluation) for tucker / weight_svd / spatial_svd at calibration
   -0.5 / 0 / 0.5: measured MAC ratio of the built model and top-1 accuracy before any
   fine-tuning, against the uncompressed model's accuracy.
3. SLAMP at pruning ratios 0.3 / 0.5: the per-layer keep ratios it picks (a uniform
   recommendation would keep 1 - ratio everywhere).

Run: python benchmarks/bench_recommend.py
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BENCHMARK_MODELS, median_time  # first: sets OMP_WAIT_POLICY

from evaluators import TopKAccuracy
from greedy_compress import apply_selection, count_macs, get_scheme, profile_model
from greedy_compress.selection.recommend import recommend_slamp, recommend_vbmf

CALIBRATIONS = (-0.5, 0.0, 0.5)
VBMF_SCHEMES = ("tucker", "weight_svd", "spatial_svd")
FIT_SCHEMES = ("spatial_svd", "tucker", "cp")


def fit_times(model, example) -> None:
    """Factorize + build at the half-MAC rank; time ratios against spatial_svd."""
    profile = profile_model(model, example)
    for name, layer in profile.layers.items():
        if layer.kind != "conv2d" or min(layer.kernel_size) == 1 or layer.in_channels > 64:
            continue  # cp on the widest layers takes minutes on a shared 2-core machine
        times = {s: [] for s in FIT_SCHEMES}
        ranks = {s: get_scheme(s).rank_for_ratio(layer, 0.5, "mac") for s in FIT_SCHEMES}
        module = model.get_submodule(name)
        for _ in range(3):  # interleaved so load changes hit every scheme alike
            for scheme in FIT_SCHEMES:
                fit = get_scheme(scheme).factorize
                seconds, _ = median_time(
                    lambda fit=fit, m=module, r=ranks[scheme]: fit(m).build(r), repeats=1
                )
                times[scheme].append(seconds)
        med = {s: sorted(t)[1] for s, t in times.items()}
        print(
            f"  fit {name:14s} {layer.in_channels:3d}->{layer.out_channels:3d}  "
            + "  ".join(
                f"{s} r={ranks[s]} {med[s] * 1e3:7.1f} ms ({med[s] / med['spatial_svd']:5.1f}x)"
                for s in FIT_SCHEMES
            )
        )


def main() -> None:
    for model_name, factory in BENCHMARK_MODELS.items():
        model, data = factory()
        evaluator = TopKAccuracy(data.val_loader())
        example = data.val_images[:1]
        macs = count_macs(model, example)
        print(f"{model_name}: {macs:,} MACs, top-1 {evaluator(model):.4f} uncompressed")
        fit_times(model, example)
        for scheme in VBMF_SCHEMES:
            for c in CALIBRATIONS:
                seconds, selection = median_time(
                    functools.partial(
                        recommend_vbmf, model, scheme=scheme, calibration=c, example_input=example
                    )
                )
                small = apply_selection(model, selection)
                ranks = {n: layer["rank"] for n, layer in selection.details["layers"].items()}
                print(
                    f"  vbmf {scheme:11s} c={c:+.1f}  MACs {count_macs(small, example) / macs:5.3f}"
                    f"  top-1 {evaluator(small):.4f}  ({seconds:5.2f}s)  ranks {ranks}"
                )
        for ratio in (0.3, 0.5):
            seconds, rec = median_time(functools.partial(recommend_slamp, model, ratio=ratio))
            keep = ", ".join(f"{n} {k:.2f}" for n, k in rec.keep_ratios.items())
            print(
                f"  slamp ratio {ratio}: pruned {rec.pruned_fraction:.3f} ({seconds:.3f}s); "
                f"keep {keep}"
            )


if __name__ == "__main__":
    main()
