"""Contrastive objective for matching two modalities: symmetric InfoNCE (CLIP's loss).

For a similarity matrix s `[N, M]` (image i against text j) and a temperature τ,

    L_i2t = -mean_i log( Σ_{j ∈ pos(i)} exp(s_ij / τ) / Σ_j exp(s_ij / τ) )
    L_t2i = -mean_j log( Σ_{i ∈ pos(j)} exp(s_ij / τ) / Σ_i exp(s_ij / τ) )
    L = (L_i2t + L_t2i) / 2

where the positives are the diagonal by default (pair i is image i with text i, N = M) or
the `True` entries of `matches`; with one positive per row and column this is the
cross-entropy of each row and each column against its pair. Every negative in the batch
contributes, weighted by its softmax share (not only the hardest one, as VSE++'s hinge).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.validation import check_real

__all__ = ["info_nce"]


def info_nce(similarity: Any, temperature: float = 0.07, matches: Any = None) -> jax.Array:
    """Symmetric InfoNCE over a batch of image-text similarities.

    Args:
      similarity: `[N, M]` scores of image i against text j (e.g. cosines).
      temperature: τ > 0; the scores are divided by it before the softmaxes.
      matches: optional boolean `[N, M]`, True where image i and text j are a pair; every
        row and column needs at least one. Default: the identity (needs N = M).

    Returns:
      The scalar loss (L_i2t + L_t2i) / 2, float32.
    """
    temperature = check_real(temperature, "temperature", 0.0, open_low=True)
    shape = tuple(np.shape(similarity))
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"similarity: expected a 2-D array (N, M) with N, M >= 1, got {shape}")
    if matches is None:
        if shape[0] != shape[1]:
            raise ValueError(
                f"matches: needed when similarity is not square (image i matches text i), "
                f"got similarity of shape {shape}"
            )
        positives = jnp.eye(shape[0], dtype=jnp.float32)
    else:
        dtype = matches.dtype if hasattr(matches, "dtype") else np.asarray(matches).dtype
        if tuple(np.shape(matches)) != shape or dtype != np.bool_:
            raise ValueError(
                f"matches: expected a boolean array of shape {shape} (the similarity's), got "
                f"shape {tuple(np.shape(matches))} of {dtype}"
            )
        # Concrete matches are checked for rows and columns without a match; traced ones
        # (inside jit) cannot be, and such a row or column makes the loss +inf.
        if not isinstance(matches, jax.core.Tracer):
            array = np.asarray(matches)
            for axis, what in ((1, "image (row)"), (0, "text (column)")):
                empty = np.flatnonzero(~array.any(axis=axis))
                if empty.size:
                    raise ValueError(f"matches: {what} {empty.tolist()[:5]} has no match")
        positives = jnp.asarray(matches, jnp.float32)
    logits = jnp.asarray(similarity, jnp.float32) / temperature
    i2t = jax.nn.logsumexp(logits, axis=1, b=positives) - jax.nn.logsumexp(logits, axis=1)
    t2i = jax.nn.logsumexp(logits, axis=0, b=positives) - jax.nn.logsumexp(logits, axis=0)
    return -(jnp.mean(i2t) + jnp.mean(t2i)) / 2.0
