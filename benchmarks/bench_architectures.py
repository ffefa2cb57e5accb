"""Architecture coverage: every scheme x reference block, and channel pruning of ResNet-50.

For each reference block of ``greedy_compress.demo.models.REFERENCE_BLOCKS`` (ConvNeXt, ViT
with torch's and hand-written attention, Swin, MBConv with SE, ShuffleNetV2, Inception,
DenseNet, RegNet; random weights, 1x16x16 inputs) and each scheme, the scheme is prepared,
every layer it accepts is asked for 0.5 of its rank (pruning schemes) or of its MACs
(decompositions) with ``manual_selection``, and the selection is applied. A row gives the
layers compressed / refused (with the first refusal's reason), the measured MAC ratio
(``count_macs`` of the compressed model; checked to equal the selection's exact price), the
CPU latency ratio (medians, both models timed interleaved in this process) and the seconds
the whole compression took (prepare, select, apply).

Then ResNet-50's architecture (``resnet50()``, random weights) and VGG-11-BN's at ``--size``
(224 by default) are channel-pruned with reconstruction at 0.5 on every eligible layer at
the scheme's default settings (``--samples`` to change the 128 samples), timed by phase:
prepare (graph, sampling), selection, apply (the refits); ``--baseline`` also times the
build with every layer's refit run from the model's input, interleaved.

Run: python benchmarks/bench_architectures.py [--size 224] [--samples N] [--baseline]
[--skip-resnet] [--skip-coverage]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

import argparse
import resource
import statistics
import time
import warnings

import torch
from torch import nn

from greedy_compress import apply_selection, count_macs, manual_selection
from greedy_compress.demo.models import REFERENCE_BLOCKS, resnet50
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.profile import profile_model
from greedy_compress.schemes import ChannelPruning, available_schemes, get_scheme

SHAPE = (1, 1, 16, 16)
SCHEMES = [s for s in available_schemes() if s != "filter_pruning_index"]


def _latency(first: nn.Module, second: nn.Module, inputs: torch.Tensor) -> float:
    """Median latency ratio second / first, the two timed interleaved."""
    times: tuple[list[float], list[float]] = ([], [])
    with torch.inference_mode():
        for _ in range(3):  # warm up
            first(inputs), second(inputs)
        for _ in range(15):
            for model, seen in ((first, times[0]), (second, times[1])):
                start = time.perf_counter()
                model(inputs)
                seen.append(time.perf_counter() - start)
    return statistics.median(times[1]) / statistics.median(times[0])


def coverage_row(key: str, scheme_name: str, data: list) -> dict:
    torch.manual_seed(0)
    model = REFERENCE_BLOCKS[key]().eval()
    example = torch.zeros(SHAPE)
    start = time.perf_counter()
    scheme = get_scheme(scheme_name).with_data(data)
    profile = profile_model(model, example)
    try:
        profile = scheme.prepare(model, example_input=example, profile=profile) or profile
    except GreedyCompressError as error:
        return {"done": 0, "refused": len(profile.layers), "why": str(error)[:70]}
    reasons = {n: scheme.unsupported_reason(i, "mac") for n, i in profile.layers.items()}
    planned = [n for n, r in reasons.items() if r is None]
    refused = {n: r for n, r in reasons.items() if r is not None}
    why = next(iter(refused.items()), ("", ""))
    row = {"done": len(planned), "refused": len(refused), "why": f"{why[0]}: {why[1]}"[:70]}
    if not planned:
        return row
    # Pruning: half of each layer's channels (heads...); decompositions: half its MACs (half
    # the rank of a decomposition can cost more than the layer).
    ratio_of = "rank" if "pruning" in scheme_name or scheme_name == "snp" else "cost"
    selection = manual_selection(
        model, {n: 0.5 for n in planned}, scheme=scheme, example_input=example, ratio_of=ratio_of
    )
    small = apply_selection(model, selection, scheme=scheme, example_input=example)
    row["seconds"] = time.perf_counter() - start
    row["macs"] = count_macs(small, example) / count_macs(model, example)
    if abs(row["macs"] - selection.predicted_ratio) > 1e-9:
        row["why"] = f"PRICE MISMATCH predicted {selection.predicted_ratio:.4f}"
    row["latency"] = _latency(model, small.eval(), torch.randn(32, *SHAPE[1:]))
    return row


def coverage() -> None:
    data = [(torch.randn(16, *SHAPE[1:], generator=torch.Generator().manual_seed(2)), None)]
    print(
        f"{'block':10s} {'scheme':18s} {'done':>4s} {'refused':>7s} {'MACs':>6s} "
        f"{'latency':>7s} {'time s':>6s}  first refusal"
    )
    for key in REFERENCE_BLOCKS:
        for scheme_name in SCHEMES:
            row = coverage_row(key, scheme_name, data)
            macs = f"{row['macs']:.3f}" if "macs" in row else "-"
            latency = f"{row['latency']:.2f}" if "latency" in row else "-"
            seconds = f"{row['seconds']:.2f}" if "seconds" in row else "-"
            print(
                f"{key:10s} {scheme_name:18s} {row['done']:4d} {row['refused']:7d} {macs:>6s} "
                f"{latency:>7s} {seconds:>6s}  {row['why']}",
                flush=True,
            )


def vgg11_bn() -> nn.Module:
    """VGG-11 with BatchNorm (torchvision's architecture, random weights), 1000 classes."""
    layers: list[nn.Module] = []
    channels = 3
    for width in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            assert isinstance(width, int)
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width)]
            layers.append(nn.ReLU(inplace=True))
            channels = width
    return nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d(7),
        nn.Flatten(),
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 1000),
    )


