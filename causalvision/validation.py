"""Checks at the public boundary, shared by every package: one message style everywhere.

Each check returns the value in canonical form or raises `ValueError` naming the argument,
what was expected and what came, e.g. ``size: expected an int >= 1, got 0``. Array checks
read static shapes and dtypes only, so they also run inside `jax.jit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_int", "check_real", "check_shape"]


def check_int(
    value: Any, argument: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """`value` as an int, if it is an integer (not a bool) within [minimum, maximum]."""
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        raise ValueError(f"{argument}: expected an int{_bounds(minimum, maximum)}, got {value!r}")
    return int(value)


def check_real(
    value: Any,
    argument: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """`value` as a finite float within its bounds (closed unless `open_low` / `open_high`)."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    ok = ok and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if open_low else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if open_high else value <= maximum
    if not ok:
        parts = []
        if minimum is not None:
            parts.append(f"{'>' if open_low else '>='} {minimum}")
        if maximum is not None:
            parts.append(f"{'<' if open_high else '<='} {maximum}")
        where = f" {' and '.join(parts)}" if parts else ""
        raise ValueError(f"{argument}: expected a finite number{where}, got {value!r}")
    return float(value)


def check_shape(array: Any, expected: Sequence[int | None], argument: str) -> Any:
    """`array` if its shape matches `expected` (None matches any size), else `ValueError`."""
    shape = tuple(np.shape(array))
    ok = len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected, strict=True)
    )
    if not ok:
        want = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{argument}: expected shape {want}, got {shape}")
    return array


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
