"""Atomic JSON files: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "NonFiniteJSONError",
    "atomic_write_bytes",
    "atomic_write_json",
    "content_hash",
    "read_json",
]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    A symbolic link is followed: its target is replaced, the link stays a link.
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; use normal permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Serialize ``data`` as indented, strict JSON (no NaN/Infinity) and write it atomically."""
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


class NonFiniteJSONError(ValueError):
    """Raised by :func:`read_json` for a NaN or Infinity literal (not JSON, though Python's
    json module writes and reads them by default)."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteJSONError(f"the literal {name} is not JSON (non-finite numbers are not allowed)")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a strict JSON file.

    Raises:
        OSError: the file cannot be read.
        json.JSONDecodeError: not JSON.
        NonFiniteJSONError: a NaN / Infinity literal.
        UnicodeDecodeError: not UTF-8 text.
    """
    with open(path, encoding="utf-8") as handle:
        return json.load(handle, parse_constant=_refuse_constant)


def content_hash(data: Any) -> str:
    """SHA-256 of ``data``'s canonical JSON (sorted keys, no whitespace): a checksum that
    does not depend on how the file was indented."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
