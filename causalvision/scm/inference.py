"""Abduction by posterior inference, for mechanisms whose noise cannot be solved for."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import optax
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO, init_to_feasible
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import optax_to_numpyro

from causalvision.scm._compat import lenient_promotion

if TYPE_CHECKING:
    from causalvision.scm.mechanisms import Inference


def posterior_noise(
    conditioned_model: Callable[[], None],
    key: jax.Array,
    num_samples: int | None,
    settings: Inference,
) -> dict[str, jax.Array]:
    """Draw the latent sites of `conditioned_model` from their posterior.

    Returns one draw per site, `(N, ...)`, or `num_samples` draws `(S, N, ...)`. Units are
    independent given their parents, so one joint run over the unit plate infers them all.
    """
    key_fit, key_draw = jax.random.split(key)
    sample_shape = () if num_samples is None else (num_samples,)
    if settings.method == "svi":
        # Start at 0 in unconstrained space (the centre of standard noise), as Pyro does,
        # rather than numpyro's default uniform(-2, 2) draw: it converges in fewer steps,
        # and compiles faster than init_to_median.
        guide = AutoNormal(conditioned_model, init_loc_fn=init_to_feasible, init_scale=0.05)
        svi = SVI(
            conditioned_model,
            guide,
            optax_to_numpyro(optax.adam(_schedule(settings))),
            Trace_ELBO(),
        )
        with lenient_promotion():
            result = svi.run(key_fit, settings.num_steps, progress_bar=False)
            # Draws `(S, N)` broadcast against the guide's `(N,)` parameters.
            return guide.sample_posterior(key_draw, result.params, sample_shape=sample_shape)
    mcmc = MCMC(
        NUTS(conditioned_model),
        num_warmup=settings.num_warmup,
        num_samples=1 if num_samples is None else num_samples,
        progress_bar=False,
    )
    with lenient_promotion():
        mcmc.run(key_fit)
    samples = mcmc.get_samples()
    if num_samples is None:
        return jax.tree.map(lambda s: s[-1], samples)
    return samples


def _schedule(settings: Inference) -> optax.Schedule:
    """Adam's step size: `learning_rate`, decayed over the last half of the steps to 1/100.

    A constant step leaves the guide jittering around the optimum by about the step size
    (single-particle ELBO gradients are noisy); the decay lets it settle.
    """
    half = max(settings.num_steps // 2, 1)
    return optax.join_schedules(
        [
            optax.constant_schedule(settings.learning_rate),
            optax.cosine_decay_schedule(settings.learning_rate, half, alpha=0.01),
        ],
        [half],
    )