def _channel_pruning_build(
    model: nn.Module, example: torch.Tensor, data: list, samples: int | None, resume: bool
) -> dict:
    """Channel pruning with reconstruction at 0.5 of every eligible layer, timed by phase;
    ``resume=False`` runs each layer's refit from the model's input (the old way)."""
    import greedy_compress.schemes.channel_pruning as channel_pruning

    settings = {} if samples is None else {"num_reconstruction_samples": samples}
    scheme = ChannelPruning(data=data, **settings)
    runnable = channel_pruning.can_run_to
    if not resume:
        channel_pruning.can_run_to = lambda *_: False  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        profile = profile_model(model, example)
        profile = scheme.prepare(model, example_input=example, profile=profile) or profile
        prepared = time.perf_counter()
        planned = [
            n for n, i in profile.layers.items() if scheme.unsupported_reason(i, "mac") is None
        ]
        selection = manual_selection(
            model, {n: 0.5 for n in planned}, scheme=scheme, example_input=example, ratio_of="rank"
        )
        selected = time.perf_counter()
        small = apply_selection(model, selection, scheme=scheme, example_input=example)
        done = time.perf_counter()
    finally:
        channel_pruning.can_run_to = runnable
    return {
        "layers": len(planned),
        "refused": len(profile.layers) - len(planned),
        "samples": scheme.num_reconstruction_samples,
        "total": done - start,
        "prepare": prepared - start,
        "select": selected - prepared,
        "apply": done - selected,
        "macs": count_macs(small, example) / count_macs(model, example),
        "predicted": selection.predicted_ratio,
    }


def channel_pruning_at_scale(
    name: str, size: int, samples: int | None, baseline: bool = False
) -> None:
    """Time channel pruning with reconstruction of ``resnet50()`` or ``vgg11_bn()`` at
    ``size`` (224 by default) with ``samples`` samples (the scheme's default, 128, when
    None); with ``baseline`` also with every layer's run from the input, interleaved."""
    torch.manual_seed(0)
    model = (resnet50() if name == "ResNet-50" else vgg11_bn()).eval()
    example = torch.zeros(1, 3, size, size)
    count = samples or ChannelPruning().num_reconstruction_samples
    data = [(torch.randn(8, 3, size, size), None) for _ in range(max(1, count // 8))]
    runs = [True, False] if baseline else [True]
    results = {
        resume: _channel_pruning_build(model, example, data, samples, resume) for resume in runs
    }
    with open("/proc/loadavg") as file:
        load = " ".join(file.read().split()[:3])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    row = results[True]
    print(
        f"\n{name} at {size}x{size}, channel pruning 0.5 on {row['layers']} layers "
        f"({row['refused']} refused), {row['samples']} samples: total {row['total']:.1f}s "
        f"(prepare {row['prepare']:.1f}s, select {row['select']:.1f}s, apply "
        f"{row['apply']:.1f}s); measured MACs {row['macs']:.3f} (predicted "
        f"{row['predicted']:.3f}); peak RSS so far {peak:.1f} GiB; load average {load}"
    )
    if abs(row["macs"] - row["predicted"]) > 1e-9:
        print("PRICE MISMATCH")
    if baseline:
        old = results[False]
        print(
            f"  every layer run from the input: apply {old['apply']:.1f}s; resumed / from the "
            f"input {row['apply'] / old['apply']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--samples", type=int, default=None, help="default: the scheme's")
    parser.add_argument("--baseline", action="store_true", help="also run without resuming")
    parser.add_argument("--skip-resnet", action="store_true", help="skip the timings at scale")
    parser.add_argument("--skip-coverage", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    torch.set_num_threads(1)
    if not args.skip_coverage:
        coverage()
    torch.set_num_threads(2)
    if not args.skip_resnet:
        for name in ("ResNet-50", "VGG-11-BN"):
            channel_pruning_at_scale(name, args.size, args.samples, args.baseline)


if __name__ == "__main__":
    main()
