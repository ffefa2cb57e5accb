"""How far the compressed model's score may fall below the baseline (``max_drop``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from greedy_compress._util.constraints import Interval, bad_parameter

__all__ = ["MaxDrop", "check_max_drop"]


@dataclass(frozen=True)
class MaxDrop:
    """How far the compressed model's score may fall below the baseline score.

    ``MaxDrop(0.02)`` allows an absolute drop of 0.02 (e.g. two accuracy points);
    ``MaxDrop(0.02, relative=True)`` allows 2% of the baseline score. A plain float given
    as ``max_drop`` means an absolute drop.

    Example:
        >>> MaxDrop(0.1, relative=True).allowed(0.8)
        0.08000000000000002
    """

    amount: float
    relative: bool = False

    def allowed(self, baseline: float) -> float:
        """The largest allowed drop, in score units, for this ``baseline``."""
        return self.amount * abs(baseline) if self.relative else self.amount

    def describe(self) -> str:
        """``"0.02 (absolute)"`` or ``"2% of the baseline"``."""
        return f"{self.amount:.4g} of the baseline" if self.relative else f"{self.amount:g}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {"amount": self.amount, "relative": self.relative}


def check_max_drop(value: Any, owner: str) -> MaxDrop | None:
    """Normalize ``max_drop``: None, a float >= 0 (absolute) or a :class:`MaxDrop`."""
    if value is None:
        return None
    if isinstance(value, MaxDrop):
        amount, allowed = value.amount, "a MaxDrop with an amount >= 0"
    else:
        amount, allowed = value, "None, a float >= 0 (absolute drop) or a MaxDrop"
    try:
        amount = Interval(float, 0, None).accept(amount)
    except (TypeError, ValueError):
        raise bad_parameter("max_drop", owner, allowed, value) from None
    if isinstance(value, MaxDrop):
        if value.relative not in (True, False):
            raise bad_parameter("max_drop", owner, "a MaxDrop with relative True or False", value)
        return MaxDrop(float(amount), bool(value.relative))
    return MaxDrop(float(amount))
