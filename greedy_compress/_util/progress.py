"""Progress bars (tqdm), off when ``enabled`` is False."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(*, total: int, desc: str, enabled: bool, unit: str = "eval") -> Any:
    """A tqdm bar showing count, elapsed time and ETA; a silent one when not ``enabled``."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)
