"""Counterfactual training's constrained objective and its ascending multiplier."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from causalvision.losses import ascending_multiplier, constrained_objective


def test_objective_value_is_the_damped_lagrangian():
    loss, parts = constrained_objective(
        jnp.float32(2.0), jnp.float32(3.5), 3.0, jnp.float32(0.7), damping=10.0
    )
    slack = 3.0 - 3.5
    assert float(loss) == pytest.approx(2.0 - (0.7 - 10.0 * slack) * slack)
    assert float(parts["constraint_slack"]) == pytest.approx(slack)


def test_gradients_descend_on_the_model_and_ascend_on_the_multiplier():
    def objective(raw, negative_elbo):
        multiplier = ascending_multiplier(raw, scale=2.0)
        return constrained_objective(jnp.float32(1.0), negative_elbo, 3.0, multiplier, 10.0)[0]

    raw = jnp.float32(0.1)
    multiplier = float(jax.nn.softplus(2.0 * raw))
    assert float(ascending_multiplier(raw, 2.0)) == pytest.approx(multiplier)
    # Violated bound (N > ε): the true ∂L/∂λ = -(ε - N) > 0; descent must *raise* λ, so the
    # reported gradient w.r.t. raw is negative.
    grad_raw = jax.grad(objective)(raw, jnp.float32(3.5))
    dsoftplus = 2.0 * jax.nn.sigmoid(2.0 * raw)
    true_gradient = -(3.0 - 3.5)  # ∂L/∂λ = -(ε - N) = 0.5
    np.testing.assert_allclose(float(grad_raw), -true_gradient * float(dsoftplus), rtol=1e-5)
    # And descent lowers N while the bound is violated: ∂L/∂N = λ - d·(ε - N) > 0.
    grad_elbo = jax.grad(objective, argnums=1)(raw, jnp.float32(3.5))
    expected = multiplier - 10.0 * (3.0 - 3.5)  # d/dN of -(λ - d·sg(s))·s with s = ε - N
    np.testing.assert_allclose(float(grad_elbo), expected, rtol=1e-5)
    assert float(grad_elbo) > 0
