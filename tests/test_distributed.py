"""Sharded dictionary builds: 2 ranks under a real torchrun (gloo, CPU), merge and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _fast_models import make_data, make_model
from _shard_worker import OPTIONS, CountingLoss

from greedy_compress.dictionary.build import build_eval_scores
from greedy_compress.dictionary.sharding import Known, Shard, part_path, read_parts, write_part
from greedy_compress.errors import GreedyCompressError, ScoresMismatchError

ROOT = Path(__file__).resolve().parent.parent


def torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run tests/_shard_worker.py on 2 CPU processes; return the finished process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(ROOT / "tests" / "_shard_worker.py"),
        str(out),
        *extra,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers run
    yield
    torch.set_num_threads(threads)


def reference():
    """The dictionary built by one process, as the workers build theirs."""
    return build_eval_scores(
        make_model("resnet"), CountingLoss(make_data()), progress=False, **OPTIONS
    )


def assert_same(built: dict, expected: dict) -> None:
    """Equal dictionaries (scores to 1e-6: the processes may pick other kernels)."""
    for name, layer in expected["layers"].items():
        for a, b in zip(layer["entries"], built["layers"][name]["entries"], strict=True):
            assert b["score"] == pytest.approx(a["score"], abs=1e-6)
            a["score"] = b["score"]
    assert built["baseline"] == pytest.approx(expected["baseline"], abs=1e-6)
    expected["baseline"] = built["baseline"]
    assert built == expected


def items(scores: dict) -> int:
    return sum(len({e["rank"] for e in layer["entries"]}) for layer in scores["layers"].values())


def test_two_ranks_build_the_single_process_dictionary(tmp_path):
    run = torchrun(tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = reference().to_dict()
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert_same(saved, json.loads(json.dumps(expected)))
    results = [json.loads((tmp_path / f"result-{r}.json").read_text()) for r in (0, 1)]
    for result in results:  # every rank returns the whole dictionary
        assert_same(result["scores"], json.loads(json.dumps(expected)))
    # the work was split: each rank scored about half the candidates (+ its own baseline)
    shares = [result["computed"] - 1 for result in results]
    assert sum(shares) == items(expected) and abs(shares[0] - shares[1]) <= 1
    assert not (tmp_path / "scores.json.parts").exists()  # merged, parts cleaned up


def test_a_dead_rank_leaves_its_work_and_a_rerun_does_only_the_rest(tmp_path):
    run = torchrun(tmp_path, "--die-rank", "1", "--die-after", "5")
    assert run.returncode != 0
    scores_path = tmp_path / "scores.json"
    parts = read_parts(
        scores_path, json.loads(part_path(scores_path, 1).read_text())["fingerprint"]
    )
    assert len(parts[1].scores) >= 1  # rank 1 finished a layer before it died
    done = Known()
    for part in parts.values():
        done.update(part)
    expected = reference().to_dict()
    assert len(done.scores) < items(expected)

    CountingLoss.computed = 0
    resumed = build_eval_scores(
        make_model("resnet"),
        CountingLoss(make_data()),
        scores_path=scores_path,
        progress=False,
        **OPTIONS,
    )
    missing = items(expected) - len(done.scores)
    assert CountingLoss.computed == 1 + missing  # the baseline check; what no rank finished
    assert_same(resumed.to_dict(), expected)
    leftover = list((tmp_path / "scores.json.parts").glob("*"))
    assert not (tmp_path / "scores.json.parts").exists(), leftover


def test_parts_for_another_model_are_refused(tmp_path):
    scores_path = tmp_path / "scores.json"
    write_part(scores_path, 0, {"weights": "0123"}, Known(baseline=1.0, scores={("a", 1): 0.5}))
    with pytest.raises(ScoresMismatchError, match=r"part-0\.json.*weights"):
        build_eval_scores(
            make_model("resnet"),
            CountingLoss(make_data()),
            scores_path=scores_path,
            progress=False,
            **OPTIONS,
        )
    assert part_path(scores_path, 0).exists()  # nothing is deleted


def test_parts_of_any_rank_count_resume_in_one_process(tmp_path):
    """Parts written by a 3-rank run that stopped are completed by a single process."""
    full = reference()
    fingerprint = full.fingerprint
    distinct = {(n, e.rank): e.score for n, s in full.layers.items() for e in s.entries}
    entries = list(distinct.items())
    scores_path = tmp_path / "scores.json"
    for rank in range(3):
        mine = dict(entries[rank::3][:2])
        write_part(
            scores_path, rank, fingerprint, Known(full.baseline if rank == 0 else None, mine)
        )
    CountingLoss.computed = 0
    resumed = build_eval_scores(
        make_model("resnet"),
        CountingLoss(make_data()),
        scores_path=scores_path,
        progress=False,
        **OPTIONS,
    )
    assert CountingLoss.computed == 1 + items(full.to_dict()) - 6  # the baseline check, the rest
    assert resumed.to_dict() == full.to_dict()


def test_round_robin_shares():
    work = [("a", 1), ("a", 2), ("b", 1), ("b", 3), ("c", 2)]
    assert Shard(0, 2).take(work) == [("a", 1), ("b", 1), ("c", 2)]
    assert Shard(1, 2).take(work) == [("a", 2), ("b", 3)]
    assert Shard().take(work) == work


def test_distributed_true_needs_a_process_group():
    with pytest.raises(GreedyCompressError, match="init_process_group"):
        build_eval_scores(
            make_model("resnet"), CountingLoss(make_data()), distributed=True, **OPTIONS
        )
