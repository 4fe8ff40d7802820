"""Counterfactual training: causal-gen's constrained objective (REFERENCE §2.2).

Fine-tune an image mechanism so that frozen anti-causal predictors read the intervened
parent values off its counterfactuals, while its negative ELBO N stays below a bound ε:

  minimise  L_CT = -Σ_k E log q_k(pa*_k | x*)   subject to   N(x, pa) <= ε,

solved with a damped Lagrangian (Platt & Barr's modified differential method of multipliers):

  L = L_CT - (λ - d · sg(ε - N)) · (ε - N),    λ >= 0 updated by gradient *ascent*.

The multiplier is a parameter of the model trained by the same optimiser as everything else:
`ascending_multiplier` passes λ forwards and its gradient backwards with the sign flipped, so
plain gradient descent on L is ascent on λ. ε is measured from the trained model (its mean
negative ELBO on training data), never hard-coded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from causalvision.scm import SCM

Array = jax.Array

__all__ = ["ascending_multiplier", "constrained_objective", "counterfactual_nll"]


@jax.custom_vjp
def _reverse_gradient(value: Array) -> Array:
    return value


def _forward(value):
    return value, None


def _backward(_, cotangent):
    return (-cotangent,)


_reverse_gradient.defvjp(_forward, _backward)


def ascending_multiplier(raw: Array, scale: float = 100.0) -> Array:
    """λ = softplus(scale · raw) >= 0, with the gradient reversed so descent ascends on λ.

    `scale` sets λ's effective step size relative to the optimiser's learning rate (Adam
    moves `raw` by about the learning rate per step, whatever the gradient's size).
    """
    return _reverse_gradient(jax.nn.softplus(jnp.float32(scale) * raw))


def constrained_objective(
    counterfactual_nll: Array,
    negative_elbo: Array,
    bound: Array | float,
    multiplier: Array,
    damping: float = 100.0,
) -> tuple[Array, dict[str, Array]]:
    """The damped Lagrangian `L_CT - (λ - d·sg(ε - N))·(ε - N)` and its parts.

    Args:
      counterfactual_nll: L_CT, the predictors' negative log-likelihood of the intervened
        values given the counterfactual images (scalar).
      negative_elbo: N, the model's negative ELBO on the factual batch (scalar).
      bound: ε, the largest allowed N.
      multiplier: λ (from `ascending_multiplier`).
      damping: d.
    """
    slack = jnp.float32(bound) - negative_elbo
    penalty = (multiplier - jnp.float32(damping) * jax.lax.stop_gradient(slack)) * slack
    loss = counterfactual_nll - penalty
    return loss, {
        "counterfactual_nll": counterfactual_nll,
        "negative_elbo": negative_elbo,
        "constraint_slack": slack,
        "multiplier": multiplier,
    }


def counterfactual_nll(
    scm: SCM,
    predictor: Callable[[Array], Mapping[str, Array]],
    batch: Mapping[str, Array],
    key: Array,
    *,
    parents: Sequence[str],
    num_classes: Mapping[str, int],
    standardise: Mapping[str, tuple[float, float]],
    image: str = "image",
) -> Array:
    """Mean over images of -log q(pa* | x*): causal-gen's counterfactual likelihood term.

    q is a frozen predictor of the image's `parents`, x* a counterfactual image, pa* its
    intervened parents. The images are put in a random order and split into as many parts as
    there are parents: part k gets do(parents[k]), with the value of the next image in that
    order. causal-gen draws one parent per batch instead; one per image estimates the same
    objective with less variance and needs no `lax.switch`.

    Args:
      scm: the deep SCM; `parents` and their ancestors must be closed under parents.
      predictor: `images / 255 (N, H, W, C) -> {parent: logits (N, K) | standardised (N,)}`.
      batch: every parent `(N,)` and the image `(N, H, W, C)` in [0, 255].
      key: the order of the images.
      parents: the image's parents, each intervened on in one part.
      num_classes: the categorical parents' class counts (their q is a softmax).
      standardise: `(offset, scale)` of each continuous parent (their q is a unit-variance
        Gaussian on the standardised value, up to a constant).
      image: the image node's name.
    """
    num = batch[image].shape[0]
    if num < len(parents):
        raise ValueError(
            f"batch: counterfactual training needs at least {len(parents)} images per batch "
            f"(one per intervened parent), got {num}"
        )
    order = jax.random.permutation(key, num)
    shuffled = {name: value[order] for name, value in batch.items()}
    donors = {name: jnp.roll(shuffled[name], -1, axis=0) for name in parents}
    # Each part's parents first, in the attributes-only SCM; then one image counterfactual
    # of the whole batch with every parent set to its counterfactual value. That is the same
    # image (it reads its parents' values only), traced once instead of once per part.
    attributes = SCM({name: scm.mechanisms[name] for name in scm.nodes if name != image})
    names = attributes.nodes
    parts: list[dict[str, Any]] = []
    for node, rows in zip(parents, np.array_split(np.arange(num), len(parents)), strict=True):
        factual = {name: shuffled[name][rows] for name in names}
        parts.append(attributes.counterfactual(factual, {node: donors[node][rows]}))
    cf_parents = {name: jnp.concatenate([part[name] for part in parts]) for name in names}
    cf = scm.counterfactual(shuffled, cf_parents)
    predictions = predictor(cf[image] / 255.0)
    nll = jnp.zeros((num,), jnp.float32)
    for name in parents:
        if name in num_classes:
            nll = nll + optax.softmax_cross_entropy_with_integer_labels(
                predictions[name], cf[name].astype(jnp.int32)
            )
        else:
            offset, scale = standardise[name]
            standard = (cf[name] - jnp.float32(offset)) / jnp.float32(scale)
            nll = nll + 0.5 * (predictions[name] - jax.lax.stop_gradient(standard)) ** 2
    return jnp.mean(nll)
