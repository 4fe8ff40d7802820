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

    Every required node must be present, every column must have the same leading
    (batch) size, and no value may be NaN. Raises `ValueError` naming the node.
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
        array = jnp.asarray(value)
        if array.ndim == 0:
            raise ValueError(
                f"{argument}[{name!r}]: expected one value per unit (an array with a leading "
                f"batch axis), got a scalar"
            )
        arrays[name] = array
        sizes[name] = array.shape[0]
    # Under jit the values are abstract and cannot be checked; otherwise one device call
    # counts the NaNs of every float column.
    floats = [
        n
        for n, a in arrays.items()
        if jnp.issubdtype(a.dtype, jnp.floating) and not isinstance(a, jax.core.Tracer)
    ]
    if floats:
        counts = np.asarray(_nan_counts(tuple(arrays[n] for n in floats)))
        for name, count in zip(floats, counts, strict=True):
            if count:
                raise ValueError(f"{argument}[{name!r}]: contains {int(count)} NaN value(s)")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{argument}: nodes have mismatched batch sizes {sizes}")
    size = next(iter(sizes.values())) if sizes else 0
    return arrays, size


@jax.jit
def _nan_counts(columns: tuple[jax.Array, ...]) -> jax.Array:
    return jnp.stack([jnp.isnan(c).sum() for c in columns])
