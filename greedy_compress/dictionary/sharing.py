"""Several processes building into one dictionary file share the work instead of repeating it.

Each process takes the file's lock (``<scores>.lock``, :mod:`filelock`), reads what the file
already holds and which layers other live processes have claimed (``<scores>.claims.json``),
claims layers nobody is scoring, and releases the lock while it scores them; afterwards it
takes the lock again, merges its scores with the file's and saves. A claim of a process that
died (same host, pid gone) or that is older than :data:`STALE_SECONDS` is taken over. When
every layer left is claimed by others, a process waits for them and then returns the same,
complete dictionary.

The scores path is checked before any work: a directory, a non-path or a location that
cannot be written (when something is left to write) fail with one clear error.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from greedy_compress._util.constraints import bad_parameter
from greedy_compress._util.io import atomic_write_json, read_json
from greedy_compress.errors import GreedyCompressError

__all__ = ["STALE_SECONDS", "WorkShare", "check_scores_path", "check_writable"]

STALE_SECONDS = 3600.0  # a claim older than this is taken over (a process on another host)
_POLL_SECONDS = 0.5


def check_scores_path(path: Any, owner: str) -> Path | None:
    """``path`` as a Path (None stays None) if it can name a dictionary file.

    Raises:
        InvalidParameterError: not a str / PathLike, or an existing directory.
    """
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise bad_parameter("scores_path", owner, "None or a file path (str or PathLike)", path)
    resolved = Path(path)
    if resolved.is_dir():
        raise bad_parameter("scores_path", owner, "a file path, not a directory", os.fspath(path))
    return resolved


def check_writable(path: Path) -> None:
    """Fail now, before any evaluation, when ``path`` (through symlinks) cannot be written.

    Raises:
        GreedyCompressError: the folder cannot be created or written into.
    """
    target = Path(os.path.realpath(path))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=True):
            pass
    except OSError as error:
        raise GreedyCompressError(
            f"Cannot write the dictionary to {os.fspath(path)!r} ({error.strerror}); nothing "
            "was evaluated. Choose a writable scores_path."
        ) from None


def _alive(claim: dict[str, Any]) -> bool:
    if time.time() - float(claim.get("time", 0)) > STALE_SECONDS:
        return False
    if claim.get("host") != socket.gethostname():
        return True  # cannot tell; trust it until it is stale
    try:
        os.kill(int(claim["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, KeyError):
        return True
    return True


class WorkShare:
    """The lock and the claims of one scores file (see the module notes)."""

    def __init__(self, path: Path) -> None:
        real = Path(os.path.realpath(path))
        self.lock = FileLock(str(real.with_name(real.name + ".lock")))
        self.claims_path = real.with_name(real.name + ".claims.json")
        self.me = {"pid": os.getpid(), "host": socket.gethostname()}

    def _claims(self) -> dict[str, dict[str, Any]]:
        try:
            data = read_json(self.claims_path)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, claims: dict[str, dict[str, Any]]) -> None:
        if claims:
            atomic_write_json(self.claims_path, claims)
        else:
            self.claims_path.unlink(missing_ok=True)

    def _mine(self, claim: dict[str, Any]) -> bool:
        return claim.get("pid") == self.me["pid"] and claim.get("host") == self.me["host"]

    def claim(
        self,
        wanted: Sequence[tuple[str, list[int]]],
        *,
        refresh: Callable[[], Iterable[str]],
    ) -> tuple[list[tuple[str, list[int]]], set[str]]:
        """Under the lock: ``refresh()`` merges the file's scores and returns the layers
        already complete; then claim those of ``wanted`` no live process claims.

        Returns the claimed layers and the layers other processes are scoring now.
        """
        with self.lock:
            done = set(refresh())
            claims = self._claims()
            busy = {
                name for name, claim in claims.items() if not self._mine(claim) and _alive(claim)
            }
            taken = [(n, r) for n, r in wanted if n not in busy and n not in done]
            now = time.time()
            for name, _ in taken:
                claims[name] = {**self.me, "time": now}
            claims = {n: c for n, c in claims.items() if n not in done}
            self._write(claims)
        return taken, busy - done

    def finish(self, names: Iterable[str], *, save: Callable[[], None]) -> None:
        """Under the lock: ``save()`` (merge with the file and write it), then drop the
        claims on ``names``."""
        with self.lock:
            save()
            claims = self._claims()
            for name in names:
                if name in claims and self._mine(claims[name]):
                    del claims[name]
            self._write(claims)

    def release_all(self) -> None:
        """Drop every claim of this process (after an interruption)."""
        try:
            with self.lock.acquire(timeout=5):
                claims = {n: c for n, c in self._claims().items() if not self._mine(c)}
                self._write(claims)
        except Exception:
            pass

    @staticmethod
    def wait() -> None:
        """Pause before looking again at layers other processes are scoring."""
        time.sleep(_POLL_SECONDS)
