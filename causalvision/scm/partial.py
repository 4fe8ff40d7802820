"""Counterfactuals from partially observed units: missing nodes inferred with the noise.

A factual that omits nodes leaves their values, and the noise of any node with a missing
parent, unknown. The engine splits the missing nodes in two:

- *inferred*: missing nodes with an observed descendant. The observations say something about
  them, so their values (the noise sites of a `NumpyroMechanism`) are drawn from the joint
  posterior given the observed nodes, by SVI or NUTS over a numpyro model of just these nodes
  and their observed children, or by importance sampling from a proposal (discrete nodes
  and children without a density too, see `causalvision.scm.importance`). The noise of an
  inferred node, and of an observed child of one, is then abducted by its own mechanism from
  the drawn values (exact for invertible ones).
- *free*: missing nodes with no observed descendant. Their posterior is their prior given
  their parents, so their noise is drawn from its prior: exact, nothing to fit.

Observed nodes whose parents are all observed keep their own abduction (exact where the
mechanism is invertible): given the observed values it is independent of the missing ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpyro

from causalvision.scm.inference import posterior_noise
from causalvision.scm.mechanisms import Inference, Mechanism, NumpyroMechanism, Root

if TYPE_CHECKING:
    from causalvision.scm.engine import SCM

Array = jax.Array

__all__ = ["MissingPlan", "Summary", "plan_missing", "summarize"]


class Summary(NamedTuple):
    """Posterior mean and variance of one node over the sample axis, each `(N, ...)`."""

    mean: Array
    variance: Array


def summarize(values: Mapping[str, Array], axis: int = 0) -> dict[str, Summary]:
    """Mean and variance of every node's posterior draws along `axis` (the sample axis `S`
    of a query run with `num_samples`)."""
    return {n: Summary(v.mean(axis), v.var(axis)) for n, v in values.items()}


@dataclasses.dataclass(frozen=True)
class MissingPlan:
    """How the nodes of a partially observed factual get their noise (static under jit).

    Attributes:
      inferred: missing nodes with an observed descendant (posterior inference).
      free: missing nodes without one (noise from its prior).
      joint: observed nodes with an inferred parent (noise abducted per posterior draw).
    """

    inferred: tuple[str, ...]
    free: tuple[str, ...]
    joint: tuple[str, ...]


def _has_density(mech: Mechanism) -> bool:
    return isinstance(mech, NumpyroMechanism) or type(mech).distribution is not (
        Mechanism.distribution
    )


def _is_discrete(mech: Mechanism) -> bool:
    if mech.num_values() is not None:
        return True
    return isinstance(mech, Root) and bool(mech.distribution_.support.is_discrete)


def _has_likelihood(mech: Mechanism) -> bool:
    """Whether `mech.log_likelihood` is available (its own, or its density's)."""
    if type(mech).log_likelihood is not Mechanism.log_likelihood:
        return True
    return not isinstance(mech, NumpyroMechanism) and _has_density(mech)


def plan_missing(scm: SCM, observed: set[str], method: str = "svi") -> MissingPlan:
    """Split the nodes missing from `observed`; `ValueError` naming a node that can't be
    inferred by `method` (discrete under SVI/NUTS, or a density the inference needs is not
    available)."""
    missing = [n for n in scm.nodes if n not in observed]
    inferred = tuple(n for n in missing if scm.graph.descendants([n]) & observed)
    joint = tuple(
        n
        for n in scm.nodes
        if n in observed and any(p in inferred for p in scm.mechanisms[n].parents)
    )
    if method == "importance":
        _check_importance(scm, inferred, joint)
        free = tuple(n for n in missing if n not in inferred)
        return MissingPlan(inferred=inferred, free=free, joint=joint)
    for name in inferred:
        mech, seen = scm.mechanisms[name], sorted(scm.graph.descendants([name]) & observed)
        if _is_discrete(mech):
            raise ValueError(
                f"factual: node {name!r} is missing and discrete ({type(mech).__name__}), but "
                f"its observed descendant(s) {seen} make it a target of posterior inference, "
                f"which (SVI, NUTS) needs continuous values; observe node {name!r}, or infer "
                f"it by importance sampling (Inference(method='importance', proposal=...))"
            )
        if not _has_density(mech):
            raise ValueError(
                f"factual: node {name!r} is missing and its observed descendant(s) {seen} make "
                f"it a target of posterior inference, which needs its density p({name} | "
                f"parents); {type(mech).__name__} has none. Observe node {name!r}"
            )
    for name in joint:
        mech = scm.mechanisms[name]
        if not _has_density(mech):
            parents = [p for p in mech.parents if p in inferred]
            raise ValueError(
                f"factual: node {name!r} is observed but its parent(s) {parents} are missing; "
                f"inferring them needs the density p({name} | parents), and "
                f"{type(mech).__name__} has none. Observe {parents} too, or infer them by "
                f"importance sampling (Inference(method='importance', proposal=...)), which "
                f"needs only {type(mech).__name__}.log_likelihood"
            )
    free = tuple(n for n in missing if n not in inferred)
    return MissingPlan(inferred=inferred, free=free, joint=joint)


def _check_importance(scm: SCM, inferred: tuple[str, ...], joint: tuple[str, ...]) -> None:
    """Importance weights need `log_prob` of every inferred node and `log_likelihood` of
    every observed child of one."""
    for name in inferred:
        mech = scm.mechanisms[name]
        if isinstance(mech, NumpyroMechanism) or not _has_density(mech):
            raise ValueError(
                f"factual: node {name!r} is missing, and importance sampling weighs its "
                f"proposed values by their density p({name} | parents); "
                f"{type(mech).__name__} has none. Observe node {name!r}"
            )
    for name in joint:
        mech = scm.mechanisms[name]
        if not _has_likelihood(mech):
            parents = [p for p in mech.parents if p in inferred]
            raise ValueError(
                f"factual: node {name!r} is observed but its parent(s) {parents} are missing; "
                f"importance sampling weighs their proposed values by "
                f"{type(mech).__name__}.log_likelihood, which it lacks (no distribution, no "
                f"override). Observe {parents} too"
            )


def joint_model(scm: SCM, observed: Mapping[str, Array], plan: MissingPlan):
    """The numpyro model of the inferred nodes and their observed children, units in a plate.

    Sites: the value of each inferred node (named after it), the noise sites of a
    `NumpyroMechanism` scoped as `"node/site"`; observed children are observed sites (a
    `NumpyroMechanism`'s through its Gaussian kernel, as in `SCM.to_numpyro`).
    """
    num_units = next(iter(observed.values())).shape[0]
    nodes = [n for n in scm.nodes if n in plan.inferred or n in plan.joint]

    def model() -> None:
        values = dict(observed)
        with numpyro.plate("units", num_units, dim=-1):
            for name in nodes:
                mech = scm.mechanisms[name]
                parents = {p: values[p] for p in mech.parents}
                if isinstance(mech, NumpyroMechanism):
                    with numpyro.handlers.scope(prefix=name):
                        out = mech.call(**parents)
                    if name in observed:
                        kernel = numpyro.distributions.Normal(out, mech.inference.obs_scale)
                        numpyro.sample(name, kernel, obs=observed[name])
                    else:
                        values[name] = out
                    continue
                law = mech.distribution(parents, num_units)
                if name not in observed and law.support.is_discrete:
                    raise ValueError(
                        f"factual: node {name!r} is missing and discrete; posterior inference "
                        f"needs continuous values; observe node {name!r}"
                    )
                values[name] = numpyro.sample(name, law, obs=observed.get(name))

    return model


def _scoped(sites: Mapping[str, Array], name: str) -> dict[str, Array]:
    prefix = f"{name}/"
    return {s.removeprefix(prefix): v for s, v in sites.items() if s.startswith(prefix)}


def complete(
    scm: SCM,
    observed: Mapping[str, Array],
    sites: Mapping[str, Array],
    noise: Mapping[str, Any],
    key: Array,
    plan: MissingPlan,
) -> tuple[dict[str, Array], dict[str, Any]]:
    """One posterior draw of the completed factual values and the noise that produces them.

    `sites` is one draw of the joint model's latent sites, `noise` the noise already abducted
    from fully observed families; missing and joint nodes' noise is added here.
    """
    num_units = next(iter(observed.values())).shape[0]
    values: dict[str, Array] = {}
    noise = dict(noise)
    keys = jax.random.split(key, len(scm.nodes))
    for (name, mech), k in zip(scm.items(), keys, strict=True):
        parents = {p: values[p] for p in mech.parents}
        if name in plan.free:
            noise[name] = mech.sample_noise(k, num_units)
            values[name] = mech.predict(noise[name], parents)
        elif name in plan.inferred and isinstance(mech, NumpyroMechanism):
            noise[name] = _scoped(sites, name)
            values[name] = mech.predict(noise[name], parents)
        elif name in plan.inferred:
            values[name] = sites[name]
            noise[name] = mech.abduct(values[name], parents, k)
        else:
            values[name] = observed[name]
            if name in plan.joint:
                if isinstance(mech, NumpyroMechanism):
                    noise[name] = _scoped(sites, name)
                else:
                    noise[name] = mech.abduct(values[name], parents, k)
    return values, noise


def infer_sites(
    scm: SCM,
    observed: Mapping[str, Array],
    key: Array,
    plan: MissingPlan,
    settings: Inference,
    num_samples: int | None,
) -> dict[str, Array]:
    """Posterior draws of the joint model's latent sites (`{}` when nothing is inferred)."""
    if not plan.inferred:
        return {}
    return posterior_noise(joint_model(scm, observed, plan), key, num_samples, settings)
