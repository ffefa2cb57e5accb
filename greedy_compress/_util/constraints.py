"""Parameter checks sharing one message template, in the style of scikit-learn."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from greedy_compress.errors import InvalidParameterError


def bad_parameter(name: str, owner: str, allowed: str, value: Any) -> InvalidParameterError:
    """Build the error for a parameter ``name`` of ``owner`` that is not ``allowed``."""
    return InvalidParameterError(
        f"The {name!r} parameter of {owner} must be {allowed}. Got {value!r} instead."
    )


def check_open_unit(value: Any, name: str, owner: str) -> float:
    """Return ``value`` as a float if it lies in the open interval (0, 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not 0.0 < value < 1.0
    ):
        raise bad_parameter(name, owner, "a float in (0, 1)", value)
    return float(value)


def check_ratio(value: Any, name: str, owner: str) -> float:
    """Return ``value`` as a float if it lies in (0, 1] (1 means "leave the layer alone")."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not 0.0 < value <= 1.0
    ):
        raise bad_parameter(name, owner, "a float in (0, 1]", value)
    return float(value)


def check_positive_int(value: Any, name: str, owner: str) -> int:
    """Return ``value`` if it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_parameter(name, owner, "an int >= 1", value)
    return value


def check_choice(value: Any, choices: Iterable[str], name: str, owner: str) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists them."""
    options = sorted(choices)
    if value not in options:
        raise bad_parameter(name, owner, "one of " + ", ".join(repr(c) for c in options), value)
    return value
