"""The SCM engine: sampling, interventions, counterfactual worlds and effects.

Written once against the Mechanism protocol; it never knows which kind of mechanism it drives.
Every query is a pure, jit-compiled function of (mechanisms, data, PRNG key).

Inputs are checked at the public boundary, on concrete values: factual data and intervention
values must be finite and inside their node's support, keys must be PRNG keys. Shift results
are checked once computed. Under an outer `jax.jit` values are abstract and only shapes and
dtypes are checked (see `SCM.propagate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.graph import CausalGraph
from causalvision.scm._validation import as_node_list, check_data, check_finite, check_known
from causalvision.scm.estimate import Estimate, mean_and_stderr
from causalvision.scm.importance import importance_sites
from causalvision.scm.mechanisms import Inference, Mechanism
from causalvision.scm.partial import MissingPlan, complete, infer_sites, plan_missing
from causalvision.validation import check_int, check_key

Array = jax.Array
Values = dict[str, Array]

__all__ = ["SCM", "WorldRef", "from_world"]


@dataclasses.dataclass(frozen=True)
class WorldRef:
    """An intervention value taken from another world of the same query (nested counterfactuals).

    `{"T": 1, "M": from_world("control", "M")}` sets M to the value it takes, unit by unit, in
    the world named "control": the building block of natural direct and indirect effects.
    """

    world: str
    node: str


def from_world(world: str, node: str) -> WorldRef:
    """Refer to `node`'s value in the world named `world` (see `SCM.multi_world`)."""
    return WorldRef(world, node)


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


