"""Run under torchrun by tests/test_distributed.py: one rank of a sharded dictionary build.

Usage: python -m torch.distributed.run --standalone --nproc-per-node 2 tests/_shard_worker.py
    OUT [--die-rank R --die-after N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # _fast_models

import torch
from _fast_models import make_data, make_model
from torch import distributed as dist

from evaluators import NegativeLoss
from greedy_compress import build_eval_scores

OPTIONS = dict(scheme="weight_svd", candidates=[0.25, 0.5, 0.75], input_shape=(1, 1, 8, 8))


class CountingLoss(NegativeLoss):
    """NegativeLoss counting its results (the fast path's per-candidate copies included)."""

    computed = 0  # class-wide, so the copies count here too

    def compute(self) -> float:
        CountingLoss.computed += 1
        return super().compute()

    @property
    def name(self) -> str:
        return NegativeLoss.name.fget(self)


class Dying:
    """A plain evaluator that ends its process (as a crash would) on call ``die_after``."""

    def __init__(self, inner: NegativeLoss, die_after: int | None) -> None:
        self.inner, self.die_after, self.calls = inner, die_after, 0
        self.name = inner.name

    def __call__(self, model: torch.nn.Module) -> float:
        self.calls += 1
        if self.calls == self.die_after:
            os._exit(3)
        return self.inner(model)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--die-rank", type=int, default=None)
    parser.add_argument("--die-after", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    evaluator = CountingLoss(make_data())
    if args.die_rank is not None:
        evaluator = Dying(evaluator, args.die_after if rank == args.die_rank else None)
    out = Path(args.out)
    scores = build_eval_scores(
        make_model("resnet"), evaluator, scores_path=out / "scores.json", progress=False, **OPTIONS
    )
    (out / f"result-{rank}.json").write_text(
        json.dumps({"computed": CountingLoss.computed, "scores": scores.to_dict()})
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
