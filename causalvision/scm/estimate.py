"""The value type every effect query and estimator returns."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np


class Estimate(NamedTuple):
    """A Monte Carlo or statistical estimate with its standard error.

    A NamedTuple, hence a pytree: it passes through `jax.jit` and `jax.vmap`.
    `value` and `stderr` share a shape (scalar for a single query).
    """

    value: jax.Array
    stderr: jax.Array

    def __repr__(self) -> str:
        value, stderr = np.asarray(self.value), np.asarray(self.stderr)
        if value.ndim == 0:
            return f"Estimate({float(value):.4g} ± {float(stderr):.2g})"
        return f"Estimate(value={value!r}, stderr={stderr!r})"

    def interval(self, z: float = 1.96) -> tuple[jax.Array, jax.Array]:
        """Normal-approximation confidence interval `value ± z * stderr`."""
        return self.value - z * self.stderr, self.value + z * self.stderr


def mean_and_stderr(samples: jax.Array, axis: int = 0) -> Estimate:
    """Sample mean and its standard error along `axis`."""
    n = samples.shape[axis]
    mean = samples.mean(axis=axis)
    stderr = samples.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else jax.numpy.zeros_like(mean)
    return Estimate(mean, stderr)
