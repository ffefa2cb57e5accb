"""The command line's options: one parser, subcommands, one-line usage errors."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

__all__ = ["build_parser", "common_arguments"]


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
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(size < 1 for size in shape):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive ints like 1,3,32,32; got {text!r}"
        )
    return shape


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1; got {text!r}")
    return value


def _multiplicity(text: str) -> int | str:
    return text if text == "auto" else _positive_int(text)


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    from greedy_compress.dictionary.candidates import DEFAULT_NUM_CANDIDATES
    from greedy_compress.model.cost import COST_METRICS
    from greedy_compress.schemes import available_schemes
    from greedy_compress.selection import available_solvers

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
    parser.add_argument(
        "--latency-batch-size", type=_positive_int, help="batch size to time latency at"
    )


def common_arguments(args: argparse.Namespace) -> dict[str, Any]:
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="greedy-compress",
        description="Automatic per-layer compression of PyTorch models.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

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
        "--config-list",
        help="JSON file holding an NNI-style config_list: the layers to compress and their "
        "ratio bounds (docs/config-list.md)",
    )
    run.add_argument(
        "--multiplicity",
        type=_multiplicity,
        default=1,
        help="round ranks down to a multiple of this, or auto (measured fast ranks)",
    )
    run.add_argument(
        "--measure-latency", action="store_true", help="also time the model for a mac target"
    )
    run.add_argument(
        "--max-batches", type=_positive_int, default=None, help="evaluate on this many batches only"
    )
    _add_common(run)

    scores = commands.add_parser("scores", help="inspect a saved eval-score dictionary")
    scores_commands = scores.add_subparsers(dest="scores_command", required=True, metavar="ACTION")
    show = scores_commands.add_parser("show", help="print a dictionary")
    show.add_argument("file", help="the JSON file")
    accept = scores_commands.add_parser(
        "accept",
        help="accept a dictionary edited by hand: write a new checksum for its content",
    )
    accept.add_argument("file", help="the JSON file")

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
