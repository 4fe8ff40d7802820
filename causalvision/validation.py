"""Checks at the public boundary, shared by every package: one message style everywhere.

Each check returns the value in canonical form or raises `ValueError` naming the argument,
what was expected and what came, e.g. ``size: expected an int >= 1, got 0``. Shape, dtype and
key checks read static properties only, so they also run inside `jax.jit`; value checks
(`check_real_array`) let abstract (traced) values through, as only concrete ones can be read.
`warn` is the soft counterpart: a `UserWarning` attributed to the caller's own line.
"""

from __future__ import annotations

import os
import pathlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "check_directory",
    "check_int",
    "check_key",
    "check_real",
    "check_real_array",
    "check_shape",
    "preview",
    "warn",
]


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
    ok = ok and bool(_within(np.float64(value), minimum, maximum, open_low, open_high))
    if not ok:
        where = _real_bounds(minimum, maximum, open_low, open_high)
        raise ValueError(f"{argument}: expected a finite number{where}, got {value!r}")
    return float(value)


def check_real_array(
    value: Any,
    argument: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> Any:
    """`value` as a float64 numpy array whose elements are finite and within their bounds.

    A traced value (under `jax.jit`) is returned unchanged: its elements cannot be read.
    """
    if isinstance(value, jax.core.Tracer):
        return value
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        array = np.asarray(None)
    ok = array.dtype.kind in "iuf"
    if ok:
        array = array.astype(np.float64)
        ok = bool(_within(array, minimum, maximum, open_low, open_high).all())
    if not ok:
        where = _real_bounds(minimum, maximum, open_low, open_high)
        raise ValueError(f"{argument}: expected finite number(s){where}, got {preview(value)}")
    return array


def check_key(key: Any, argument: str = "key") -> Any:
    """`key` as a typed JAX PRNG key, if it is one key: typed (`jax.random.key(seed)`, shape
    ()) or legacy raw (`jax.random.PRNGKey(seed)`, uint32 of the default implementation's
    shape), which is wrapped without changing its random stream.

    Reads the static dtype and shape only, so it also checks traced keys under `jax.jit`.
    """
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is not None and not isinstance(key, np.generic):
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
            return key
        if dtype == np.uint32 and len(shape) == 1:
            try:
                return jax.random.wrap_key_data(key)
            except (TypeError, ValueError):  # not the default implementation's key shape
                pass
    raise ValueError(
        f"{argument}: expected a JAX PRNG key (jax.random.key(seed)), got {_describe(key)}"
    )


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn, attributed to the first caller outside causalvision: the user's own line."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: warn's caller
    while frame is not None and _is_ours(frame.f_globals.get("__name__", "")):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _is_ours(module: str) -> bool:
    return module == "causalvision" or module.startswith("causalvision.")


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


def _within(
    value: np.ndarray | np.float64,
    minimum: float | None,
    maximum: float | None,
    open_low: bool,
    open_high: bool,
) -> np.ndarray | np.bool_:
    """Elementwise: finite and within the bounds (closed unless `open_low` / `open_high`)."""
    inside = np.isfinite(value)
    if minimum is not None:
        inside &= value > minimum if open_low else value >= minimum
    if maximum is not None:
        inside &= value < maximum if open_high else value <= maximum
    return inside


def _real_bounds(
    minimum: float | None, maximum: float | None, open_low: bool, open_high: bool
) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if open_low else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if open_high else '<='} {maximum}")
    return f" {' and '.join(parts)}" if parts else ""


def preview(value: Any, limit: int = 6) -> str:
    """A short text of a value for a message: scalars and small arrays in full, large ones cut."""
    try:
        array = np.asarray(value)
    except ValueError:
        return repr(value)
    if array.dtype.kind not in "biuf":
        return repr(value)
    if array.ndim == 0:
        return repr(array.item())
    items = array.ravel()[:limit].tolist()
    more = ", ..." if array.size > limit else ""
    return f"[{', '.join(map(repr, items))}{more}] (shape {array.shape})"


def _describe(value: Any) -> str:
    """What came, for a type error: its repr when short, else its type, dtype and shape."""
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is not None and shape not in (None, ()):
        return f"an array of dtype {dtype} and shape {tuple(shape)}"
    if dtype is not None:
        return f"a {dtype} scalar"
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"


def check_directory(path: Any, argument: str) -> pathlib.Path:
    """`path` as a directory this process can write into, created (with parents) if missing.

    Raises `ValueError` if it is a file, cannot be created or is not writable.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{argument}: {str(path)!r} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        message = f"{argument}: {str(path)!r} cannot be created ({error.strerror})"
        raise ValueError(message) from None
    # os.access also answers for root on a read-only mount, where permission bits do not.
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{argument}: {str(path)!r} is not writable")
    return path
