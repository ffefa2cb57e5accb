"""The ``greedy-compress`` command: ``demo``, ``compress``, ``scores show`` and ``plot``.

Thin by design: each subcommand parses its options and calls the Python API. Errors the
user can fix are printed as one line (``greedy-compress: error: ...``), exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from greedy_compress.dictionary.candidates import DEFAULT_NUM_CANDIDATES
from greedy_compress.errors import GreedyCompressError
from greedy_compress.model.cost import COST_METRICS
from greedy_compress.schemes import available_schemes, scheme_with_data
from greedy_compress.selection import available_solvers

__all__ = ["main"]


class CommandError(GreedyCompressError):
    """Raised for a bad command-line value (file, import path) found after parsing."""


def _candidates(text: str) -> int | list[float]:
    try:
        if "," not in text and "." not in text:
            return int(text)
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count (e.g. 10) or comma-separated ratios (e.g. 0.25,0.5); got {text!r}"
        ) from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.3,0.5,0.7; got {text!r}"
        )
    return values


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints like 1,3,32,32; got {text!r}"
        ) from None


def _load_object(spec: str, option: str) -> Callable[..., Any]:
    """Resolve ``module:attr`` or ``path/to/file.py:attr`` to a callable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CommandError(
            f"{option} must look like module:function or file.py:function; got {spec!r}"
        )
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise CommandError(f"{option}: file {module_name!r} does not exist")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")  # let users name modules in the current directory
            module = importlib.import_module(module_name)
    except ImportError as error:
        raise CommandError(f"{option}: cannot import {module_name!r} ({error})") from None
    target = getattr(module, attr, None)
    if not callable(target):
        raise CommandError(f"{option}: {module_name!r} has no callable named {attr!r}")
    return target


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        type=_float,
        default=0.5,
        help="fraction of cost to keep, in (0, 1) (default 0.5)",
    )
    parser.add_argument(
        "--scheme",
        default="spatial_svd",
        help=f"one of {', '.join(available_schemes())} (default spatial_svd)",
    )
    parser.add_argument(
        "--cost", default="mac", help=f"cost metric: {' or '.join(COST_METRICS)} (default mac)"
    )
    parser.add_argument(
        "--solver",
        default="greedy",
        help=f"one of {', '.join(available_solvers())} (default greedy)",
    )
    parser.add_argument(
        "--candidates",
        type=_candidates,
        default=None,
        help=f"count of evenly spaced ratios, or a comma-separated list "
        f"(default {DEFAULT_NUM_CANDIDATES})",
    )
    parser.add_argument(
        "--out", default="greedy-compress-out", help="output folder (default ./greedy-compress-out)"
    )
    drop = parser.add_mutually_exclusive_group()
    drop.add_argument(
        "--max-drop",
        type=float,
        default=None,
        help="repair the selection until the score falls at most this much (absolute)",
    )
    drop.add_argument(
        "--max-drop-relative",
        type=float,
        default=None,
        help="like --max-drop, as a fraction of the baseline score (0.02 = 2%%)",
    )
    parser.add_argument(
        "--monotone", action="store_true", help="solve on monotone fits of the score curves"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--latency-batch-size", type=int, help="batch size to time latency at")


def _common(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments ``compress`` and ``run_demo`` share, from the command line: target,
    scheme, solver, max_drop, monotone and the :class:`BuildSettings`."""
    from greedy_compress.dictionary import BuildSettings
    from greedy_compress.selection import MaxDrop

    max_drop: float | MaxDrop | None = args.max_drop
    if args.max_drop_relative is not None:
        max_drop = MaxDrop(args.max_drop_relative, relative=True)
    settings = BuildSettings().replace(
        owner="greedy-compress",
        cost=args.cost,
        candidates=args.candidates,
        progress=not args.no_progress,
        latency_batch_size=args.latency_batch_size,
    )
    return {
        "target": args.target,
        "solver": args.solver,
        "max_drop": max_drop,
        "monotone": args.monotone,
        "settings": settings,
    }


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greedy-compress",
        description="Automatic per-layer compression of PyTorch models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="train a small CNN on bundled digit images and compress it"
    )
    _add_common(demo)

    run = commands.add_parser("compress", help="compress your own model")
    run.add_argument("--model", required=True, help="module:factory returning the nn.Module")
    run.add_argument(
        "--weights", help="state dict file (loaded with torch.load(weights_only=True))"
    )
    run.add_argument(
        "--data",
        required=True,
        help="module:factory returning the evaluation DataLoader of (inputs, targets)",
    )
    run.add_argument(
        "--scores", help="eval-score dictionary JSON to reuse/resume (default OUT/scores.json)"
    )
    run.add_argument(
        "--input-shape",
        type=_shape,
        help="example input shape incl. batch (default: from the first batch)",
    )
    run.add_argument("--ignore", nargs="*", default=[], help="module names to leave alone")
    run.add_argument(
        "--multiplicity", default="1", help="round ranks down to a multiple of this, or auto"
    )
    run.add_argument(
        "--measure-latency", action="store_true", help="also time the model for a mac target"
    )
    run.add_argument(
        "--max-batches", type=int, default=None, help="evaluate on this many batches only"
    )
    _add_common(run)

    scores = commands.add_parser("scores", help="inspect a saved eval-score dictionary")
    scores_commands = scores.add_subparsers(dest="scores_command", required=True, metavar="ACTION")
    show = scores_commands.add_parser("show", help="print a dictionary")
    show.add_argument("file", help="the JSON file")

    plot = commands.add_parser(
        "plot", help="plot a saved dictionary: sensitivity, selection, trade-off, solvers"
    )
    plot.add_argument("file", help="the eval-score dictionary (JSON)")
    plot.add_argument(
        "--out",
        default="greedy-compress-plots",
        help="output folder (default ./greedy-compress-plots)",
    )
    plot.add_argument("--svg", action="store_true", help="also write SVG files")
    plot.add_argument(
        "--target",
        type=_float,
        default=0.5,
        help="target of the selection and solver comparison plots (default 0.5)",
    )
    plot.add_argument(
        "--selection", help="plot this saved selection.json instead of solving for --target"
    )
    plot.add_argument(
        "--targets",
        type=_floats,
        default=None,
        help="comma-separated targets for the trade-off curve (default: 25 up to 0.95)",
    )
    plot.add_argument(
        "--report",
        action="append",
        default=[],
        help="a report.json whose measured ratio and score are marked on the trade-off "
        "curve (repeatable)",
    )
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from greedy_compress.demo.run import run_demo

    report = run_demo(scheme=args.scheme, out=args.out, **_common(args))
    print(report.to_table())
    print(
        f"wrote {args.out}/: eval-score dictionary, selection.json, report.json, compressed.pt, "
        "sensitivity/selection/tradeoff/comparison.png"
    )
    return 0


def _run_compress(args: argparse.Namespace) -> int:
    import torch

    from evaluators import TopKAccuracy
    from greedy_compress.api import compress
    from greedy_compress.demo.run import save_weights

    model = _load_object(args.model, "--model")()
    if args.weights:
        if not Path(args.weights).is_file():
            raise CommandError(f"--weights: file {args.weights!r} does not exist")
        try:
            state = torch.load(args.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as error:  # any failure to load is about the user's file
            raise CommandError(f"--weights: cannot load {args.weights!r}: {error}") from None
    loader = _load_object(args.data, "--data")()
    if args.input_shape is None:
        try:
            first_inputs = next(iter(loader))[0]
        except (StopIteration, TypeError, IndexError, KeyError):
            raise CommandError("--data: the loader yields no (inputs, targets) batch") from None
        example = {"example_input": first_inputs[:1]}
    else:
        example = {"input_shape": args.input_shape}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = _common(args)
    settings = common.pop("settings").replace(
        owner="greedy-compress compress",
        ignore=args.ignore,
        multiplicity=int(m) if (m := args.multiplicity).isdigit() else m,
        **example,
    )
    compressed, report = compress(
        model,
        TopKAccuracy(loader, max_batches=args.max_batches),
        scheme=scheme_with_data(args.scheme, loader, "compress"),  # pruning samples --data
        scores_path=args.scores or out / "scores.json",
        settings=settings,
        measure_latency=args.measure_latency,
        **common,
    )
    report.save(out / "report.json")
    assert report.selection is not None  # compress() always records it
    report.selection.save(out / "selection.json")
    save_weights(compressed, out / "compressed.pt")
    print(report.to_table())
    print(f"wrote {out}/: scores.json, selection.json, report.json, compressed.pt")
    return 0


def _run_scores(args: argparse.Namespace) -> int:
    from greedy_compress.dictionary import EvalScores

    if not Path(args.file).is_file():
        raise CommandError(f"file {args.file!r} does not exist")
    print(EvalScores.load(args.file).to_table())
    return 0


def _read_json_file(path: str, what: str) -> Any:
    """The JSON in ``path``, or a one-line error naming the file and what it should be."""
    from greedy_compress._util.io import read_json

    if not Path(path).is_file():
        problem = "is not a file" if Path(path).exists() else "does not exist"
        raise CommandError(f"{what} file {path!r} {problem}")
    try:
        return read_json(path)
    except (OSError, ValueError) as error:  # unreadable, not UTF-8, not JSON
        raise CommandError(f"{what} file {path!r} is not readable JSON: {error}") from None


def _measured_point(path: str) -> Any:
    from greedy_compress.report.analysis import MeasuredPoint

    data = _read_json_file(path, "--report")
    try:
        label = f"{data['solver']} @ {float(data['target']):g}"
        return MeasuredPoint(float(data["achieved_ratio"]), float(data["final_score"]), label)
    except (KeyError, TypeError, ValueError):
        raise CommandError(
            f"--report file {path!r} is not a greedy-compress report (report.json)"
        ) from None


def _run_plot(args: argparse.Namespace) -> int:
    from greedy_compress.dictionary import EvalScores
    from greedy_compress.report.plots import save_plots
    from greedy_compress.selection import Selection, reachable_ratio

    scores = EvalScores.from_dict(_read_json_file(args.file, "dictionary"), source=args.file)
    selection = None
    if args.selection:
        data = _read_json_file(args.selection, "--selection")
        selection = Selection.from_dict(data, source=args.selection)
    measured = [_measured_point(path) for path in args.report]
    try:
        written = save_plots(
            scores,
            args.out,
            target=args.target,
            selection=selection,
            targets=args.targets,
            measured=measured,
            formats=("png", "svg") if args.svg else ("png",),
        )
    except OSError as error:
        raise CommandError(f"cannot write the plots to {args.out!r}: {error}") from None
    if not scores.is_complete:
        print(
            f"the dictionary is incomplete (missing {', '.join(scores.missing)}): only the "
            "sensitivity plot is possible; finish the dictionary for the others"
        )
    elif args.targets:
        low = reachable_ratio(scores)
        left_out = [f"{t:g}" for t in args.targets if t < low]
        if left_out:
            print(
                f"targets {', '.join(left_out)} are below the smallest reachable ratio "
                f"{low:.4f}: left out of the trade-off curve"
            )
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``greedy-compress`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    handlers = {
        "demo": _run_demo,
        "compress": _run_compress,
        "scores": _run_scores,
        "plot": _run_plot,
    }
    try:
        return handlers[args.command](args)
    except GreedyCompressError as error:
        print(f"greedy-compress: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "greedy-compress: interrupted; finished layers are saved in the scores file",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
