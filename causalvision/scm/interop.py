"""An SCM as a numpyro model, and learning mechanism parameters from data through it.

One code path serves both: `fit` builds the numpyro model of the SCM with the parameters to
learn as `numpyro.param` sites (maximum likelihood, optax) or as sample sites under priors
(SVI or NUTS), then writes the result back into the mechanisms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.distributions.transforms import biject_to
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import optax_to_numpyro

from causalvision.scm._compat import lenient_promotion
from causalvision.scm._validation import check_data, check_known
from causalvision.scm.mechanisms import NumpyroMechanism
from causalvision.validation import check_int, check_key

if TYPE_CHECKING:
    from causalvision.scm.engine import SCM

__all__ = ["FitResult", "fit", "numpyro_model"]


def _parameter_sites(name: str, mech, prior: Any) -> dict[str, jax.Array]:
    """Declare the parameters of node `name` as numpyro sites and return their values."""
    values = {}
    for pname, (init, constraint) in mech.parameters().items():
        site = f"{name}.{pname}"
        if prior is None:
            values[pname] = numpyro.param(site, init, constraint=constraint)
            continue
        p = prior.get(pname) if isinstance(prior, Mapping) else prior
        if p is None:  # a per-parameter prior dict leaves the other parameters fixed
            values[pname] = init
            continue
        shape = jnp.shape(init)
        if isinstance(prior, Mapping):
            p = p if p.batch_shape == shape else p.expand(shape)
            values[pname] = numpyro.sample(site, p.to_event(len(shape)))
        else:
            # One prior for every parameter of the node: put it on the unconstrained value.
            raw = numpyro.sample(site + ".unconstrained", p.expand(shape).to_event(len(shape)))
            values[pname] = numpyro.deterministic(site, biject_to(constraint)(raw))
    return values


def numpyro_model(scm: SCM, *, learn: Iterable[str] = (), priors: Mapping[str, Any] | None = None):
    """The numpyro model of `scm`; see `SCM.to_numpyro`.

    `priors[node]` is a numpyro distribution (a prior on every parameter of the node, placed on
    its unconstrained value) or a dict parameter name -> distribution.
    """
    priors = dict(priors or {})
    learn = set(learn) | set(priors)
    check_known(learn, scm.nodes, "learn")

    def model(data: Mapping[str, Any] | None = None, num_units: int | None = None):
        data = dict(data or {})
        if data:
            num_units = next(iter(data.values())).shape[0]
        if num_units is None:
            raise ValueError("model: pass `data` or `num_units`")
        mechanisms = {}
        for name, mech in scm.items():
            if name in learn:
                mech = mech.with_parameters(_parameter_sites(name, mech, priors.get(name)))
            mechanisms[name] = mech
        values: dict[str, jax.Array] = {}
        with numpyro.plate("units", num_units, dim=-1):
            for name, mech in mechanisms.items():
                parents = {p: values[p] for p in mech.parents}
                if isinstance(mech, NumpyroMechanism):
                    with numpyro.handlers.scope(prefix=name):
                        out = mech.call(**parents)
                    if name in data:
                        kernel = dist.Normal(out, mech.inference.obs_scale)
                        values[name] = numpyro.sample(name, kernel, obs=data[name])
                    else:
                        values[name] = numpyro.deterministic(name, out)
                else:
                    values[name] = numpyro.sample(
                        name, mech.distribution(parents, num_units), obs=data.get(name)
                    )
        return values

    return model


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What `SCM.fit` learned.

    Attributes:
      scm: the SCM with fitted parameters (posterior means for Bayesian methods).
      losses: per-step loss per unit (negative log-likelihood or negative ELBO), or None.
      samples: posterior draws of the parameters by site name (Bayesian methods), or None.
    """

    scm: SCM
    losses: np.ndarray | None = None
    samples: dict[str, jax.Array] | None = None


_METHODS = ("mle", "svi", "nuts")


