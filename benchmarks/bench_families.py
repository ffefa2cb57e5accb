"""Coverage of the 21 architecture families at ImageNet size, pruned at 0.5.

Each family of ``greedy_compress.demo.models.FAMILIES`` (ResNet-18/-50, ResNeXt-50,
Wide-ResNet-50, VGG-11-BN, AlexNet, SqueezeNet, DenseNet-121, GoogLeNet, Inception-v3,
MobileNetV2/V3, MNASNet, ShuffleNetV2, EfficientNet-B0, RegNetX/Y-400MF, ConvNeXt-T, ViT-B/16,
Swin-T, MaxViT-T; random weights, 1x3x224x224) is prepared by a scheme, every layer the scheme
accepts is asked for 0.5 of its channels (``manual_selection``, ``ratio_of="rank"``) and the
selection is applied. A row gives: compressed or refused (the first reason, or "did not
finish" past ``--limit`` seconds), layers pruned / refused, the measured MAC ratio
(``count_macs`` of the pruned model over the original's) next to the selection's predicted
ratio, and the seconds the whole compression took (graph, scores, selection, apply).

Every row runs in its own process (so a row that runs past the limit is stopped and a large
model's memory is returned); the rows run one after another.

Run: python benchmarks/bench_families.py [--schemes filter_pruning_l2 channel_pruning]
     [--families resnet50 vit_b_16] [--limit 300] [--samples 8] [--size 224]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

import argparse
import json
import subprocess
import sys
import time
import warnings

import torch

from greedy_compress import apply_selection, count_macs, manual_selection
from greedy_compress.demo.models import FAMILIES
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.profile import profile_model
from greedy_compress.schemes import ChannelPruning, get_scheme


def row(family: str, scheme_name: str, size: int, samples: int) -> dict:
    """Prune ``family`` at 0.5 with ``scheme_name``; the figures of one table row."""
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    example = torch.zeros(1, 3, size, size)
    if scheme_name == "channel_pruning":
        data = [(torch.randn(samples, 3, size, size), None)]
        scheme = ChannelPruning(data=data, num_reconstruction_samples=samples)
    else:
        scheme = get_scheme(scheme_name)
    start = time.perf_counter()
    try:
        profile = profile_model(model, example)
        profile = scheme.prepare(model, example_input=example, profile=profile) or profile
        reasons = {n: scheme.unsupported_reason(i, "mac") for n, i in profile.layers.items()}
        planned = [n for n, r in reasons.items() if r is None]
        refused = {n: r for n, r in reasons.items() if r is not None}
        first = next(iter(refused.items()), ("", ""))
        out = {"pruned": len(planned), "refused": len(refused), "why": f"{first[0]}: {first[1]}"}
        if not planned:
            return {**out, "status": "refused"}
        selection = manual_selection(
            model, {n: 0.5 for n in planned}, scheme=scheme, example_input=example, ratio_of="rank"
        )
        small = apply_selection(model, selection, scheme=scheme, example_input=example)
    except GreedyCompressError as error:
        return {"status": "refused", "pruned": 0, "refused": 0, "why": str(error)}
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        finite = bool(torch.isfinite(small(torch.randn(1, 3, size, size))).all())
    measured = count_macs(small, example) / count_macs(model, example)
    status = "compressed" if finite else "NON-FINITE OUTPUT"
    if abs(measured - selection.predicted_ratio) > 1e-9:
        status = "PRICE MISMATCH"
    return {
        **out,
        "status": status,
        "macs": measured,
        "predicted": selection.predicted_ratio,
        "seconds": seconds,
    }


def table(families: list[str], schemes: list[str], limit: float, size: int, samples: int) -> None:
    print(
        f"{'family':19s} {'scheme':17s} {'status':16s} {'pruned':>6s} {'refused':>7s} "
        f"{'MACs':>6s} {'pred.':>6s} {'time s':>7s}  first refusal"
    )
    for scheme_name in schemes:
        for family in families:
            command = [sys.executable, __file__, "--row", family, scheme_name]
            command += ["--size", str(size), "--samples", str(samples)]
            start = time.perf_counter()
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=limit)
                lines = done.stdout.strip().splitlines()
                if lines:
                    figures = json.loads(lines[-1])
                else:
                    error = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    figures = {"status": "CRASHED", "why": error}
            except subprocess.TimeoutExpired:
                figures = {"status": f"not in {limit:.0f} s", "why": ""}
                figures["seconds"] = time.perf_counter() - start
            macs = f"{figures['macs']:.3f}" if "macs" in figures else "-"
            predicted = f"{figures['predicted']:.3f}" if "predicted" in figures else "-"
            seconds = f"{figures['seconds']:.1f}" if "seconds" in figures else "-"
            print(
                f"{family:19s} {scheme_name:17s} {figures['status']:16s} "
                f"{figures.get('pruned', '-'):>6} {figures.get('refused', '-'):>7} {macs:>6s} "
                f"{predicted:>6s} {seconds:>7s}  {figures['why'][:90]}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schemes", nargs="+", default=["filter_pruning_l2"])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--limit", type=float, default=300.0, help="seconds per row")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--samples", type=int, default=8, help="channel pruning's samples")
    parser.add_argument("--row", nargs=2, metavar=("FAMILY", "SCHEME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    torch.set_num_threads(2)
    if args.row:
        print(json.dumps(row(*args.row, args.size, args.samples)))
    else:
        table(args.families, args.schemes, args.limit, args.size, args.samples)


if __name__ == "__main__":
    main()
