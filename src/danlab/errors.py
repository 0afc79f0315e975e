"""danlab's one error type for bad input: a ValueError with a one-line message."""

import math


class DanlabError(ValueError):
    """Bad input: the message names the bad value and what is allowed."""


def check(condition: bool, message: str) -> None:
    """Raise DanlabError(message) unless condition holds."""
    if not condition:
        raise DanlabError(message)


def check_positive(name: str, value: float) -> None:
    try:
        ok = math.isfinite(value) and value > 0
    except TypeError:
        ok = False
    check(ok, f"{name}={value!r} is not allowed: it must be a finite number > 0")


def check_int_at_least(name: str, value: int, low: int) -> None:
    check(
        isinstance(value, int) and not isinstance(value, bool) and value >= low,
        f"{name}={value!r} is not allowed: it must be an integer >= {low}",
    )


def check_choice(name: str, value: str, allowed) -> None:
    check(value in allowed, f"{name}={value!r} is not allowed: choose one of {', '.join(allowed)}")
