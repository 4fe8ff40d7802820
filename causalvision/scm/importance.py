"""Missing nodes of a factual by self-normalised importance sampling from a proposal.

A proposal `q(missing | observed)`, typically amortised (an attribute predictor reading an
image's parents off the image), draws K candidate values of the missing nodes per unit. Each
draw is weighted by how well it explains the observations under the SCM itself:

    log w_k = sum over missing m of   log p(m_k | pa(m)_k)          (`Mechanism.log_prob`)
            + sum over observed children c of a missing node
                                      log p^(c | pa(c)_k)           (`Mechanism.log_likelihood`)
            - log q(missing_k | observed)

where p^ is the child's density, or an image model's stand-in for it. Normalised over the K
draws of a unit, the weights make them draws from the posterior p(missing | observed):
consistent as K grows, and exact for any K when q is the posterior (all weights 1/K).
Resampling gives the posterior draws that `causalvision.scm.partial.complete` takes, so the
noise of every node is then abducted under the drawn values and the query runs through the
one engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.scm.mechanisms import Inference
from causalvision.scm.partial import MissingPlan, plan_missing
from causalvision.validation import check_key

if TYPE_CHECKING:
    from causalvision.scm.engine import SCM

Array = jax.Array

__all__ = ["ImportanceDraws", "importance_posterior"]


class ImportanceDraws(NamedTuple):
    """Weighted posterior draws of the missing nodes of a factual.

    Attributes:
      values: node -> its K proposals `(K, N, ...)` (every missing node with an observed
        descendant).
      log_weights: `(K, N)`, self-normalised over the K proposals of each unit
        (`logsumexp(log_weights, axis=0) == 0`).
      ess: `(N,)`, the effective sample size `1 / sum_k w_k^2` of each unit, in [1, K].
    """

    values: dict[str, Array]
    log_weights: Array
    ess: Array


def _num_units(observed: Mapping[str, Array]) -> int:
    return next(iter(observed.values())).shape[0]


def propose(
    scm: SCM, observed: Mapping[str, Array], key: Array, plan: MissingPlan, settings: Inference
) -> tuple[dict[str, Array], Array]:
    """The proposal's draws `(K, N, ...)` of the inferred nodes and their `log_q` `(K, N)`,
    checked: names, shapes and dtypes are static, so this also runs under jit."""
    k, n = settings.num_proposals, _num_units(observed)
    out = settings.proposal(dict(observed), key, k)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Mapping)):
        raise ValueError(
            f"inference.proposal: expected (values: dict node -> (K, N, ...), log_q: (K, N)), "
            f"got {type(out).__name__}"
        )
    values, log_q = dict(out[0]), jnp.asarray(out[1])
    uncovered = [m for m in plan.inferred if m not in values]
    if uncovered:
        raise ValueError(
            f"inference.proposal: returned no values for missing node(s) {uncovered}, whose "
            f"observed descendants make them targets of inference; propose them too, or "
            f"observe them"
        )
    extra = sorted(set(values) - set(plan.inferred))
    if extra:
        raise ValueError(
            f"inference.proposal: returned node(s) {extra}, which the query does not infer "
            f"(it infers {list(plan.inferred)}: the missing nodes with an observed descendant)"
        )
    if log_q.shape != (k, n) or not jnp.issubdtype(log_q.dtype, jnp.floating):
        raise ValueError(
            f"inference.proposal: log_q: expected floats of shape (K, N) = {(k, n)}, got "
            f"{log_q.dtype} of shape {log_q.shape}"
        )
    current: dict[str, Array] = dict(observed)
    checked: dict[str, Array] = {}
    for name in plan.inferred:
        mech = scm.mechanisms[name]
        parents = {p: current[p] for p in mech.parents}
        node = jax.eval_shape(lambda m=mech, pa=parents: m.sample(jax.random.key(0), pa, n))
        value = jnp.asarray(values[name])
        if value.shape != (k, *node.shape):
            raise ValueError(
                f"inference.proposal: values[{name!r}]: expected shape (K, N, ...) = "
                f"{(k, *node.shape)}, got {value.shape}"
            )
        if jnp.issubdtype(value.dtype, jnp.inexact) and not jnp.issubdtype(node.dtype, jnp.inexact):
            raise ValueError(
                f"inference.proposal: values[{name!r}]: node {name!r} is discrete ({node.dtype}),"
                f" got {value.dtype}; propose its values as integers"
            )
        checked[name] = value.astype(node.dtype)
        current[name] = checked[name][0]
    return checked, log_q.astype(jnp.float32)


def log_weights(
    scm: SCM,
    observed: Mapping[str, Array],
    values: Mapping[str, Array],
    log_q: Array,
    plan: MissingPlan,
) -> Array:
    """Unnormalised log importance weights `(K, N)` of proposed `values` `(K, N, ...)`."""

    def one(proposed: Mapping[str, Array], log_q: Array) -> Array:
        current = {**observed, **proposed}
        total = -log_q
        for name, mech in scm.items():
            parents = {p: current[p] for p in mech.parents}
            if name in plan.inferred:
                total = total + mech.log_prob(current[name], parents).astype(jnp.float32)
            elif name in plan.joint:
                total = total + mech.log_likelihood(current[name], parents).astype(jnp.float32)
        return total

    return jax.vmap(one)(dict(values), log_q)


def _resample(values: Mapping[str, Array], indices: Array) -> dict[str, Array]:
    """Pick proposals per unit: `values` `(K, N, ...)`, `indices` `(S, N)` or `(N,)` ->
    `(S, N, ...)` or `(N, ...)`."""
    per_unit = jnp.moveaxis(indices, -1, 0)  # (N, S) or (N,)

    def pick(value: Array) -> Array:
        picked = jax.vmap(lambda v, i: v[i])(jnp.moveaxis(value, 1, 0), per_unit)
        return picked if indices.ndim == 1 else jnp.moveaxis(picked, 0, 1)

    return {name: pick(value) for name, value in values.items()}


@jax.jit(static_argnames=("plan", "settings", "num_samples"))
def _importance_jit(scm, observed, key, *, plan, settings, num_samples):
    key_propose, key_resample = jax.random.split(key)
    values, log_q = propose(scm, observed, key_propose, plan, settings)
    weights = log_weights(scm, observed, values, log_q, plan)
    normalised = weights - jax.nn.logsumexp(weights, axis=0, keepdims=True)
    ess = 1.0 / jnp.sum(jnp.exp(2.0 * normalised), axis=0)
    n = _num_units(observed)
    shape = (n,) if num_samples is None else (num_samples, n)
    indices = jax.random.categorical(key_resample, weights.T, shape=shape)
    draws = ImportanceDraws(values, normalised, ess)
    return draws, weights, _resample(values, indices)


def _check_weights(weights: Array) -> None:
    """Every unit needs a finite weight and none may be NaN or +inf (concrete weights only)."""
    if isinstance(weights, jax.core.Tracer):
        return
    w = np.asarray(weights)
    bad = np.isnan(w) | (w == np.inf)
    if bad.any():
        units = sorted(set(np.nonzero(bad)[1].tolist()))[:5]
        raise ValueError(
            f"inference.proposal: non-finite importance weights (NaN or +inf) for unit(s) "
            f"{units}: log_q or a log density of the proposed values is NaN, or log_q is -inf "
            f"for a value the proposal drew"
        )
    dead = ~np.isfinite(w).any(axis=0)
    if dead.any():
        units = np.nonzero(dead)[0][:5].tolist()
        raise ValueError(
            f"inference.proposal: every proposal of unit(s) {units} has weight zero (outside "
            f"the support of a node, or of density zero under the SCM); widen the proposal or "
            f"raise num_proposals"
        )


def importance_sites(
    scm: SCM,
    observed: Mapping[str, Array],
    key: Array,
    plan: MissingPlan,
    settings: Inference,
    num_samples: int | None,
) -> dict[str, Array]:
    """Resampled posterior draws of the inferred nodes, `(N, ...)` or `(S, N, ...)`, the
    form `causalvision.scm.partial.complete` takes; weights checked where concrete."""
    if not plan.inferred:
        return {}
    _, weights, sites = _importance_jit(
        scm, observed, key, plan=plan, settings=settings, num_samples=num_samples
    )
    _check_weights(weights)
    return sites


def importance_posterior(
    scm: SCM, factual: Mapping[str, Any], key: Array, inference: Inference
) -> ImportanceDraws:
    """Weighted posterior draws of the nodes `factual` omits (see the module docstring).

    Args:
      scm: the model.
      factual: observed values `(N, ...)` of some nodes.
      key: PRNG key of the proposal.
      inference: `Inference(method="importance", proposal=..., num_proposals=K)`.

    Returns:
      `ImportanceDraws`: the K proposals `(K, N, ...)` of every missing node with an observed
      descendant, their self-normalised log weights `(K, N)` and each unit's effective
      sample size. `SCM.counterfactual(..., inference=inference)` resamples the same draws.
    """
    if not isinstance(inference, Inference) or inference.method != "importance":
        raise ValueError(
            f"inference: expected Inference(method='importance', proposal=...), got {inference!r}"
        )
    key = check_key(key)
    if not isinstance(factual, Mapping):
        raise ValueError(f"factual: expected a dict node -> values, got {type(factual).__name__}")
    missing = [n for n in scm.nodes if n not in factual]
    observed, _ = scm._check_values(factual, "factual", partial=True)
    if not observed:
        raise ValueError("factual: observe at least one node (it sets the number of units)")
    plan = plan_missing(scm, set(observed), "importance")
    if not plan.inferred:
        raise ValueError(
            f"factual: no missing node has an observed descendant (missing: {missing}); "
            f"their posterior is their prior, with nothing to weigh"
        )
    draws, weights, _ = _importance_jit(
        scm, observed, key, plan=plan, settings=inference, num_samples=None
    )
    _check_weights(weights)
    return draws
