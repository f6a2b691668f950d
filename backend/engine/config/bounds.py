"""An interval a number setting must lie in, written once and read three ways.

The engine checks values against it, the settings table of ``protocol/README.md`` prints it,
and ``get_settings`` sends it; so the range a client is told is the range the engine enforces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """The interval from ``low`` to ``high`` (``None``: unbounded on that side), each end closed
    unless marked open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval."""
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def interval(self) -> str:
        """Interval notation, e.g. ``[8, 2048]``, ``(0, 1]``, ``[1, inf)``."""
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        opening = "(" if self.low is None or self.low_open else "["
        closing = ")" if self.high is None or self.high_open else "]"
        return f"{opening}{low}, {high}{closing}"

    def requirement(self) -> str:
        """The rule in words for an error message: ``>= 1``, ``> 0`` or ``in (0, 1]``."""
        if self.high is None and self.low is not None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if self.low is None and self.high is not None:
            return f"{'<' if self.high_open else '<='} {_number(self.high)}"
        return f"in {self.interval()}"


def at_least(low: float) -> Bound:
    """``[low, inf)``."""
    return Bound(low=low)


def above(low: float) -> Bound:
    """``(low, inf)``."""
    return Bound(low=low, low_open=True)


def between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Bound:
    """``[low, high]``, either end open if asked."""
    return Bound(low=low, high=high, low_open=low_open, high_open=high_open)


def _number(value: float) -> str:
    """``1`` for 1.0, ``0.5`` for 0.5: the shortest form that reads back as the same number."""
    if math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return repr(float(value))
