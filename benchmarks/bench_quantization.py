"""Quantization benchmark: accuracy at memory targets, before and after a short QAT, ONNX
file sizes, and onnxruntime latency of float vs int8.

On a DigitsCNN trained on corrupted digits (noise and random affine transforms, generated in
``common.corrupt_digits``, so that compression hurts), at memory targets 0.25 and 0.15 of the
float32 bytes:

* uniform 8-bit and uniform 4-bit weights (every layer, the nearest a uniform choice gets);
* mixed bits: the knapsack on the ``quantize`` dictionary (weights at 8/6/4/3/2 bits);
* mixed (scheme, rank, bits): the knapsack on a mixed dictionary of ``quantize``,
  ``weight_svd+w8``, ``weight_svd+w4`` and ``spatial_svd+w4``;
* and at 0.05, which bits alone cannot reach, the mixed dictionary only.

Each variant's top-1 accuracy is measured as built, then after one epoch of training with
its fake-quantized weights (straight-through gradients: a short QAT), and its ONNX file
(integer weight initializers) is written and checked in onnxruntime. Last, onnxruntime
latency of the float model vs a W8A8 QAT export (QDQ on every layer's input and output),
interleaved, medians of 7 runs on batches of 256.

Run: python benchmarks/bench_quantization.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from common import trained_corrupted_cnn

import greedy_compress as gc
from evaluators import TopKAccuracy
from greedy_compress.export import export_model
from greedy_compress.model.cost import measure_cost
from greedy_compress.quantization import QATQuantizer

TARGETS = (0.25, 0.15, 0.05)  # 0.05: below 2-bit weights everywhere (rank x bits only)
MIXED = ("quantize", "weight_svd+w8", "weight_svd+w4", "spatial_svd+w4")
SHAPE = (1, 1, 8, 8)


def finetune(model: nn.Module, loader, *, epochs: int = 1) -> nn.Module:
    """A short QAT: the fake-quantized model trained as it is (straight-through)."""
    tuned = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=1e-4)
    for _ in range(epochs):
        for inputs, targets in loader:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(tuned(inputs), targets).backward()
            optimizer.step()
    return tuned.eval()


def uniform(model: nn.Module, bits: int) -> gc.Selection:
    layers = gc.available_layers(model, scheme="quantize", input_shape=SHAPE, cost="memory")
    return gc.manual_selection(
        model,
        {name: bits / 32 for name in layers.layers},
        scheme="quantize",
        input_shape=SHAPE,
        cost="memory",
        ratio_of="rank",
    )


def ort_latency(paths: dict[str, Path], batch: torch.Tensor, repeats: int = 7) -> dict[str, float]:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {
        k: onnxruntime.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for k, p in paths.items()
    }
    feed = {"input": batch.numpy()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for session in sessions.values():
        session.run(None, feed)  # warm up
    for _ in range(repeats):  # interleaved
        for key, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    model, data = trained_corrupted_cnn()
    evaluator = TopKAccuracy(data.val_loader())
    example = torch.zeros(SHAPE)
    out = Path(tempfile.mkdtemp(prefix="bench-quant-"))
    float_bits = measure_cost(model, example).bits
    float_size = export_model(model, onnx_path=out / "float.onnx", input_shape=SHAPE).sizes["onnx"]
    print(
        f"float32: top-1 {evaluator(model):.4f}, {float_bits / 8:,.0f} bytes, ONNX {float_size:,} B"
    )

    start = time.perf_counter()
    dictionaries = {
        s: gc.build_eval_scores(
            model,
            evaluator,
            scheme=s,
            cost="memory",
            candidates=8,
            example_input=example,
            progress=False,
        )
        for s in MIXED
    }
    mixed = gc.combine_scores(list(dictionaries.values()))
    print(f"dictionaries: {time.perf_counter() - start:.1f} s")

    variants: dict[str, gc.Selection] = {
        "uniform 8-bit": uniform(model, 8),
        "uniform 4-bit": uniform(model, 4),
    }
    for target in TARGETS:
        for label, scores in (
            ("mixed bits", dictionaries["quantize"]),
            ("mixed scheme+rank+bits", mixed),
        ):
            try:
                variants[f"{label} @{target}"] = gc.select(scores, target=target, solver="knapsack")
            except gc.TargetUnreachableError:
                print(f"{label} @{target}: out of reach")
    header = f"{'kept bytes':>10} {'top-1':>7} {'after QAT':>9} {'ONNX B':>9} {'ONNX/float':>10}"
    print(f"\n{'variant':<32} {header}")
    for label, selection in variants.items():
        small = gc.apply_selection(model, selection, example_input=example)
        kept = measure_cost(small, example).bits / float_bits
        before = evaluator(small)
        after = evaluator(finetune(small, data.train_loader()))
        name = label.replace(" ", "_").replace("@", "").replace("+", "_")
        size = export_model(small, onnx_path=out / f"{name}.onnx", input_shape=SHAPE).sizes["onnx"]
        row = f"{kept:>10.4f} {before:>7.4f} {after:>9.4f} {size:>9,} {size / float_size:>10.3f}"
        print(f"{label:<32} {row}")
        if "scheme" in label:
            picks = {c.scheme for c in selection.choices.values()}
            print(f"{'':<32} schemes chosen: {', '.join(sorted(picks))}")

    qat_model = copy.deepcopy(model)
    quantizer = QATQuantizer(
        qat_model,
        [{"quant_types": ["weight", "input", "output"], "quant_bits": 8, "op_types": ["default"]}],
    )
    quantizer.compress()
    qat_model = finetune(qat_model, data.train_loader())
    int8 = export_model(qat_model, onnx_path=out / "w8a8.onnx", input_shape=SHAPE)
    print(
        f"\nW8A8 QAT (1 epoch): top-1 {evaluator(qat_model):.4f}, ONNX {int8.sizes['onnx']:,} B, "
        f"onnxruntime vs torch max difference {int8.max_difference:.2g}"
    )
    batch = torch.randn(256, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    latency = ort_latency({"float": out / "float.onnx", "w8a8": out / "w8a8.onnx"}, batch)
    print(
        f"onnxruntime latency, batch 256, 1 thread: float {latency['float'] * 1e3:.2f} ms, "
        f"W8A8 {latency['w8a8'] * 1e3:.2f} ms (ratio {latency['w8a8'] / latency['float']:.2f})"
    )
    print(f"load average: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
