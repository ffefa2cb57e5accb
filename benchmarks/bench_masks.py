"""Mask pruners benchmark: Level vs AGP vs Lottery Ticket at 50 / 80 / 90% sparsity, and
structured FPGM + speedup.

On the demo DigitsCNN (trained 15 epochs, cached), every Conv2d and Linear pruned to the
same sparsity:

* Level: pruned once, then fine-tuned ``EPOCHS`` epochs;
* AGP: ``EPOCHS`` epochs of training from the trained model, sparsity from 0 to the target
  along the cubic schedule (``num_steps = EPOCHS // 2``, one update per epoch), so the last
  half of the epochs train at the target;
* Lottery Ticket: from the model's seeded initial weights (the trained model's own), round
  0 dense then 3 pruning rounds, each trained ``TICKET_EPOCHS`` epochs, rewound to the
  initial weights.

For each: top-1 on the validation digits, the wall time of its pruning and training, and
the size of its sparse export (``export_model(sparse_path=...)``: CSR, int16 columns)
against the dense float32 state dict.

Then FPGM at 50% of every conv's filters, with ``speedup`` to a smaller dense model, on the
DigitsCNN and the TinyResNet (residual adds tie channels): MACs ratio, CPU latency of the
sped-up model against the original (batch 256, one thread, interleaved, median of 15), top-1
of the masked and the sped-up model (equal: the speedup changes no output), and top-1 of the
sped-up model after ``EPOCHS`` epochs of fine-tuning.

Run: python benchmarks/bench_masks.py [--quick]   (--quick: one sparsity, fewer epochs)
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

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from common import trained_resnet

from evaluators import TopKAccuracy
from greedy_compress.demo.models import DigitsCNN
from greedy_compress.demo.run import trained_digits_cnn
from greedy_compress.export import export_model
from greedy_compress.masks import AGPPruner, FPGMPruner, LevelPruner, LotteryTicketPruner, speedup
from greedy_compress.model.cost import count_macs

QUICK = "--quick" in sys.argv
SPARSITIES = (0.8,) if QUICK else (0.5, 0.8, 0.9)
EPOCHS = 2 if QUICK else 4
AGP_STEPS = max(1, EPOCHS // 2)  # the target reached halfway, then trained at it
TICKET_EPOCHS = 2 if QUICK else 5
ALL = [{"sparsity": 0.0, "op_types": ["default"]}]


def train(model: nn.Module, loader, epochs: int, pruner=None, *, lr: float = 1e-3) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for epoch in range(epochs):
        if pruner is not None:
            pruner.update_epoch(epoch)
        model.train()
        for inputs, targets in loader:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
            if pruner is not None:
                pruner.step()
    if pruner is not None:
        pruner.update_epoch(epochs)
    model.eval()


def level(model: nn.Module, sparsity: float, loader) -> nn.Module:
    net = LevelPruner(copy.deepcopy(model), [{**ALL[0], "sparsity": sparsity}]).compress()
    train(net, loader, EPOCHS, lr=3e-4)
    return net


def agp(model: nn.Module, sparsity: float, loader) -> nn.Module:
    net = copy.deepcopy(model)
    pruner = AGPPruner(net, [{**ALL[0], "sparsity": sparsity}], num_steps=AGP_STEPS)
    pruner.compress()
    train(net, loader, EPOCHS, pruner, lr=3e-4)
    return net


def lottery(sparsity: float, loader) -> nn.Module:
    torch.manual_seed(0)  # the trained demo model's initial weights
    net = DigitsCNN()
    pruner = LotteryTicketPruner(net, [{**ALL[0], "sparsity": sparsity}], prune_iterations=3)
    pruner.compress()
    for _ in pruner.rounds():
        train(net, loader, TICKET_EPOCHS)
    return net


def latency(models: dict[str, nn.Module], batch: torch.Tensor, repeats: int = 15) -> dict:
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for model in models.values():
            model(batch)  # warm up
        for _ in range(repeats):  # interleaved
            for key, model in models.items():
                start = time.perf_counter()
                model(batch)
                times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    torch.set_num_threads(1)
    model, data = trained_digits_cnn(progress=False)
    evaluate = TopKAccuracy(data.val_loader())
    loader = data.train_loader()
    out = Path(tempfile.mkdtemp(prefix="bench-masks-"))
    dense = export_model(model, model_path=out / "dense.pt").sizes["model"]
    print(f"DigitsCNN: top-1 {evaluate(model):.4f}, dense state dict {dense:,} B")
    print(
        f"{'pruner':<16} {'sparsity':>8} {'top-1':>7} {'time s':>7} {'sparse B':>9} {'/dense':>7}"
    )
    for sparsity in SPARSITIES:
        for name, run in (
            ("level", lambda s=sparsity: level(model, s, loader)),
            ("agp", lambda s=sparsity: agp(model, s, loader)),
            ("lottery_ticket", lambda s=sparsity: lottery(s, loader)),
        ):
            start = time.perf_counter()
            net = run()
            spent = time.perf_counter() - start
            size = export_model(net, sparse_path=out / f"{name}-{sparsity}.pt").sizes["sparse"]
            print(
                f"{name:<16} {sparsity:>8.2f} {evaluate(net):>7.4f} {spent:>7.1f} "
                f"{size:>9,} {size / dense:>7.3f}"
            )

    batch = torch.randn(256, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    resnet, resnet_data = trained_resnet()
    cases = {
        "DigitsCNN": (model, data, batch),
        "TinyResNet": (
            resnet,
            resnet_data,
            torch.randn(256, 1, 16, 16, generator=torch.Generator().manual_seed(0)),
        ),
    }
    header = f"{'MACs':>6} {'latency':>8} {'masked':>7} {'sped up':>7} {'tuned':>7}"
    print(f"\n{'FPGM 50% + speedup':<20} {header}")
    for label, (net, net_data, inputs) in cases.items():
        pruner = FPGMPruner(copy.deepcopy(net), [{"sparsity": 0.5, "op_types": ["Conv2d"]}])
        masked = pruner.compress().eval()
        small = speedup(masked, inputs[:1]).eval()
        macs = count_macs(small, inputs[:1]) / count_macs(net, inputs[:1])
        times = latency({"original": net, "sped up": small}, inputs)
        score = TopKAccuracy(net_data.val_loader())
        before, sped = score(masked), score(small)
        train(small, net_data.train_loader(), EPOCHS, lr=3e-4)
        print(
            f"{label:<20} {macs:>6.3f} {times['sped up'] / times['original']:>8.3f} "
            f"{before:>7.4f} {sped:>7.4f} {score(small):>7.4f}   "
            f"(original {times['original'] * 1e3:.2f} ms, sped up {times['sped up'] * 1e3:.2f} ms)"
        )
    print(f"load average: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
