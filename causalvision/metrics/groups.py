"""Accuracy per group, and the worst group's: the figure that shows a shortcut (REFERENCE §4.6).

A group is a combination of the label and a confounder (Waterbirds' bird type x background).
A classifier that leans on the confounder does well on the groups where the two agree and
badly where they disagree; its mean accuracy hides this when those groups are rare, the
worst group's accuracy does not.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.validation import check_int

__all__ = ["group_accuracy", "group_index"]


def group_index(label: Any, confounder: Any, num_confounders: int) -> jax.Array:
    """The group `label * num_confounders + confounder` of each example `(N,)`."""
    return jnp.asarray(label) * num_confounders + jnp.asarray(confounder)


def group_accuracy(
    predictions: Any, labels: Any, groups: Any, num_groups: int
) -> dict[str, jax.Array]:
    """Mean, per-group and worst-group accuracy of predicted classes.

    Args:
      predictions: predicted classes `(N,)`, or logits / probabilities `(N, K)` (argmax).
      labels: true classes `(N,)`.
      groups: the group of each example `(N,)`, in [0, num_groups).
      num_groups: G.

    Returns:
      "accuracy" (over all examples), "worst_group_accuracy" (the minimum over groups with
      at least one example), "group_accuracy" `(G,)` (NaN where a group is empty) and
      "group_counts" `(G,)`. Works under `jit` (shapes are static); outside it, inputs are
      checked.
    """
    num_groups = check_int(num_groups, "num_groups", 1)
    predictions, labels, groups = (jnp.asarray(a) for a in (predictions, labels, groups))
    if predictions.ndim == 2:
        predictions = jnp.argmax(predictions, axis=-1)
    if not isinstance(groups, jax.core.Tracer):
        _check_inputs(predictions, labels, groups, num_groups)
    correct = (predictions == labels).astype(jnp.float32)
    counts = jax.ops.segment_sum(jnp.ones_like(correct), groups, num_segments=num_groups)
    hits = jax.ops.segment_sum(correct, groups, num_segments=num_groups)
    per_group = jnp.where(counts > 0, hits / jnp.maximum(counts, 1.0), jnp.nan)
    return {
        "accuracy": jnp.mean(correct),
        "worst_group_accuracy": jnp.min(jnp.where(counts > 0, per_group, jnp.inf)),
        "group_accuracy": per_group,
        "group_counts": counts.astype(jnp.int32),
    }


def _check_inputs(predictions, labels, groups, num_groups: int) -> None:
    shapes = {"predictions": predictions.shape, "labels": labels.shape, "groups": groups.shape}
    if any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) != 1:
        raise ValueError(f"predictions, labels, groups: expected one shape (N,), got {shapes}")
    if predictions.shape[0] == 0:
        raise ValueError("predictions: expected at least one example, got none")
    for name, values in (("labels", labels), ("groups", groups)):
        if not jnp.issubdtype(values.dtype, jnp.integer):
            raise ValueError(f"{name}: expected integer classes, got dtype {values.dtype}")
    bad = np.asarray((groups < 0) | (groups >= num_groups))
    if bad.any():
        raise ValueError(
            f"groups: expected values in [0, {num_groups}), got e.g. "
            f"{np.asarray(groups)[bad][:3].tolist()}"
        )
