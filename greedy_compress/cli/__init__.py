"""The ``greedy-compress`` command: ``demo``, ``compress``, ``scores show|accept`` and ``plot``.

Thin by design: each subcommand parses its options and calls the Python API. Errors the
user can fix (bad options, files, their own module) are printed as one line
(``greedy-compress: error: ...``), exit status 2.

torch's OpenMP threads spin while they wait (``OMP_WAIT_POLICY=ACTIVE`` by default), which
makes a build 10-100x slower when anything else uses the other cores; the command sets
``OMP_WAIT_POLICY=PASSIVE`` (unless set) before torch is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything imports torch

import sys
from collections.abc import Sequence

from greedy_compress.cli.commands import HANDLERS
from greedy_compress.cli.parser import build_parser
from greedy_compress.errors import GreedyCompressError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``greedy-compress`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
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
