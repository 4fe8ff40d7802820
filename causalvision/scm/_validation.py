"""Checks at the public boundary: clear `ValueError`s naming the node and the problem."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def as_node_list(nodes: str | Iterable[str], argument: str) -> list[str]:
    """Normalise a node name or an iterable of names to a list of names."""
    if isinstance(nodes, str):
        return [nodes]
    names = list(nodes)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{argument}: expected node names (str), got {name!r}")
    return names


def check_known(nodes: Iterable[str], known: Iterable[str], argument: str) -> None:
    """Raise `ValueError` if any of `nodes` is not in `known`."""
    known = set(known)
    unknown = [n for n in nodes if n not in known]
    if unknown:
        raise ValueError(
            f"{argument}: unknown node(s) {sorted(unknown)}; the model's nodes are {sorted(known)}"
        )


def check_data(
    data: Mapping[str, Any],
    required: Iterable[str],
    argument: str = "data",
    *,
    allow_extra: bool = True,
    known: Iterable[str] | None = None,
) -> tuple[dict[str, jnp.ndarray], int]:
    """Validate a dict of per-unit columns and return it as arrays with the batch size.

    Every required node must be present with numbers or bools, every column must have the
    same leading (batch) size, and no value may be NaN or inf. Raises `ValueError` naming
    the node.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"{argument}: expected a dict of node -> array, got {type(data).__name__}")
    missing = [n for n in required if n not in data]
    if missing:
        raise ValueError(f"{argument}: missing value(s) for node(s) {missing}")
    if known is not None and not allow_extra:
        check_known(data.keys(), known, argument)
    arrays: dict[str, jnp.ndarray] = {}
    sizes: dict[str, int] = {}
    for name, value in data.items():
        array = _as_column(value, f"{argument}[{name!r}]")
        if array.ndim == 0:
            raise ValueError(
                f"{argument}[{name!r}]: expected one value per unit (an array with a leading "
                f"batch axis), got a scalar"
            )
        arrays[name] = array
        sizes[name] = array.shape[0]
    check_finite({f"{argument}[{n!r}]": a for n, a in arrays.items()})
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{argument}: nodes have mismatched batch sizes {sizes}")
    size = next(iter(sizes.values())) if sizes else 0
    return arrays, size


def check_finite(arrays: Mapping[str, Any], what: str = "contains") -> None:
    """Raise `ValueError` if an array holds NaN or inf; `arrays` maps message labels to arrays.

    Traced arrays (under jit) are abstract and pass unchecked. Host (numpy) arrays and JAX
    arrays in CPU memory are counted on the host (no program to compile for each new set of
    shapes); accelerator arrays all together in one device call.
    """
    counts: dict[str, int] = {}
    device: dict[str, jax.Array] = {}
    for label, array in arrays.items():
        if isinstance(array, jax.core.Tracer) or not jnp.issubdtype(array.dtype, jnp.inexact):
            continue
        if isinstance(array, jax.Array) and not _on_host(array):
            device[label] = array
        elif isinstance(array, jax.Array):  # CPU memory: counted in place, nothing compiled
            counts[label] = int(array.size - np.isfinite(np.asarray(array)).sum())
        else:
            counts[label] = int(np.size(array) - np.isfinite(array).sum())
    if device:
        with jax.ensure_compile_time_eval():  # concrete even inside an outer trace
            found = np.asarray(_nonfinite_counts(tuple(device.values())))
        counts.update(zip(device, found.tolist(), strict=True))
    for label in arrays:
        if counts.get(label):
            raise ValueError(f"{label}: {what} {counts[label]} non-finite value(s) (NaN or inf)")


def _as_column(value: Any, argument: str) -> jax.Array:
    """`value` as a JAX array, if it holds numbers or bools (not strings or objects)."""
    if isinstance(value, jax.Array):  # device arrays and tracers: always numeric or bool
        return value
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        array = np.asarray(value, dtype=object)
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{argument}: expected numbers or bools (one value per unit), got dtype {array.dtype}"
        )
    return jnp.asarray(array)


def _on_host(array: jax.Array) -> bool:
    """The array is concrete and lives in CPU memory, where numpy reads it without a copy."""
    try:
        return all(d.platform == "cpu" for d in array.devices())
    except Exception:  # a deleted or otherwise unreadable array: leave it to the device path
        return False


@jax.jit
def _nonfinite_counts(columns: tuple[jax.Array, ...]) -> jax.Array:
    return jnp.stack([jnp.logical_not(jnp.isfinite(c)).sum() for c in columns])
