"""Arithmetic on single values, for computations inside conditions (``1 - test_acc < 0.2``).

The where-language evaluates row by row without numpy (dbx imports without it), yet a
computation in a condition must give what the same computation gives as a query column
(``squeezr.dbx.query.arithmetic``, numpy on whole columns): IEEE results instead of Python's
exceptions (``1 / 0`` is ``inf``, ``0 / 0`` and ``log(-1)`` are NaN, an overflow is ``inf``)
and no unbounded work (``10 ** 10 ** 10`` is a float power, not a billion-digit integer).
Anything that is not a number (text, a boolean, a list, a missing field) gives None, which
the where-language treats as a missing field: a comparison with it is false.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

__all__ = ["BINARY", "FUNCTIONS", "negate"]

_INT64 = 2**63


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _ieee(apply: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``apply`` on two numbers with IEEE results instead of exceptions; ints stay ints while
    they fit in 64 bits (as in a numpy int64 column), then become floats."""

    def binary(a: Any, b: Any) -> Any:
        if not (_number(a) and _number(b)):
            return None
        try:
            result = apply(a, b)
        except ZeroDivisionError:
            result = _divided_by_zero(apply, a, b)
        except OverflowError:
            result = math.inf
        if type(result) is int and not -_INT64 <= result < _INT64:
            result = float(result)
        return result if _number(result) else math.nan  # a complex power is NaN

    return binary


def _divided_by_zero(apply: Callable[[Any, Any], Any], a: Any, b: Any) -> float:
    if apply is not operator.truediv or a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _power(a: Any, b: Any) -> Any:
    try:
        return float(a) ** float(b)
    except ZeroDivisionError:  # 0 ** -1
        return math.inf


BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _ieee(operator.add),
    "-": _ieee(operator.sub),
    "*": _ieee(operator.mul),
    "/": _ieee(operator.truediv),
    "//": _ieee(operator.floordiv),
    "%": _ieee(operator.mod),
    "**": _ieee(_power),
}


def _log(base: Callable[[float], float]) -> Callable[[float], float]:
    def log(x: float) -> float:
        if x == 0:
            return -math.inf
        return base(x) if x > 0 else math.nan

    return log


def _unary(apply: Callable[[float], float]) -> Callable[[Any], Any]:
    def function(value: Any) -> Any:
        if not _number(value):
            return None
        try:
            return apply(value)
        except OverflowError:
            return math.inf
        except ValueError:  # sqrt(-1)
            return math.nan

    return function


FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "abs": _unary(abs),
    "sqrt": _unary(math.sqrt),
    "exp": _unary(math.exp),
    "log": _unary(_log(math.log)),
    "log2": _unary(_log(math.log2)),
    "log10": _unary(_log(math.log10)),
}


def negate(value: Any) -> Any:
    """``-value`` for a number; None for anything else."""
    return -value if _number(value) else None