@jax.tree_util.register_pytree_node_class
class SCM:
    """A structural causal model: one Mechanism per node, the graph derived from their parents.

    Args:
      mechanisms: node name -> Mechanism (e.g. `Root`, `LinearGaussian`, `AdditiveNoise`,
        `Categorical`, `NumpyroMechanism`, or a deep image mechanism).
      latent: nodes that are never observed in data (used by identification).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpyro.distributions as dist
      >>> from causalvision.scm import SCM, LinearGaussian, Root
      >>> scm = SCM({
      ...     "Z": Root(dist.Normal(0.0, 1.0)),
      ...     "X": LinearGaussian(["Z"], weights=[1.0]),  # X = Z + U_X
      ...     "Y": LinearGaussian(["X", "Z"], weights=[2.0, -1.0]),  # Y = 2X - Z + U_Y
      ... })
      >>> unit = {"Z": 1.0, "X": 2.0, "Y": 3.0}  # one unit: U_X = 1, U_Y = 3 - 4 + 1 = 0
      >>> factual = {node: jnp.array([value], jnp.float32) for node, value in unit.items()}
      >>> cf = scm.counterfactual(factual, do={"X": 0.0})  # Y = 2·0 - 1 + U_Y
      >>> round(float(cf["Y"][0]), 3)
      -1.0
    """

    def __init__(self, mechanisms: Mapping[str, Mechanism], *, latent: Iterable[str] = ()):
        if not isinstance(mechanisms, Mapping) or not mechanisms:
            raise ValueError("SCM: `mechanisms` must be a non-empty dict of node -> Mechanism")
        for name, mech in mechanisms.items():
            if not isinstance(mech, Mechanism):
                raise TypeError(f"SCM: node {name!r} needs a Mechanism, got {type(mech).__name__}")
            check_known(mech.parents, mechanisms, f"SCM: parents of node {name!r}")
        for mech in mechanisms.values():
            mech.check_parents({p: mechanisms[p] for p in mech.parents})
        edges = [(p, name) for name, mech in mechanisms.items() for p in mech.parents]
        self.graph = CausalGraph(edges, nodes=list(mechanisms), latent=latent)
        self.mechanisms = {name: mechanisms[name] for name in self.graph.nodes}

    # Pytree: mechanisms are the children; the graph is structure.
    def tree_flatten(self):
        return tuple(self.mechanisms.values()), (tuple(self.mechanisms), self.graph)

    @classmethod
    def tree_unflatten(cls, aux, children):
        names, graph = aux
        scm = object.__new__(cls)
        scm.graph = graph
        scm.mechanisms = dict(zip(names, children, strict=True))
        return scm

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node names in topological order."""
        return tuple(self.mechanisms)

    def __repr__(self) -> str:
        lines = [f"  {n} := {type(m).__name__}({', '.join(m.parents)})" for n, m in self.items()]
        return "SCM(\n" + "\n".join(lines) + "\n)"

    def items(self):
        return self.mechanisms.items()

    def replace(self, **mechanisms: Mechanism) -> SCM:
        """A copy with some mechanisms swapped; the graph is rebuilt from their parents."""
        check_known(mechanisms, self.nodes, "SCM.replace")
        return SCM({**self.mechanisms, **mechanisms}, latent=self.graph.latent)

    # ------------------------------------------------------------------------------------------
    # Validation at the public boundary.

    def _check_do(self, do: Mapping[str, Any] | None) -> dict[str, Any]:
        if do is None:
            return {}
        if not isinstance(do, Mapping):
            raise ValueError(f"do: expected a dict node -> intervention value, got {do!r}")
        do = dict(do)
        check_known(do, self.nodes, "do")
        for name, value in do.items():
            self._check_intervention(name, value, f"do[{name!r}]")
        return do

    def _check_intervention(self, name: str, value: Any, argument: str) -> None:
        """One intervention value: a finite number or array in the node's support, a shift
        function (checked once applied) or a `from_world` reference."""
        if value is None:
            raise ValueError(
                f"{argument}: expected an intervention value for node {name!r} (a number, one "
                f"value per unit, a shift function or from_world(...)), got None; leave the "
                f"node out of `do` not to intervene on it"
            )
        if isinstance(value, WorldRef):
            check_known([value.node], self.nodes, f"{argument}: from_world")
            return
        if not (callable(value) or _is_traced(value)):
            self._check_value(name, value, argument)

    def _check_value(self, name: str, value: Any, argument: str) -> None:
        """A concrete value of node `name`: finite numbers (or bools) in its support."""
        try:
            array = np.asarray(value)
        except ValueError:  # ragged nested lists
            array = np.asarray(None)
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"{argument}: expected a number or an array of numbers for node {name!r}, "
                f"got {value!r}"
            )
        check_finite({argument: array})
        self._check_support(name, np.atleast_1d(array), argument)

    def _check_support(self, name: str, value: Any, argument: str, what: str = "") -> None:
        """Raise `ValueError` if concrete `value`s of node `name` lie outside its support."""
        mech = self.mechanisms[name]
        ok = mech.in_support(value)
        if ok is not None and not ok.all():
            bad = np.asarray(value)[~ok].ravel()[:3].tolist()
            support = mech.describe_support()
            support = f" ({support})" if support else ""
            raise ValueError(
                f"{argument}: {what}{int((~ok).sum())} value(s) outside the support of node "
                f"{name!r}{support}, e.g. {bad}"
            )

    def _check_shifts(self, do: Mapping[str, Any], values: Values) -> None:
        """Shift results, known only once computed, must be finite and in their support.

        Under an outer `jax.jit` they are abstract and pass unchecked (see `propagate`).
        """
        shifted = {n: values[n] for n, v in do.items() if callable(v) and not _is_traced(values[n])}
        check_finite({f"do[{n!r}]": v for n, v in shifted.items()}, "the shift returned")
        for name, value in shifted.items():
            self._check_support(name, value, f"do[{name!r}]", "the shift moved ")

    def _check_values(
        self, values: Mapping[str, Any], argument: str, *, partial: bool = False
    ) -> tuple[Values, int]:
        arrays, size = check_data(values, () if partial else self.nodes, argument)
        check_known(arrays, self.nodes, argument)
        for name, array in arrays.items():
            if not _is_traced(array):
                self._check_support(name, array, f"{argument}[{name!r}]")
        return arrays, size

    def _require_key(self, key: Array | None, nodes: Iterable[str], query: str) -> Array:
        if key is not None:
            return check_key(key)
        stochastic = [n for n in nodes if not self.mechanisms[n].exact_abduction]
        if key is None and stochastic:
            raise ValueError(
                f"{query}: nodes {stochastic} abduct their noise stochastically (posterior "
                f"draws); pass a PRNG `key`"
            )
        # With every abduction exact no draw is made; the compiled query still takes a key.
        return jax.random.key(0)

    def _missing(self, factual: Any, inference: Inference | None) -> list[str]:
        """Nodes `factual` omits; refused unless `inference` is given or all are latent."""
        if inference is not None and not isinstance(inference, Inference):
            raise TypeError(f"inference: expected an Inference, got {inference!r}")
        if not isinstance(factual, Mapping):
            return []  # `check_data` says what is wrong
        missing = [n for n in self.nodes if n not in factual]
        if missing and inference is None and not set(missing) <= set(self.graph.latent):
            raise ValueError(
                f"factual: missing value(s) for node(s) {missing}; observe them, or pass "
                f"`inference=Inference(...)` to infer them (and the noise they hide) from the "
                f"observed nodes by posterior inference (nodes declared `latent` are inferred "
                f"by default)"
            )
        return missing

    # ------------------------------------------------------------------------------------------
    # The three steps every query is made of.

    def sample_noise(self, key: Array, num_units: int) -> dict[str, Any]:
        """Exogenous noise of every node from its prior, each with a leading unit axis."""
        keys = jax.random.split(key, len(self.nodes))
        return {
            n: m.sample_noise(k, num_units) for (n, m), k in zip(self.items(), keys, strict=True)
        }

    def abduct(
        self,
        factual: Mapping[str, Array],
        key: Array | None = None,
        *,
        nodes: Iterable[str] | None = None,
        num_samples: int | None = None,
    ) -> dict[str, Any]:
        """Noise of `nodes` (default: all) consistent with fully observed `factual` units.

        Noises of different nodes are independent a priori, so given every node's value the
        posterior factorises over nodes and each mechanism abducts its own noise.
        With `num_samples`, every noise gets a leading axis of posterior draws.
        """
        nodes = self.nodes if nodes is None else tuple(as_node_list(nodes, "nodes"))
        check_known(nodes, self.nodes, "nodes")
        if num_samples is not None:
            check_int(num_samples, "num_samples", 1)
        # Each node's noise needs its own value and its parents'; values are checked where
        # concrete (under jit, inside the compiled queries, only their structure is).
        needed = {p for n in nodes for p in (n, *self.mechanisms[n].parents)}
        factual, _ = check_data(factual, [n for n in self.nodes if n in needed], "factual")
        for name in needed:
            if not _is_traced(factual[name]):
                self._check_support(name, factual[name], f"factual[{name!r}]")
        keys = jax.random.split(self._require_key(key, nodes, "abduct"), len(self.nodes))
        noise = {}
        for (name, mech), k in zip(self.items(), keys, strict=True):
            if name in nodes:
                parents = {p: factual[p] for p in mech.parents}
                noise[name] = mech.abduct(factual[name], parents, k, num_samples)
        return noise

    def propagate(
        self,
        noise: Mapping[str, Any],
        do: Mapping[str, Any] | None = None,
        *,
        fixed: Mapping[str, Array] | None = None,
        num_units: int | None = None,
    ) -> Values:
        """Push noise through the structural equations under the intervention `do`.

        `do` values are constants (broadcast to every unit), arrays with one value per unit,
        or functions of the pre-intervention value (shift interventions) that return the
        node's shape. Nodes in `fixed` keep the given values (used for nodes no intervention
        can reach). A node set to a constant needs no noise; `num_units` then gives the batch
        size if nothing else does.

        Shapes and dtypes are checked here, also under jit. Values are not: the public
        queries check intervention values before, and shift results after, the compiled
        program. Under an outer `jax.jit` nothing is concrete, so a shift that leaves a node's
        support goes unnoticed and yields values outside it (NaN or -inf densities, category
        indices clipped by table lookups); run such queries unjitted to have them checked.
        """
        do, fixed = do or {}, fixed or {}
        values: Values = {}
        for name, mech in self.items():
            if name in fixed and name not in do:
                values[name] = fixed[name]
                continue
            parents = {p: values[p] for p in mech.parents}
            if name not in do:
                values[name] = mech.predict(noise[name], parents)
            elif callable(do[name]):
                values[name] = _apply_shift(name, do[name], mech.predict(noise[name], parents))
            else:
                if num_units is None:
                    num_units = jax.tree.leaves((noise, values, fixed))[0].shape[0]
                shape = _value_shape(mech, noise.get(name), parents, num_units)
                values[name] = _set_value(name, do[name], shape)
        return values

    # ------------------------------------------------------------------------------------------
    # Observational and interventional queries.

    def sample(self, key: Array, num_samples: int, do: Mapping[str, Any] | None = None) -> Values:
        """`num_samples` units from the observational (or, with `do`, interventional) law."""
        key = check_key(key)
        do = self._check_do(do)
        check_int(num_samples, "num_samples", 1)
        constants, shifts = _split_do(do)
        values = _sample_jit(self, key, constants, num_samples=num_samples, shifts=shifts)
        self._check_shifts(do, values)
        return values

    def log_prob(self, values: Mapping[str, Array]) -> Array:
        """Joint log density of fully observed units, `(N,)` (mechanisms with a density)."""
        values, _ = self._check_values(values, "values")
        return _log_prob_jit(self, values)

    # ------------------------------------------------------------------------------------------
    # Counterfactual queries.

    def counterfactual(
        self,
        factual: Mapping[str, Array],
        do: Mapping[str, Any],
        key: Array | None = None,
        *,
        num_samples: int | None = None,
        inference: Inference | None = None,
    ) -> Values:
        """Abduction-action-prediction for every unit of `factual`.

        Args:
          factual: observed values, each with a leading unit axis `(N, ...)`: every node, or
            (with `inference`, or for nodes declared `latent`) some of them.
          do: the intervention (see `propagate`); `WorldRef` values are not allowed here.
          key: needed when a mechanism abducts by posterior draws (categorical, inference)
            and whenever `factual` omits nodes.
          num_samples: posterior draws per unit; adds a leading axis `(S, N, ...)`.
          inference: how omitted nodes are inferred (SVI, NUTS, or importance sampling
            from a proposal such as an attribute predictor, see `Inference`); default
            `Inference()`. See `causalvision.scm.partial` and `causalvision.scm.importance`.
        Returns:
          The counterfactual value of every node. Nodes that no intervened node can reach
          keep their factual values (observed nodes) or posterior draws (omitted ones).
        """
        worlds = self.multi_world(
            {"counterfactual": do},
            factual=factual,
            key=key,
            num_samples=num_samples,
            inference=inference,
        )
        return worlds["counterfactual"]

    def twin_world(
        self,
        do: Mapping[str, Any],
        *,
        factual: Mapping[str, Array] | None = None,
        key: Array | None = None,
        num_samples: int | None = None,
        inference: Inference | None = None,
    ) -> tuple[Values, Values]:
        """The factual and the counterfactual world side by side, sharing their noise.

        Without `factual`, `num_samples` units are drawn from the prior: the joint law of
        (X, X_do) behind probabilities of necessity and sufficiency. With `factual`, the
        noise is abducted from it (and `num_samples` counts posterior draws per unit); nodes
        it omits are inferred (see `counterfactual`) and the factual world holds their draws.
        """
        worlds = self.multi_world(
            {"counterfactual": do},
            factual=factual,
            key=key,
            num_samples=num_samples,
            inference=inference,
        )
        return worlds["factual"], worlds["counterfactual"]

    def multi_world(
        self,
        worlds: Mapping[str, Mapping[str, Any]],
        *,
        factual: Mapping[str, Array] | None = None,
        key: Array | None = None,
        num_samples: int | None = None,
        inference: Inference | None = None,
    ) -> dict[str, Values]:
        """Several intervened worlds over the same units and the same noise.

        A world's `do` may take values from another world with `from_world(name, node)`:
        nested counterfactuals such as `Y(T=1, M(T=0))`. Returns every world plus "factual"
        (the given units as they are, or the units drawn from the prior). A `factual` that
        omits nodes is completed by posterior draws (see `counterfactual`); its "factual"
        world then holds every node, with the sample axis when `num_samples` is given.
        """
        if not isinstance(worlds, Mapping) or "factual" in worlds:
            raise ValueError("worlds: expected a dict name -> do, with no world named 'factual'")
        worlds = {name: self._check_do(do) for name, do in worlds.items()}
        order = _world_order(worlds)
        intervened = {n for do in worlds.values() for n in do}
        if factual is None:
            if num_samples is None or key is None:
                raise ValueError("multi_world: without `factual`, pass `key` and `num_samples`")
            key = check_key(key)
            check_int(num_samples, "num_samples", 1)
            results = _prior_worlds_jit(self, key, worlds, order=order, num_units=num_samples)
            for name, do in worlds.items():
                self._check_shifts(do, results[name])
            return results
        missing = self._missing(factual, inference)
        factual, _ = self._check_values(factual, "factual", partial=bool(missing))
        if num_samples is not None:
            check_int(num_samples, "num_samples", 1)
        reached = set(self.graph.descendants(intervened)) | intervened if intervened else set()
        # A node set to a value in every world never uses its own noise: skip its abduction.
        overridden = {
            n for n in intervened if all(n in do and not callable(do[n]) for do in worlds.values())
        }
        if missing:
            return self._partial_worlds(
                worlds, order, factual, missing, key, num_samples, inference or Inference(),
                reached=reached, overridden=overridden,
            )  # fmt: skip
        to_abduct = tuple(n for n in self.nodes if n in reached and n not in overridden)
        key = self._require_key(key, to_abduct, "counterfactual")
        computed = _posterior_worlds_jit(
            self, factual, key, worlds,
            order=order, reached=tuple(n for n in self.nodes if n in reached),
            to_abduct=to_abduct, num_samples=num_samples,
        )  # fmt: skip
        # Unreached nodes keep their factual values; they never enter the compiled program.
        unreached = {n: factual[n] for n in self.nodes if n not in reached}
        if num_samples is not None:
            unreached = {
                n: jnp.broadcast_to(v, (num_samples, *v.shape)) for n, v in unreached.items()
            }
        merged = {
            world: {n: values[n] if n in values else unreached[n] for n in self.nodes}
            for world, values in computed.items()
        }
        for name, do in worlds.items():
            self._check_shifts(do, merged[name])
        return {"factual": factual, **merged}

    def _partial_worlds(
        self,
        worlds: dict[str, dict[str, Any]],
        order: tuple[str, ...],
        observed: Values,
        missing: list[str],
        key: Array | None,
        num_samples: int | None,
        settings: Inference,
        *,
        reached: set[str],
        overridden: set[str],
    ) -> dict[str, Values]:
        """`multi_world` for a factual that omits `missing` (see `causalvision.scm.partial`)."""
        if not observed:
            raise ValueError("factual: observe at least one node (it sets the number of units)")
        if key is None:
            raise ValueError(
                f"counterfactual: factual omits node(s) {missing}, whose values and noise are "
                f"posterior draws; pass a PRNG `key`"
            )
        key = check_key(key)
        plan = plan_missing(self, set(observed), settings.method)
        sites = None  # SVI and NUTS infer them inside the compiled query
        if settings.method == "importance":
            key, key_sites = jax.random.split(key)
            sites = importance_sites(self, observed, key_sites, plan, settings, num_samples)
        # Observed nodes with observed parents abduct their own noise, as with full data.
        own = tuple(
            n
            for n in self.nodes
            if n in observed and n not in plan.joint and n in reached and n not in overridden
        )
        results = _partial_worlds_jit(
            self, observed, key, worlds, sites,
            order=order, reached=tuple(n for n in self.nodes if n in reached), own=own,
            plan=plan, settings=settings, num_samples=num_samples,
        )  # fmt: skip
        for name, do in worlds.items():
            self._check_shifts(do, results[name])
        return results

    # ------------------------------------------------------------------------------------------
    # Effects, as Monte Carlo estimates over units drawn from the prior.

    def ate(
        self,
        key: Array,
        treatment: str,
        outcome: str,
        value: Any,
        baseline: Any,
        *,
        num_samples: int = 10_000,
    ) -> Estimate:
        """Average treatment effect `E[Y | do(T=value)] - E[Y | do(T=baseline)]`.

        Both arms share their noise (common random numbers), so the standard error is that of
        the unit-level differences.
        """
        key = self._check_effect(key, treatment, outcome, value, baseline, num_samples)
        worlds = self.multi_world(
            {"treated": {treatment: value}, "control": {treatment: baseline}},
            key=key,
            num_samples=num_samples,
        )
        return mean_and_stderr(worlds["treated"][outcome] - worlds["control"][outcome])

    def te(
        self,
        key: Array,
        treatment: str,
        outcome: str,
        value: Any,
        baseline: Any,
        *,
        num_samples: int = 10_000,
    ) -> Estimate:
        """Total effect of moving `treatment` from `baseline` to `value` (equals `ate`)."""
        return self.ate(key, treatment, outcome, value, baseline, num_samples=num_samples)

    def nde(
        self,
        key: Array,
        treatment: str,
        outcome: str,
        value: Any,
        baseline: Any,
        *,
        mediators: Iterable[str] | None = None,
        num_samples: int = 10_000,
    ) -> Estimate:
        """Natural direct effect `E[Y(T=value, M(T=baseline))] - E[Y(T=baseline)]`.

        `mediators` default to every node on a directed path from treatment to outcome.
        """
        key = self._check_effect(key, treatment, outcome, value, baseline, num_samples)
        mediators = self._mediators(treatment, outcome, mediators)
        worlds = self.multi_world(
            {
                "control": {treatment: baseline},
                "direct": {treatment: value, **{m: from_world("control", m) for m in mediators}},
            },
            key=key,
            num_samples=num_samples,
        )
        return mean_and_stderr(worlds["direct"][outcome] - worlds["control"][outcome])

    def nie(
        self,
        key: Array,
        treatment: str,
        outcome: str,
        value: Any,
        baseline: Any,
        *,
        mediators: Iterable[str] | None = None,
        num_samples: int = 10_000,
    ) -> Estimate:
        """Natural indirect effect `E[Y(T=baseline, M(T=value))] - E[Y(T=baseline)]`."""
        key = self._check_effect(key, treatment, outcome, value, baseline, num_samples)
        mediators = self._mediators(treatment, outcome, mediators)
        worlds = self.multi_world(
            {
                "control": {treatment: baseline},
                "treated": {treatment: value},
                "indirect": {
                    treatment: baseline,
                    **{m: from_world("treated", m) for m in mediators},
                },
            },
            key=key,
            num_samples=num_samples,
        )
        return mean_and_stderr(worlds["indirect"][outcome] - worlds["control"][outcome])

    def cate(
        self,
        key: Array,
        treatment: str,
        outcome: str,
        value: Any,
        baseline: Any,
        given: Mapping[str, Any],
        *,
        num_samples: int = 10_000,
        inference: Inference | None = None,
    ) -> Estimate:
        """Conditional average treatment effect `E[Y_value - Y_baseline | given]`.

        `given` maps nodes to observed values: scalars (one condition) or arrays `(G,)` (one
        estimate per condition). Closed under parents (every parent of a given node is
        given), the noise posterior is exact: the given nodes' noise is abducted and every
        other node's noise is drawn from its prior. Otherwise pass `inference` (see
        `Inference`): the missing parents and the noise they hide are inferred from `given`
        as for a partially observed factual (`counterfactual`), and the estimate averages
        `num_samples` posterior draws per condition (its standard error treats them as
        independent, which NUTS draws are only approximately).
        """
        for argument, arm in (("value", value), ("baseline", baseline)):
            if callable(arm) or isinstance(arm, WorldRef):
                raise ValueError(f"cate: `{argument}` must be a treatment value, got {arm!r}")
        key = self._check_effect(key, treatment, outcome, value, baseline, num_samples)
        if not isinstance(given, Mapping) or not given:
            raise ValueError("given: expected a non-empty dict node -> value")
        check_known(given, self.nodes, "given")
        if inference is not None and not isinstance(inference, Inference):
            raise TypeError(f"inference: expected an Inference, got {inference!r}")
        open_families = {
            name: [p for p in self.mechanisms[name].parents if p not in given] for name in given
        }
        open_families = {name: parents for name, parents in open_families.items() if parents}
        if open_families and inference is None:
            name, missing = next(iter(open_families.items()))
            raise ValueError(
                f"given: node {name!r} is conditioned on but its parent(s) {missing} are not; "
                f"condition on every parent too (exact abduction needs them), or pass "
                f"`inference=Inference(...)` to infer them from `given`"
            )
        for name, condition in given.items():
            self._check_value(name, condition, f"given[{name!r}]")
        given = {n: jnp.asarray(v) for n, v in given.items()}
        batched = {n: v.ndim > 0 for n, v in given.items()}
        num_conditions = {int(v.shape[0]) for n, v in given.items() if batched[n]}
        if len(num_conditions) > 1:
            raise ValueError(f"given: arrays of conditions differ in length {num_conditions}")
        arms = ({treatment: value}, {treatment: baseline})
        if open_families:
            # Each condition is a partially observed unit; its effect averages posterior draws.
            num_units = num_conditions.pop() if num_conditions else 1
            units = {n: jnp.broadcast_to(v, (num_units,)) for n, v in given.items()}
            worlds = self.multi_world(
                {"treated": arms[0], "control": arms[1]},
                factual=units,
                key=key,
                num_samples=num_samples,
                inference=inference,
            )
            effect = mean_and_stderr(worlds["treated"][outcome] - worlds["control"][outcome])
            return effect if any(batched.values()) else jax.tree.map(lambda a: a[0], effect)
        if not num_conditions:
            return _cate_jit(self, key, given, arms, outcome=outcome, num_samples=num_samples)
        keys = jax.random.split(key, num_conditions.pop())
        return jax.vmap(
            lambda k, g: _cate_jit(self, k, g, arms, outcome=outcome, num_samples=num_samples)
        )(keys, given)

    def _check_effect(
        self, key: Any, treatment: str, outcome: str, value: Any, baseline: Any, num_samples: Any
    ) -> Array:
        """Check the arguments every effect takes; returns the key."""
        key = check_key(key)
        self._check_effect_nodes(treatment, outcome)
        self._check_intervention(treatment, value, "value")
        self._check_intervention(treatment, baseline, "baseline")
        # A standard error needs at least two draws (one gives 0, which reads as certainty).
        check_int(num_samples, "num_samples", 2)
        return key

    def _check_effect_nodes(self, treatment: str, outcome: str) -> None:
        check_known([treatment], self.nodes, "treatment")
        check_known([outcome], self.nodes, "outcome")
        if treatment == outcome:
            raise ValueError(f"treatment and outcome must differ, both are {treatment!r}")

    def _mediators(self, treatment: str, outcome: str, mediators) -> list[str]:
        self._check_effect_nodes(treatment, outcome)
        if mediators is None:
            on_paths = self.graph.descendants(treatment) & self.graph.ancestors(outcome)
            return [n for n in self.nodes if n in on_paths]
        mediators = as_node_list(mediators, "mediators")
        check_known(mediators, self.nodes, "mediators")
        if treatment in mediators or outcome in mediators:
            raise ValueError("mediators: must not contain the treatment or the outcome")
        return mediators

    # ------------------------------------------------------------------------------------------
    # numpyro interop and learning.

    def to_numpyro(self, *, learn: Iterable[str] = (), priors: Mapping[str, Any] | None = None):
        """The SCM as a numpyro model `model(data=None, num_units=None)`.

        Every node is a sample site named after it (observed where `data` has it), so numpyro's
        `condition`, `do`, `SVI` and `MCMC` apply. Parameters of nodes in `learn` become
        `numpyro.param` sites named `"node.parameter"`; nodes in `priors` get Bayesian
        parameters (see `causalvision.scm.interop`).
        """
        from causalvision.scm.interop import numpyro_model

        return numpyro_model(self, learn=learn, priors=priors)

    def fit(self, data: Mapping[str, Array], **settings: Any):
        """Learn mechanism parameters from data; see `causalvision.scm.interop.fit`."""
        from causalvision.scm.interop import fit

        return fit(self, data, **settings)


# ----------------------------------------------------------------------------------------------
# Pure kernels, jit-compiled once per SCM structure.


def _value_shape(mech, noise, parents, num_units: int) -> jax.ShapeDtypeStruct:
    """Shape and dtype of a node's value, without computing it (for constant interventions).

    A node set to a constant in every world has no abducted noise: its prior noise stands in.
    """
    if noise is not None:
        return jax.eval_shape(mech.predict, noise, parents)
    return jax.eval_shape(lambda: mech.sample(jax.random.key(0), parents, num_units))


def _set_value(name: str, value: Any, node: jax.ShapeDtypeStruct) -> Array:
    """A constant (the node's per-unit shape) or per-unit intervention value, as the node's
    values `(N, ...)`. Shapes are static: this check also runs under jit."""
    value = jnp.asarray(value)
    if value.ndim == len(node.shape):
        fits = value.shape == node.shape
    else:
        fits = _broadcasts(value.shape, node.shape[1:])
    if not fits:
        raise ValueError(
            f"do[{name!r}]: expected a constant of the node's per-unit shape {node.shape[1:]} or "
            f"one value per unit of shape {node.shape}, got shape {value.shape}"
        )
    return jnp.broadcast_to(value.astype(node.dtype), node.shape)


def _apply_shift(name: str, shift: Callable, value: Array) -> Array:
    """`shift(value)`, checked to keep the node's shape and (for a discrete node) its integer
    dtype. Both are static, so this also runs under jit; values are checked after the query."""
    out = shift(value)
    try:
        out = jnp.asarray(out)
    except (TypeError, ValueError):
        raise ValueError(
            f"do[{name!r}]: the shift function must return an array of the node's shape "
            f"{value.shape}, got {type(out).__name__}"
        ) from None
    if out.shape != value.shape:
        raise ValueError(
            f"do[{name!r}]: the shift function must return an array of the node's shape "
            f"{value.shape} (one value per unit), got shape {out.shape}"
        )
    # Casting floats to a discrete node's integers would truncate them silently.
    if jnp.issubdtype(out.dtype, jnp.inexact) and not jnp.issubdtype(value.dtype, jnp.inexact):
        raise ValueError(
            f"do[{name!r}]: the shift function returned dtype {out.dtype} for node {name!r} of "
            f"dtype {value.dtype}; return values of the node's dtype"
        )
    return out.astype(value.dtype)


def _broadcasts(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of `shape` broadcasts to `target` without changing `target`."""
    return len(shape) <= len(target) and all(
        s in (1, t) for s, t in zip(reversed(shape), reversed(target), strict=False)
    )


def _split_do(do: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[tuple[str, Callable], ...]]:
    """Separate traced intervention values from shift functions (static under jit)."""
    shifts = tuple((n, v) for n, v in do.items() if callable(v))
    constants = {n: v for n, v in do.items() if not callable(v)}
    return constants, shifts


def _world_order(worlds: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """Worlds sorted so that every world comes after those it takes values from."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"worlds: circular from_world references through {name!r}")
        visiting.add(name)
        for ref in worlds[name].values():
            if isinstance(ref, WorldRef):
                if ref.world not in worlds:
                    raise ValueError(
                        f"worlds[{name!r}]: from_world refers to unknown world {ref.world!r}"
                    )
                visit(ref.world)
        visiting.discard(name)
        order.append(name)

    for name in worlds:
        visit(name)
    return tuple(order)


def _run_worlds(scm, noise, worlds, order, fixed, num_units=None) -> dict[str, Values]:
    results: dict[str, Values] = {}
    for name in order:
        do = {
            n: results[v.world][v.node] if isinstance(v, WorldRef) else v
            for n, v in worlds[name].items()
        }
        results[name] = scm.propagate(noise, do, fixed=fixed, num_units=num_units)
    return results


def _static_worlds(worlds):
    """Split worlds into (traced constants, static structure) for jit."""
    constants = {w: {n: v for n, v in do.items() if not (callable(v) or isinstance(v, WorldRef))}
                 for w, do in worlds.items()}  # fmt: skip
    static = tuple(
        (w, tuple((n, v) for n, v in do.items() if callable(v) or isinstance(v, WorldRef)))
        for w, do in worlds.items()
    )
    return constants, static


def _merge_worlds(constants, static):
    return {w: {**constants[w], **dict(refs)} for w, refs in static}


@jax.jit(static_argnames=("num_samples", "shifts"))
def _sample_jit(scm, key, constants, *, num_samples, shifts):
    noise = scm.sample_noise(key, num_samples)
    return scm.propagate(noise, {**constants, **dict(shifts)})


@jax.jit
def _log_prob_jit(scm, values):
    total = jnp.zeros(next(iter(values.values())).shape[:1], jnp.float32)
    for name, mech in scm.items():
        parents = {p: values[p] for p in mech.parents}
        total = total + mech.log_prob(values[name], parents)
    return total


@jax.jit(static_argnames=("static", "order", "num_units"))
def _prior_worlds_impl(scm, key, constants, *, static, order, num_units):
    worlds = _merge_worlds(constants, static)
    noise = scm.sample_noise(key, num_units)
    factual = scm.propagate(noise)
    return {"factual": factual, **_run_worlds(scm, noise, worlds, order, fixed={})}


def _prior_worlds_jit(scm, key, worlds, *, order, num_units):
    constants, static = _static_worlds(worlds)
    return _prior_worlds_impl(scm, key, constants, static=static, order=order, num_units=num_units)


@jax.jit(static_argnames=("static", "order", "reached", "to_abduct", "num_samples"))
def _posterior_worlds_impl(
    scm, factual, key, constants, *, static, order, reached, to_abduct, num_samples
):
    worlds = _merge_worlds(constants, static)
    noise = scm.abduct(factual, key, nodes=to_abduct, num_samples=num_samples)
    unreached = {n: v for n, v in factual.items() if n not in reached}

    def run(noise):
        num_units = next(iter(factual.values())).shape[0]
        results = _run_worlds(scm, noise, worlds, order, fixed=unreached, num_units=num_units)
        return {w: {n: v for n, v in r.items() if n not in unreached} for w, r in results.items()}

    if num_samples is None:
        return run(noise)
    return jax.vmap(run)(noise)


def _posterior_worlds_jit(scm, factual, key, worlds, *, order, reached, to_abduct, num_samples):
    constants, static = _static_worlds(worlds)
    return _posterior_worlds_impl(
        scm, factual, key, constants,
        static=static, order=order, reached=reached, to_abduct=to_abduct, num_samples=num_samples,
    )  # fmt: skip


@jax.jit(static_argnames=("static", "order", "reached", "own", "plan", "settings", "num_samples"))
def _partial_worlds_impl(
    scm, observed, key, constants, sites, *, static, order, reached, own, plan, settings,
    num_samples,
):  # fmt: skip
    worlds = _merge_worlds(constants, static)
    key_infer, key_own, key_draw = jax.random.split(key, 3)
    if sites is None:
        sites = infer_sites(scm, observed, key_infer, plan, settings, num_samples)
    noise = scm.abduct(observed, key_own, nodes=own, num_samples=num_samples)
    fixed = {n: v for n, v in observed.items() if n not in reached}
    num_units = next(iter(observed.values())).shape[0]

    def run(sites, noise, key):
        values, noise = complete(scm, observed, sites, noise, key, plan)
        results = _run_worlds(scm, noise, worlds, order, fixed=fixed, num_units=num_units)
        return {"factual": values, **results}

    if num_samples is None:
        return run(sites, noise, key_draw)
    return jax.vmap(run)(sites, noise, jax.random.split(key_draw, num_samples))


def _partial_worlds_jit(
    scm, observed, key, worlds, sites, *, order, reached, own, plan: MissingPlan, settings,
    num_samples,
):  # fmt: skip
    """`sites`: posterior draws of the inferred nodes made before (importance sampling), or
    None to infer them in the compiled query (SVI, NUTS)."""
    constants, static = _static_worlds(worlds)
    return _partial_worlds_impl(
        scm, observed, key, constants, sites,
        static=static, order=order, reached=reached, own=own, plan=plan, settings=settings,
        num_samples=num_samples,
    )  # fmt: skip


@jax.jit(static_argnames=("outcome", "num_samples"))
def _cate_jit(scm, key, given, arms, *, outcome, num_samples):
    key_prior, key_post = jax.random.split(key)
    units = {n: jnp.broadcast_to(v, (num_samples, *v.shape)) for n, v in given.items()}
    noise = scm.sample_noise(key_prior, num_samples)
    noise.update(scm.abduct(units, key_post, nodes=tuple(given)))
    treated, control = (scm.propagate(noise, do) for do in arms)
    return mean_and_stderr(treated[outcome] - control[outcome])
