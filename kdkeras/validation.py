"""The argument checks every layer of kdkeras shares: each echoes the bad value, as Keras does.

One set of validators, used by the Python API, the config of ``kdkeras run`` and the CLI, so a
bad value fails the same way wherever it comes in.

Example:

>>> check_int(3, "epochs", minimum=1)
3
>>> check_int(0, "epochs", minimum=1)
Traceback (most recent call last):
...
ValueError: epochs must be an integer >= 1. Received: epochs=0
>>> check_temperature(float("inf"))
Traceback (most recent call last):
...
ValueError: temperature must be a finite number > 0. Received: temperature=inf
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_int", "check_number", "check_alpha", "check_temperature", "is_int",
           "shape_fits"]


def is_int(value: Any) -> bool:
    """True for a Python or numpy integer (``bool`` is not one)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int = 0) -> int:
    """Returns ``value`` as an ``int`` when it is an integer ``>= minimum``.

    Raises:
        ValueError: naming ``name`` and the received value.
    """
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_number(value: Any, name: str, *, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False) -> float:
    """Returns ``value`` as a ``float`` when it is a finite real number in the given range.

    Args:
        value: what the caller passed.
        name: str. The argument or config key, echoed in the message.
        low: float. Lower bound (inclusive unless ``low_open``).
        high: float. Upper bound (inclusive unless ``high_open``).

    Raises:
        ValueError: a non-number, NaN, inf, or a value out of range, naming ``name``.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        low, high = _bound(low), _bound(high)
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        if low == -math.inf and high == math.inf:
            where = "a finite number"
        elif high == math.inf:
            where = f"{'>' if low_open else '>='} {low}"
        elif low == -math.inf:
            where = f"{'<' if high_open else '<='} {high}"
        else:
            where = f"a number in {lo}{low}, {high}{hi}"
        finite = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if not finite and not where.startswith("a "):
            where = f"a finite number {where}"
        raise ValueError(f"{name} must be {where}. Received: {name}={value!r}")
    return float(value)


def shape_fits(expected, got) -> bool:
    """True when per-example shape ``got`` fits ``expected`` (``None`` there: any size).

    >>> shape_fits((None, 8), (12, 8)), shape_fits((28, 28, 1), (28, 28))
    (True, False)
    """
    expected, got = tuple(expected), tuple(got)
    return len(expected) == len(got) and all(e is None or e == g for e, g in zip(expected, got))


def _bound(b: float):
    """A range bound as written: ``255`` rather than ``255.0``, ``2147483647`` rather than
    ``2.14748e+09``."""
    return int(b) if math.isfinite(b) and float(b).is_integer() and abs(b) < 1e16 else b


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """The weight of the hard-label loss: a number in [0, 1]."""
    return check_number(alpha, name, low=0.0, high=1.0)


def check_temperature(temperature: Any, name: str = "temperature") -> float:
    """A softening temperature: a finite number > 0.

    Raises:
        TypeError: for a non-number (a string, None).
        ValueError: for ``<= 0``, NaN or inf.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"{name} must be a positive number. Received: {name}={temperature!r}")
    return check_number(temperature, name, low=0.0, low_open=True)
