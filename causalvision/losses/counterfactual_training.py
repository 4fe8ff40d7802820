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

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["ascending_multiplier", "constrained_objective"]


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
