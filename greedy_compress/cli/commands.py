"""What each subcommand does: parse nothing, call the Python API, print, write files."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greedy_compress.cli.loading import CommandError, call_factory, one_line
from greedy_compress.cli.parser import common_arguments

__all__ = ["HANDLERS"]


def _output_folder(text: str) -> Path:
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {text!r} is an existing file; give a folder")
    return out


def run_demo_command(args: argparse.Namespace) -> int:
    from greedy_compress.demo.run import run_demo

    _output_folder(args.out)
    report = run_demo(scheme=args.scheme, out=args.out, **common_arguments(args))
    print(report.to_table())
    print(
        f"wrote {args.out}/: eval-score dictionary, selection.json, report.json, compressed.pt, "
        "sensitivity/selection/tradeoff/comparison.png"
    )
    return 0


def run_compress(args: argparse.Namespace) -> int:
    import torch

    from evaluators import TopKAccuracy
    from greedy_compress.api import compress
    from greedy_compress.demo.run import save_weights
    from greedy_compress.schemes import scheme_with_data

    out = _output_folder(args.out)
    model = call_factory(args.model, "--model")
    if not isinstance(model, torch.nn.Module):
        raise CommandError(f"--model: {args.model}() returned {type(model).__name__}, not a module")
    if args.weights:
        if not Path(args.weights).is_file():
            raise CommandError(f"--weights: file {args.weights!r} does not exist")
        try:
            state = torch.load(args.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as error:  # any failure to load is about the user's file
            raise CommandError(
                f"--weights: cannot load {args.weights!r}: {one_line(error)}"
            ) from None
    loader = call_factory(args.data, "--data")
    if args.input_shape is None:
        try:
            first_inputs = next(iter(loader))[0]
        except (StopIteration, TypeError, IndexError, KeyError):
            raise CommandError("--data: the loader yields no (inputs, targets) batch") from None
        example = {"example_input": first_inputs[:1]}
    else:
        example = {"input_shape": args.input_shape}
    out.mkdir(parents=True, exist_ok=True)
    common = common_arguments(args)
    settings = common.pop("settings").replace(
        owner="greedy-compress compress",
        ignore=args.ignore,
        config_list=None
        if args.config_list is None
        else _read_json_file(args.config_list, "--config-list"),
        multiplicity=args.multiplicity,
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


def run_scores(args: argparse.Namespace) -> int:
    from greedy_compress.dictionary import EvalScores

    if not Path(args.file).is_file():
        raise CommandError(f"file {args.file!r} does not exist")
    if args.scores_command == "accept":
        # The user vouches for the edits: the new checksum covers the content as it is.
        EvalScores.load(args.file, accept_edits=True).save(args.file)
        print(f"accepted {args.file}: its checksum now matches its (edited) content")
        return 0
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


def run_plot(args: argparse.Namespace) -> int:
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


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": run_demo_command,
    "compress": run_compress,
    "scores": run_scores,
    "plot": run_plot,
}