def fit(
    scm: SCM,
    data: Mapping[str, Any],
    *,
    learn: Iterable[str] | None = None,
    method: str = "mle",
    priors: Mapping[str, Any] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    num_steps: int = 2000,
    num_warmup: int = 500,
    num_samples: int = 500,
    key: jax.Array | None = None,
    progress_bar: bool = True,
) -> FitResult:
    """Learn the parameters of the mechanisms of `learn` (default: all that have any).

    Args:
      data: node -> `(N, ...)` observations; nodes missing from it are treated as latent.
      method: "mle" (maximum likelihood with `optimizer`, default adam(1e-2), through numpyro
        SVI so latent noise is handled by an ELBO), "svi" (variational posterior under
        `priors`) or "nuts" (posterior draws under `priors`).
      priors: node -> prior, required for "svi" and "nuts" (see `numpyro_model`).
      key: PRNG key of the initialisation and the posterior draws (required).
    """
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    arrays, num_units = check_data(data, (), "data")
    if not arrays:
        raise ValueError(
            f"data: no observations; expected columns for the model's nodes, missing "
            f"{list(scm.nodes)}"
        )
    check_known(arrays, scm.nodes, "data")
    if num_units == 0:
        raise ValueError("data: expected at least one unit, got columns of length 0")
    for name, array in arrays.items():
        scm._check_support(name, array, f"data[{name!r}]")
    for name, value in (("num_steps", num_steps), ("num_warmup", num_warmup)):
        check_int(value, name, 1)
    check_int(num_samples, "num_samples", 1)
    if learn is None:
        learn = [n for n, m in scm.items() if m.parameters()]
    learn = list(learn)
    check_known(learn, scm.nodes, "learn")
    if method == "mle":
        if priors:
            raise ValueError("priors: maximum likelihood takes no priors; use method='svi'/'nuts'")
    else:
        missing = [n for n in learn if n not in (priors or {})]
        if missing:
            raise ValueError(f"priors: method {method!r} needs a prior for node(s) {missing}")
    if key is None:
        raise ValueError(f"key: fitting by {method!r} draws random numbers; pass a PRNG key")
    key = check_key(key)
    model = numpyro_model(scm, learn=learn if method == "mle" else (), priors=priors)

    if method == "nuts":
        mcmc = MCMC(
            NUTS(model), num_warmup=num_warmup, num_samples=num_samples, progress_bar=progress_bar
        )
        with lenient_promotion():
            mcmc.run(key, data=arrays)
        samples = mcmc.get_samples()
        return FitResult(_with_posterior_mean(scm, model, key, arrays, samples), samples=samples)

    optimizer = optax.adam(1e-2) if optimizer is None else optimizer
    guide = _guide(model, key, arrays)
    svi = SVI(model, guide, optax_to_numpyro(optimizer), Trace_ELBO())
    with lenient_promotion():
        result = svi.run(key, num_steps, data=arrays, progress_bar=progress_bar)
    losses = np.asarray(result.losses) / num_units
    if not np.isfinite(losses[-1]):
        raise FloatingPointError(
            f"fit: the loss became non-finite (last finite value "
            f"{losses[np.isfinite(losses)][-1:]}); lower the learning rate or check the data"
        )
    if method == "mle":
        fitted = _with_values(scm, learn, result.params)
        return FitResult(fitted, losses=losses)
    samples = guide.sample_posterior(key, result.params, sample_shape=(num_samples,))
    fitted = _with_posterior_mean(scm, model, key, arrays, samples)
    return FitResult(fitted, losses=losses, samples=samples)


def _guide(model, key, data):
    """AutoNormal over the latent sites, or an empty guide when everything is observed."""
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model, key)).get_trace(data=data)
    latent = [s for s in trace.values() if s["type"] == "sample" and not s["is_observed"]]
    return AutoNormal(model) if latent else (lambda *args, **kwargs: None)


def _with_values(scm: SCM, learn, values: Mapping[str, jax.Array]) -> SCM:
    """Write site values named `node.parameter` back into the mechanisms."""
    replaced = {}
    for name in learn:
        mech = scm.mechanisms[name]
        params = {p: values[f"{name}.{p}"] for p in mech.parameters() if f"{name}.{p}" in values}
        replaced[name] = mech.with_parameters(params)
    return scm.replace(**replaced)


def _with_posterior_mean(scm, model, key, data, samples) -> SCM:
    """Posterior means of the parameter sites (constrained values, via the trace)."""
    means = {k: v.mean(axis=0) for k, v in samples.items()}
    trace = numpyro.handlers.trace(
        numpyro.handlers.substitute(numpyro.handlers.seed(model, key), data=means)
    ).get_trace(data=data)
    values = {k: s["value"] for k, s in trace.items() if "." in k and s["type"] != "plate"}
    return _with_values(scm, scm.nodes, values)
