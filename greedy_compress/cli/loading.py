"""Loading what the user names on the command line (``module:function``), with their
errors as one line."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greedy_compress.errors import GreedyCompressError

__all__ = ["CommandError", "call_factory", "load_object", "one_line"]


class CommandError(GreedyCompressError):
    """Raised for a bad command-line value (file, import path) found after parsing."""


def load_object(spec: str, option: str) -> Callable[..., Any]:
    """Resolve ``module:attr`` or ``path/to/file.py:attr`` to a callable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CommandError(
            f"{option} must look like module:function or file.py:function; got {spec!r}"
        )
    if module_name.endswith(".py") and not Path(module_name).is_file():
        raise CommandError(f"{option}: file {module_name!r} does not exist")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or module_spec.loader is None:
                raise CommandError(f"{option}: {module_name!r} is not a Python file")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")  # let users name modules in the current directory
            module = importlib.import_module(module_name)
    except CommandError:
        raise
    except SyntaxError as error:
        raise CommandError(
            f"{option}: {module_name!r} has a syntax error at line {error.lineno}: {error.msg}"
        ) from None
    except Exception as error:  # the user's module failed while importing
        raise CommandError(f"{option}: cannot import {module_name!r}: {one_line(error)}") from None
    target = getattr(module, attr, None)
    if not callable(target):
        raise CommandError(f"{option}: {module_name!r} has no callable named {attr!r}")
    return target


def one_line(error: BaseException) -> str:
    text = str(error).splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def call_factory(spec: str, option: str) -> Any:
    """Load ``module:function`` and call it; the user's errors as one line."""
    factory = load_object(spec, option)
    try:
        return factory()
    except Exception as error:
        raise CommandError(f"{option}: {spec}() failed: {one_line(error)}") from None
