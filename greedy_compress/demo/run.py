"""The embedded default job: a small CNN trained on bundled digit images, then compressed."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from typing_extensions import Unpack

from greedy_compress._util.constraints import bad_parameter, check_open_unit
from greedy_compress._util.io import atomic_write_bytes
from greedy_compress.api import compress
from greedy_compress.demo.data import DigitsData, load_digits_data
from greedy_compress.demo.models import DigitsCNN
from greedy_compress.demo.training import train_classifier
from greedy_compress.dictionary import BuildOptions, BuildSettings, EvalScores
from greedy_compress.report import CompressionReport
from greedy_compress.schemes import get_scheme, scheme_with_data
from greedy_compress.selection import MaxDrop, check_max_drop, get_solver

__all__ = ["cache_dir", "run_demo", "save_weights", "trained_digits_cnn"]

# Bump when the model, data split or training recipe changes, so stale caches are ignored.
_DEMO_RECIPE = "digits_cnn-w32-e15-seed0-v1"


def cache_dir() -> Path:
    """Where demo weights are cached: ``$GREEDY_COMPRESS_CACHE``, else ~/.cache/greedy-compress."""
    configured = os.environ.get("GREEDY_COMPRESS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "greedy-compress"


def save_weights(model: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Save a state dict atomically (loadable with ``torch.load(..., weights_only=True)``)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def trained_digits_cnn(*, progress: bool = True) -> tuple[DigitsCNN, DigitsData]:
    """The demo model trained on the digits (seeded), from the cache after the first run."""
    data = load_digits_data()
    model = DigitsCNN()
    weights = cache_dir() / f"{_DEMO_RECIPE}.pt"
    if weights.exists():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
    else:
        torch.manual_seed(0)
        model = DigitsCNN()
        train_classifier(model, data.train_loader(), epochs=15, progress=progress)
        save_weights(model, weights)
    return model, data


def run_demo(
    *,
    target: float = 0.5,
    scheme: str = "spatial_svd",
    solver: str = "greedy",
    max_drop: float | MaxDrop | None = None,
    monotone: bool = False,
    out: str | os.PathLike[str] = "greedy-compress-out",
    plots: bool = True,
    settings: BuildSettings | None = None,
    **options: Unpack[BuildOptions],
) -> CompressionReport:
    """Train (or load) the digits CNN, compress it, and write the artifacts to ``out``.

    Writes ``scores-<scheme>-<cost>.json`` (the eval-score dictionary, reused by later runs
    with the same settings), ``selection.json``, ``report.json`` and ``compressed.pt`` (the
    compressed model's state dict; rebuild with :func:`greedy_compress.load_compressed`)
    and, with ``plots``, ``sensitivity.png``, ``selection.png``, ``tradeoff.png`` (this
    run's measured ratio and score marked) and ``comparison.png`` (see
    :func:`greedy_compress.report.plots.save_plots`). The other arguments are those of
    :func:`greedy_compress.compress`; the demo makes its own example input.
    """
    from evaluators import TopKAccuracy

    owner = "run_demo"
    # Fail on bad options before spending time on training.
    config = BuildSettings.resolve(settings, dict(options), owner)
    if config.example_input is not None or config.input_shape is not None:
        raise bad_parameter(
            "example_input", owner, "left out (the demo feeds its own digit images)", "given"
        )
    check_open_unit(target, "target", owner)
    get_scheme(scheme, owner)
    get_solver(solver, owner)
    check_max_drop(max_drop, owner)

    model, data = trained_digits_cnn(progress=config.progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scores_path = out / f"scores-{scheme}-{config.cost}.json"
    compressed, report = compress(
        model,
        TopKAccuracy(data.val_loader()),
        target=target,
        scheme=scheme_with_data(scheme, data.train_loader(), owner),
        solver=solver,
        scores_path=scores_path,
        max_drop=max_drop,
        monotone=monotone,
        settings=config.replace(owner=owner, example_input=data.val_images[:1]),
    )
    report.save(out / "report.json")
    assert report.selection is not None  # compress() always records it
    report.selection.save(out / "selection.json")
    save_weights(compressed, out / "compressed.pt")
    if plots:
        from greedy_compress.report.analysis import MeasuredPoint
        from greedy_compress.report.plots import save_plots

        measured = MeasuredPoint(report.achieved_ratio, report.final_score, "this run")
        save_plots(
            EvalScores.load(scores_path), out, selection=report.selection, measured=[measured]
        )
    return report
