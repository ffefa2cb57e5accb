"""Parameter constraints declared once, checked with one message template (scikit-learn's
``Interval`` / ``StrOptions`` style).

A constraint both checks a value and lists a few values it refuses, so the tests that feed
every entry point bad input are generated from the declarations instead of written by hand.

Example:
    >>> check(0.5, OPEN_UNIT, "target", "compress")
    0.5
    >>> try:
    ...     check(1.5, OPEN_UNIT, "target", "compress")
    ... except InvalidParameterError as error:
    ...     print(error)
    The 'target' parameter of compress must be a float in (0, 1). Got 1.5 instead.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from greedy_compress.errors import InvalidParameterError

__all__ = [
    "BOOLEAN",
    "OPEN_UNIT",
    "POSITIVE_INT",
    "RATIO",
    "Boolean",
    "Constraint",
    "Interval",
    "NoneOr",
    "Options",
    "bad_parameter",
    "check",
    "check_choice",
    "check_open_unit",
    "check_positive_int",
    "check_ratio",
]


def bad_parameter(name: str, owner: str, allowed: str, value: Any) -> InvalidParameterError:
    """The error for a parameter ``name`` of ``owner`` that is not ``allowed``."""
    return InvalidParameterError(
        f"The {name!r} parameter of {owner} must be {allowed}. Got {value!r} instead."
    )


class Constraint(ABC):
    """What a parameter accepts: :meth:`accept` normalizes a good value or raises
    ``ValueError``; :attr:`description` completes "must be ..."; :meth:`invalid` gives
    values it refuses (for the generated tests)."""

    description: str

    @abstractmethod
    def accept(self, value: Any) -> Any:
        """``value`` normalized (e.g. an int given for a float becomes a float)."""

    @abstractmethod
    def invalid(self) -> list[Any]:
        """A few values this constraint refuses."""


def check(value: Any, constraint: Constraint, name: str, owner: str) -> Any:
    """``constraint.accept(value)``, or the one error naming the parameter and the value."""
    try:
        return constraint.accept(value)
    except (ValueError, TypeError):
        raise bad_parameter(name, owner, constraint.description, value) from None


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


@dataclass(frozen=True)
class Interval(Constraint):
    """A number between ``low`` and ``high`` (None: unbounded); ``kind`` int or float.

    Example:
        >>> Interval(float, 0, 1, closed="right").description
        'a float in (0, 1]'
    """

    kind: type[int] | type[float]
    low: float | None
    high: float | None
    closed: Literal["both", "left", "right", "neither"] = "both"

    @property
    def description(self) -> str:  # type: ignore[override]
        name = "an int" if self.kind is int else "a float"
        if self.high is None and self.low is not None:
            sign = ">=" if self.closed in ("both", "left") else ">"
            return f"{name} {sign} {self.low:g}"
        if self.low is None and self.high is not None:
            sign = "<=" if self.closed in ("both", "right") else "<"
            return f"{name} {sign} {self.high:g}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"{name} in {left}{self.low:g}, {self.high:g}{right}"

    def accept(self, value: Any) -> Any:
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(value)
        elif not _is_number(value) or math.isnan(value):
            raise TypeError(value)
        if self.low is not None:
            below = value < self.low if self.closed in ("both", "left") else value <= self.low
            if below:
                raise ValueError(value)
        if self.high is not None:
            above = value > self.high if self.closed in ("both", "right") else value >= self.high
            if above:
                raise ValueError(value)
        return self.kind(value)

    def invalid(self) -> list[Any]:
        bad: list[Any] = [True, "1"]
        if self.kind is float:
            bad.append(math.nan)
        else:
            bad.append(1.5)
        if self.low is not None:
            bad.append(self.kind(self.low) if self.closed in ("right", "neither") else self.low - 1)
        if self.high is not None:
            edge = self.closed in ("left", "neither")
            bad.append(self.kind(self.high) if edge else self.high + 1)
        return bad


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of strings.

    Example:
        >>> Options(("mac", "memory")).description
        "one of 'mac', 'memory'"
    """

    values: tuple[str, ...]

    @property
    def description(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(repr(v) for v in sorted(self.values))

    def accept(self, value: Any) -> Any:
        if not isinstance(value, str) or value not in self.values:
            raise ValueError(value)
        return value

    def invalid(self) -> list[Any]:
        return ["not-an-option", 3, None]


@dataclass(frozen=True)
class Boolean(Constraint):
    """True or False (not 0, 1 or a string)."""

    description = "True or False"

    def accept(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise TypeError(value)
        return value

    def invalid(self) -> list[Any]:
        return [1, "yes", None]


@dataclass(frozen=True)
class NoneOr(Constraint):
    """None, or what ``inner`` accepts."""

    inner: Constraint

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"None or {self.inner.description}"

    def accept(self, value: Any) -> Any:
        return None if value is None else self.inner.accept(value)

    def invalid(self) -> list[Any]:
        return [v for v in self.inner.invalid() if v is not None]


OPEN_UNIT = Interval(float, 0, 1, closed="neither")
RATIO = Interval(float, 0, 1, closed="right")
POSITIVE_INT = Interval(int, 1, None)
BOOLEAN = Boolean()


def check_open_unit(value: Any, name: str, owner: str) -> float:
    """``value`` as a float if it lies in the open interval (0, 1)."""
    return float(check(value, OPEN_UNIT, name, owner))


def check_ratio(value: Any, name: str, owner: str) -> float:
    """``value`` as a float if it lies in (0, 1] (1 means "leave the layer alone")."""
    return float(check(value, RATIO, name, owner))


def check_positive_int(value: Any, name: str, owner: str) -> int:
    """``value`` if it is an int >= 1."""
    return int(check(value, POSITIVE_INT, name, owner))


def check_choice(value: Any, choices: Iterable[str], name: str, owner: str) -> str:
    """``value`` if it is one of ``choices``; the error lists them."""
    return str(check(value, Options(tuple(choices)), name, owner))
