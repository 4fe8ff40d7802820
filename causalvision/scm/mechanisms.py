"""Mechanisms: the structural equation `x = f(u, pa(x))` of one SCM node.

Every mechanism implements the same small protocol (see DESIGN.md), so the SCM engine never
knows which kind it drives:

- `sample_noise(key, num_units) -> u`: exogenous noise from its prior;
- `predict(u, parents) -> x`: push noise through the structural equation;
- `abduct(x, parents, key, num_samples=None) -> u`: noise consistent with an observed value
  (exact for invertible mechanisms, a posterior draw otherwise);
- `distribution(parents)`: the conditional `p(x | parents)` as a numpyro distribution, where
  it is tractable (used by `log_prob`, `SCM.to_numpyro` and `SCM.fit`);
- `parameters()` / `with_parameters(values)`: the learnable arrays with their supports.

Node values carry a leading unit axis: a scalar node is `(N,)`, an image node `(N, H, W, C)`.
Mechanisms are frozen dataclasses registered as pytrees, so an SCM passes through `jax.jit`
and `jax.vmap` and refitting parameters does not recompile queries.

Constructors check their parameters (finite weights, positive scales, probability tables,
valid numpyro distribution parameters) where they are concrete; traced parameters (a
mechanism built inside a jitted loss, or refitted under `SCM.fit`) pass unchecked.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Self

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from causalvision.scm._compat import lenient_promotion
from causalvision.validation import check_int, check_real, check_real_array, preview

Array = jax.Array
Noise = Any  # a pytree of arrays with a leading unit axis
Parents = Mapping[str, Array]

__all__ = [
    "AdditiveNoise",
    "Categorical",
    "LinearGaussian",
    "Mechanism",
    "NumpyroMechanism",
    "Root",
    "mechanism_dataclass",
]


def mechanism_dataclass(cls: type) -> type:
    """Class decorator for mechanisms: a frozen dataclass registered as a pytree.

    Fields named in `cls._static_fields` are part of the tree structure (hashable
    configuration such as parent names); all other fields are children (parameters), so an
    SCM holding the mechanism passes through `jax.jit` and refits without recompiling.
    Use it for your own `Mechanism` subclasses.
    """
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    static = [n for n in names if n in cls._static_fields]
    dynamic = [n for n in names if n not in cls._static_fields]

    def flatten(obj):
        return [getattr(obj, n) for n in dynamic], tuple(getattr(obj, n) for n in static)

    def unflatten(aux, children):
        obj = object.__new__(cls)
        for n, v in zip(dynamic, children, strict=True):
            object.__setattr__(obj, n, v)
        for n, v in zip(static, aux, strict=True):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_node(cls, flatten, unflatten)
    return cls


class Mechanism(abc.ABC):
    """Base class of all mechanisms: the protocol plus shared defaults.

    Subclasses set `parents` (a tuple of node names) and implement `sample_noise`,
    `predict` and `abduct`; `distribution` where the conditional density is tractable.
    """

    parents: tuple[str, ...]
    _static_fields: ClassVar[tuple[str, ...]] = ("parents",)
    #: True when `abduct` recovers the noise exactly and deterministically.
    exact_abduction: ClassVar[bool] = True

    @abc.abstractmethod
    def sample_noise(self, key: Array, num_units: int) -> Noise:
        """`num_units` draws of the exogenous noise from its prior."""

    @abc.abstractmethod
    def predict(self, noise: Noise, parents: Parents) -> Array:
        """The structural equation: the value `(N, ...)` for noise and parent values."""

    @abc.abstractmethod
    def abduct(
        self,
        value: Array,
        parents: Parents,
        key: Array | None = None,
        num_samples: int | None = None,
    ) -> Noise:
        """Noise consistent with observed values (with `num_samples`, `(S, N, ...)` draws)."""

    def distribution(self, parents: Parents, num_units: int) -> dist.Distribution:
        """`p(x | parents)` with batch shape `(num_units,)`."""
        raise NotImplementedError(
            f"{type(self).__name__} has no tractable density; use inference-based queries"
        )

    def check_parents(self, parents: Mapping[str, Mechanism]) -> None:  # noqa: B027
        """Raise `ValueError` if the parents' mechanisms cannot feed this one (SCM build time).

        Most mechanisms accept any parents, hence an optional hook rather than abstract.
        """

    def num_values(self) -> int | None:
        """The number of values of a discrete node (`0..K-1`), or None if not finite-discrete."""
        return None

    def sample(self, key: Array, parents: Parents, num_units: int) -> Array:
        """Draw `x ~ p(x | parents)`: `predict(sample_noise(key, N), parents)`."""
        return self.predict(self.sample_noise(key, num_units), parents)

    def log_prob(self, value: Array, parents: Parents) -> Array:
        """`log p(x | parents)` per unit, shape `(N,)`."""
        with lenient_promotion():
            return self.distribution(parents, value.shape[0]).log_prob(value)

    def log_likelihood(self, value: Array, parents: Parents) -> Array:
        """`log p(x | parents)` per unit `(N,)`, or a tractable stand-in where the density is
        not (an image model's, see `GaussianDecoderMechanism`).

        It weighs proposed values of missing parents of an observed node (importance
        sampling, `Inference(method="importance")`). Defaults to `log_prob`; a mechanism
        without a `distribution` overrides it to take part.
        """
        return self.log_prob(value, parents)

    def in_support(self, value: Array) -> np.ndarray | None:
        """Boolean mask, per unit, of values this node can take (checked on concrete data).

        None means every real value is allowed, so the check is skipped.
        """
        return None

    def describe_support(self) -> str | None:
        """The support in words, for error messages (None: not described)."""
        return None

    def parameters(self) -> dict[str, tuple[Array, constraints.Constraint]]:
        """Learnable arrays by name, each with the constraint that defines its support."""
        return {}

    def with_parameters(self, values: Mapping[str, Array]) -> Self:
        """A copy with the named parameters replaced (names as in `parameters()`)."""
        if values:
            raise ValueError(f"{type(self).__name__} has no parameters {sorted(values)}")
        return self

    # Helpers for subclasses -------------------------------------------------------------

    @staticmethod
    def _broadcast_noise(noise: Noise, num_samples: int | None) -> Noise:
        if num_samples is None:
            return noise
        return jax.tree.map(lambda u: jnp.broadcast_to(u, (num_samples, *u.shape)), noise)


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _node_names(parents: Any, argument: str) -> tuple[str, ...]:
    """Parent names as a tuple; a bare string is refused (it would split into characters)."""
    if isinstance(parents, str) or not isinstance(parents, Iterable):
        raise ValueError(f"{argument}: expected a list of node names, got {parents!r}")
    names = tuple(parents)
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{argument}: expected node names (str), got {name!r}")
    return names


def _float_parameter(value: Any, argument: str, shape: tuple[int, ...], **bounds: Any) -> Array:
    """A float32 parameter of `shape`, finite and within `bounds` where concrete."""
    array = jnp.asarray(check_real_array(value, argument, **bounds), dtype=jnp.float32)
    if array.shape != shape:
        raise ValueError(f"{argument}: expected shape {shape}, got {array.shape}")
    return array


def _check_distribution(d: Any, argument: str) -> None:
    """A numpyro distribution with an empty batch shape (one value per unit), valid parameters."""
    if not isinstance(d, dist.Distribution):
        raise TypeError(f"{argument}: expected a numpyro distribution, got {type(d).__name__}")
    if d.batch_shape:
        raise ValueError(
            f"{argument}: the distribution must have an empty batch shape (one value per unit), "
            f"got batch shape {d.batch_shape}"
        )
    _check_distribution_parameters(d, argument)


def _check_distribution_parameters(d: dist.Distribution, argument: str) -> None:
    """Concrete parameters must be finite and satisfy their constraints.

    numpyro's own check lets inf through and is off with `validate_args=False`: an infinite
    or zero scale would only surface later, as NaN samples and densities.
    """
    for name, constraint in d.arg_constraints.items():
        value = d.__dict__.get(name)  # lazy properties (probs of a logits law) stay unread
        if value is None or _is_traced(value) or constraints.is_dependent(constraint):
            continue
        array = np.asarray(value)
        if name == "logits":  # -inf is a category of probability zero
            array = np.where(array == -np.inf, 0.0, array)
        if not (np.isfinite(array).all() and _satisfies(constraint, array)):
            raise ValueError(
                f"{argument}: parameter {name!r} of {type(d).__name__} must be finite and "
                f"satisfy {constraint}, got {preview(value)}"
            )
    base = d.__dict__.get("base_dist")
    if isinstance(base, dist.Distribution):
        _check_distribution_parameters(base, argument)


def _satisfies(constraint: constraints.Constraint, array: np.ndarray) -> bool:
    if constraint is constraints.simplex:  # numpyro's 1e-6 is tighter than float32 sums allow
        return bool((array >= 0).all() and np.allclose(array.sum(-1), 1.0, atol=1e-5))
    # Concrete in, concrete out, even while an outer function is being traced.
    with lenient_promotion(), jax.ensure_compile_time_eval():
        return bool(np.asarray(constraint(jnp.asarray(array))).all())


def _stack_parents(parents: Parents, names: tuple[str, ...], num_units: int) -> Array:
    """Concatenate parent values into a float matrix `(N, P)` (each parent flattened)."""
    if not names:
        return jnp.zeros((num_units, 0), dtype=jnp.float32)
    columns = [jnp.reshape(parents[n], (parents[n].shape[0], -1)) for n in names]
    return jnp.concatenate([c.astype(jnp.float32) for c in columns], axis=1)


def _num_units(parents: Parents, noise: Noise) -> int:
    leaves = jax.tree.leaves(noise)
    return leaves[0].shape[0]


# ---------------------------------------------------------------------------------------------
# Root: x = u, u ~ any numpyro distribution.


@mechanism_dataclass
class Root(Mechanism):
    """A node without parents whose value is its own noise: `x ~ distribution`.

    Args:
      distribution: any numpyro distribution with empty batch shape; its event shape is the
        node's per-unit shape.
    """

    distribution_: dist.Distribution
    parents: tuple[str, ...] = ()

    def __post_init__(self):
        _check_distribution(self.distribution_, "Root")
        object.__setattr__(self, "parents", _node_names(self.parents, "Root.parents"))
        if self.parents:
            raise ValueError(f"Root: a root node has no parents, got {self.parents}")

    def sample_noise(self, key, num_units):
        with lenient_promotion():
            return self.distribution_.sample(key, (num_units,))

    def predict(self, noise, parents):
        return noise

    def abduct(self, value, parents, key=None, num_samples=None):
        return self._broadcast_noise(value, num_samples)

    def distribution(self, parents, num_units):
        return self.distribution_.expand((num_units,))

    def num_values(self):
        support = self.distribution_.support
        if support is constraints.boolean:
            return 2
        bounds = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
        if (
            support.is_discrete
            and bounds[0] == 0
            and bounds[1] is not None
            and np.ndim(bounds[1]) == 0
        ):
            return int(bounds[1]) + 1  # integer_interval(0, K - 1), e.g. a categorical root
        return None

    def in_support(self, value):
        if self.distribution_.support is constraints.real:
            return None
        with lenient_promotion(), jax.ensure_compile_time_eval():
            ok = np.asarray(self.distribution_.support(jnp.asarray(value)))
        event_dims = self.distribution_.support.event_dim
        return ok if event_dims or ok.ndim <= 1 else ok.reshape(ok.shape[0], -1).all(axis=1)

    def describe_support(self):
        return repr(self.distribution_.support)

    def parameters(self):
        d = self.distribution_
        return {
            name: (jnp.asarray(d.__dict__[name]), c)
            for name, c in d.arg_constraints.items()
            if d.__dict__.get(name) is not None
        }

    def with_parameters(self, values):
        unknown = set(values) - set(self.parameters())
        if unknown:
            raise ValueError(f"Root: unknown parameter(s) {sorted(unknown)}")
        args = {name: value for name, (value, _) in self.parameters().items()}
        args.update(values)
        return dataclasses.replace(self, distribution_=type(self.distribution_)(**args))


# ---------------------------------------------------------------------------------------------
# Additive-noise mechanisms: x = f(pa) + u.


class _Shifted(dist.Distribution):
    """`loc + u`, `u ~ base`: the law of an additive-noise node given its parents.

    numpyro's AffineTransform has no codomain for event-shaped domains, hence this small class.
    """

    arg_constraints: ClassVar[dict] = {}
    pytree_data_fields = ("base", "loc")

    def __init__(self, base: dist.Distribution, loc: Array):
        self.base, self.loc = base, loc
        super().__init__(base.batch_shape, base.event_shape)

    @constraints.dependent_property(is_discrete=False)
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def sample(self, key, sample_shape=()):
        return self.loc + self.base.sample(key, sample_shape)

    def log_prob(self, value):
        return self.base.log_prob(value - self.loc)


@mechanism_dataclass
class AdditiveNoise(Mechanism):
    """`x = fn(parents) + u` with `u ~ noise`: exact abduction `u = x - fn(parents)`.

    Args:
      parents: parent node names, in the order their values are concatenated.
      fn: maps the parents, concatenated into a float matrix `(N, P)`, to the location
        `(N, *event_shape)`. A Flax NNX module (its `nnx.Param` variables are learnable) or any pure
        function.
      noise: the noise distribution (a numpyro distribution with empty batch shape); its event
        shape is the node's per-unit shape, e.g. `dist.Normal(jnp.zeros(3), 1.0).to_event(1)`.
    """

    parents: tuple[str, ...]
    fn: Callable[[Array], Array]
    noise: dist.Distribution = dataclasses.field(default_factory=lambda: dist.Normal(0.0, 1.0))

    def __post_init__(self):
        object.__setattr__(self, "parents", _node_names(self.parents, "AdditiveNoise.parents"))
        if not callable(self.fn):
            raise TypeError(f"AdditiveNoise.fn: expected a function or module, got {self.fn!r}")
        _check_distribution(self.noise, "AdditiveNoise.noise")
        # A plain function is not a pytree; `Partial` makes it one with no leaves.
        if jax.tree.leaves(self.fn) == [self.fn]:
            object.__setattr__(self, "fn", jax.tree_util.Partial(self.fn))

    def location(self, parents: Parents, num_units: int) -> Array:
        loc = self.fn(_stack_parents(parents, self.parents, num_units))
        return jnp.reshape(loc, (num_units, *self.noise.event_shape))

    def sample_noise(self, key, num_units):
        with lenient_promotion():
            return self.noise.sample(key, (num_units,))

    def predict(self, noise, parents):
        return self.location(parents, noise.shape[0]) + noise

    def abduct(self, value, parents, key=None, num_samples=None):
        return self._broadcast_noise(value - self.location(parents, value.shape[0]), num_samples)

    def distribution(self, parents, num_units):
        return _Shifted(self.noise.expand((num_units,)), self.location(parents, num_units))

    def parameters(self):
        params = {f"noise.{k}": v for k, v in Root(self.noise).parameters().items()}
        for path, leaf in jax.tree_util.tree_flatten_with_path(self.fn)[0]:
            if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
                params["fn" + jax.tree_util.keystr(path)] = (leaf, constraints.real)
        return params

    def with_parameters(self, values):
        unknown = set(values) - set(self.parameters())
        if unknown:
            raise ValueError(f"AdditiveNoise: unknown parameter(s) {sorted(unknown)}")
        noise_values = {k.removeprefix("noise."): v for k, v in values.items() if k[:6] == "noise."}
        noise = Root(self.noise).with_parameters(noise_values).distribution_
        paths, treedef = jax.tree_util.tree_flatten_with_path(self.fn)
        leaves = [values.get("fn" + jax.tree_util.keystr(p), leaf) for p, leaf in paths]
        return dataclasses.replace(self, fn=jax.tree.unflatten(treedef, leaves), noise=noise)


@mechanism_dataclass
class LinearGaussian(Mechanism):
    """`x = bias + Σ_p weights[p] * p + scale * ε`, `ε ~ N(0, 1)`, for scalar parents.

    Args:
      parents: parent node names.
      weights: one coefficient per parent, in the order of `parents`, shape `(P,)`.
      bias: intercept. scale: standard deviation of the noise (> 0).
    The exogenous noise is `ε` (standardised), so abduction is `(x - mean) / scale`.
    """

    parents: tuple[str, ...]
    weights: Array
    bias: Array = 0.0
    scale: Array = 1.0

    def __post_init__(self):
        object.__setattr__(self, "parents", _node_names(self.parents, "LinearGaussian.parents"))
        weights = jnp.asarray(
            check_real_array(self.weights, "LinearGaussian.weights"), dtype=jnp.float32
        )
        if weights.shape != (len(self.parents),):
            raise ValueError(
                f"LinearGaussian: weights must have shape ({len(self.parents)},), one per parent "
                f"{self.parents}, got {weights.shape}"
            )
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", _float_parameter(self.bias, "LinearGaussian.bias", ()))
        scale = _float_parameter(self.scale, "LinearGaussian.scale", (), minimum=0, open_low=True)
        object.__setattr__(self, "scale", scale)

    def mean(self, parents: Parents, num_units: int) -> Array:
        # An elementwise sum, not a matmul over concatenated parents: no (N, P) copy.
        total = jnp.broadcast_to(self.bias, (num_units,))
        for i, name in enumerate(self.parents):
            if parents[name].ndim != 1:
                raise ValueError(
                    f"LinearGaussian: parent {name!r} must be scalar per unit (shape (N,)), got "
                    f"shape {parents[name].shape}; use AdditiveNoise for vector parents"
                )
            total = total + self.weights[i] * parents[name].astype(jnp.float32)
        return total

    def sample_noise(self, key, num_units):
        return jax.random.normal(key, (num_units,), dtype=jnp.float32)

    def predict(self, noise, parents):
        return self.mean(parents, noise.shape[0]) + self.scale * noise

    def abduct(self, value, parents, key=None, num_samples=None):
        noise = (value - self.mean(parents, value.shape[0])) / self.scale
        return self._broadcast_noise(noise, num_samples)

    def distribution(self, parents, num_units):
        return dist.Normal(self.mean(parents, num_units), self.scale)

    def parameters(self):
        return {
            "weights": (self.weights, constraints.real),
            "bias": (self.bias, constraints.real),
            "scale": (self.scale, constraints.positive),
        }

    def with_parameters(self, values):
        unknown = set(values) - {"weights", "bias", "scale"}
        if unknown:
            raise ValueError(f"LinearGaussian: unknown parameter(s) {sorted(unknown)}")
        return dataclasses.replace(self, **values)


# ---------------------------------------------------------------------------------------------
# Categorical: Gumbel-max over a conditional probability table.


def _truncated_gumbel(key: Array, location: Array, upper: Array) -> Array:
    """Gumbel(location) samples conditioned to be <= `upper` (inverse-CDF trick)."""
    g = location + jax.random.gumbel(key, location.shape, dtype=location.dtype)
    return -jnp.logaddexp(-upper, -g)


@mechanism_dataclass
class Categorical(Mechanism):
    """A discrete node given by a conditional probability table, with Gumbel-max noise.

    `x = argmax_k (logits[pa][k] + g_k)`, `g_k ~ Gumbel(0, 1)` i.i.d., which samples exactly
    `p(x | pa) = softmax(logits[pa])` and gives counterfactuals over discrete variables the
    counterfactual stability of Oberst & Sontag (2019). Abduction draws the Gumbels from their
    posterior given the observed argmax (top-down truncated-Gumbel sampling).

    Args:
      parents: discrete parent nodes; `table` is indexed by their values in this order.
      table: probabilities, shape `(*parent_cardinalities, K)`, each row summing to 1;
        or pass `logits` of the same shape instead.
    """

    parents: tuple[str, ...]
    logits: Array
    exact_abduction: ClassVar[bool] = False

    def __init__(self, parents: Iterable[str], table: Any = None, *, logits: Any = None):
        parents = _node_names(parents, "Categorical.parents")
        if (table is None) == (logits is None):
            raise ValueError("Categorical: pass exactly one of `table` (probabilities) or `logits`")
        if table is not None:
            table = check_real_array(table, "Categorical.table", 0.0, 1.0)
            if table.ndim == 0 or not np.allclose(table.sum(-1), 1.0, atol=1e-5):
                raise ValueError(
                    "Categorical: `table` must hold probabilities >= 0 whose last axis sums to 1; "
                    f"row sums are {np.round(table.sum(-1), 6).tolist()}"
                )
            with np.errstate(divide="ignore"):
                logits = np.log(table)
        elif not _is_traced(logits):
            _check_logits(logits)
        logits = jnp.asarray(logits, dtype=jnp.float32)
        if logits.ndim != len(parents) + 1 or logits.shape[-1] == 0:
            raise ValueError(
                f"Categorical: the table needs one axis per parent {parents} plus one for the "
                f"categories, i.e. {len(parents) + 1} axes; got shape {logits.shape}"
            )
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "logits", logits)

    @property
    def num_categories(self) -> int:
        return self.logits.shape[-1]

    def num_values(self):
        return self.num_categories

    def check_parents(self, parents):
        # The table is indexed by the parents' values: they must be discrete with exactly as
        # many values as the table's axis, or indexing would silently truncate or clip.
        for axis, name in enumerate(self.parents):
            size, expected = parents[name].num_values(), self.logits.shape[axis]
            if size is None:
                raise ValueError(
                    f"Categorical: parent {name!r} must be discrete with values 0..K-1 "
                    f"(a Categorical, or a Root with a categorical/Bernoulli law), got "
                    f"{type(parents[name]).__name__}"
                )
            if size != expected:
                raise ValueError(
                    f"Categorical: table axis {axis} is for parent {name!r} with {size} values, "
                    f"but has length {expected}"
                )

    def row_logits(self, parents: Parents, num_units: int) -> Array:
        """Logits of `p(x | pa)` for every unit, `(N, K)`."""
        if not self.parents:
            return jnp.broadcast_to(self.logits, (num_units, self.num_categories))
        index = tuple(jnp.asarray(parents[p]).astype(jnp.int32) for p in self.parents)
        return self.logits[index]

    def sample_noise(self, key, num_units):
        return jax.random.gumbel(key, (num_units, self.num_categories), dtype=jnp.float32)

    def predict(self, noise, parents):
        return jnp.argmax(self.row_logits(parents, noise.shape[0]) + noise, axis=-1).astype(
            jnp.int32
        )

    def abduct(self, value, parents, key=None, num_samples=None):
        if key is None:
            raise ValueError(
                "Categorical.abduct: Gumbel noise is only known up to its posterior; pass `key`"
            )
        logits = self.row_logits(parents, value.shape[0])
        value = value.astype(jnp.int32)

        def draw(key):
            key_max, key_rest = jax.random.split(key)
            # The maximum of the perturbed logits is Gumbel(logsumexp) and sits at `value`;
            # every other perturbed logit is a Gumbel truncated below that maximum.
            top = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
            top = top + jax.random.gumbel(key_max, top.shape, dtype=jnp.float32)
            rest = _truncated_gumbel(key_rest, logits, top)
            is_value = jax.nn.one_hot(value, self.num_categories, dtype=jnp.bool_)
            noise = jnp.where(is_value, top, rest) - logits
            # A category of probability 0 here (logit -inf) is below the maximum whatever its
            # Gumbel: the observation says nothing about it, so it keeps its prior (and not
            # -inf - -inf = NaN, which argmax would pick under other parents).
            free = jax.random.gumbel(jax.random.fold_in(key, 1), logits.shape, jnp.float32)
            return jnp.where(jnp.isneginf(logits), free, noise)

        if num_samples is None:
            return draw(key)
        return jax.vmap(draw)(jax.random.split(key, num_samples))

    def distribution(self, parents, num_units):
        return dist.Categorical(logits=self.row_logits(parents, num_units))

    def in_support(self, value):
        value = np.asarray(value)
        integral = np.equal(np.mod(value, 1), 0)
        return integral & (value >= 0) & (value < self.num_categories)

    def describe_support(self):
        return f"integers 0..{self.num_categories - 1}"

    def parameters(self):
        return {"logits": (self.logits, constraints.real)}

    def with_parameters(self, values):
        unknown = set(values) - {"logits"}
        if unknown:
            raise ValueError(f"Categorical: unknown parameter(s) {sorted(unknown)}")
        return Categorical(self.parents, logits=values.get("logits", self.logits))


def _check_logits(logits: Any) -> None:
    """Logits may be -inf (probability 0) but not NaN or +inf, and no row may be all -inf."""
    try:
        array = np.asarray(logits)
    except ValueError:  # ragged nested lists
        array = np.asarray(None)
    ok = array.dtype.kind in "iuf" and array.ndim >= 1
    if ok:
        array = array.astype(np.float64)
        ok = not (np.isnan(array).any() or (array == np.inf).any())
        ok = ok and bool(np.isfinite(array).any(axis=-1).all())
    if not ok:
        raise ValueError(
            f"Categorical.logits: expected numbers < inf (-inf for a category of probability "
            f"0), with a finite value in every row, got {preview(logits)}"
        )


# ---------------------------------------------------------------------------------------------
# Generic mechanism: any numpyro sub-model; abduction by posterior inference.


@dataclasses.dataclass(frozen=True)
class Inference:
    """How unobserved values are inferred: missing nodes of a factual, a mechanism's noise.

    Args:
      method: "svi" (mean-field Normal guide, fast, approximate), "nuts" (exact in the
        limit, slower), or "importance": self-normalised importance sampling of the missing
        nodes of a factual from `proposal` (amortised inference, e.g. an attribute
        predictor reading an image's parents; see `causalvision.scm.importance`). Only
        "importance" handles discrete missing nodes and observed children without a
        density (image mechanisms, through `Mechanism.log_likelihood`).
      num_steps, learning_rate: SVI optimisation.
      num_warmup: NUTS warm-up; posterior draws come from the chain that follows it.
      obs_scale: the standard deviation of the Gaussian kernel that softly conditions the
        deterministic output on the observed value (smaller is more exact, harder to fit).
      proposal: for "importance": `proposal(observed, key, num_proposals) -> (values,
        log_q)`, with `observed` the factual's values `(N, ...)`, `values` a draw `(K, N,
        ...)` of every missing node to infer (K = `num_proposals`) and `log_q` `(K, N)` the
        proposal's joint log density of each draw. It is traced into the compiled query
        (its arrays become constants; a new proposal object compiles anew).
      num_proposals: K, proposals per unit for "importance".
    """

    method: str = "svi"
    num_steps: int = 2000
    learning_rate: float = 0.02
    num_warmup: int = 500
    obs_scale: float = 0.01
    proposal: Callable[..., tuple[Mapping[str, Array], Array]] | None = None
    num_proposals: int = 64

    def __post_init__(self):
        if self.method not in ("svi", "nuts", "importance"):
            raise ValueError(
                f"Inference.method: expected 'svi', 'nuts' or 'importance', got {self.method!r}"
            )
        for name in ("num_steps", "num_warmup", "num_proposals"):
            object.__setattr__(self, name, check_int(getattr(self, name), f"Inference.{name}", 1))
        for name in ("learning_rate", "obs_scale"):
            value = check_real(getattr(self, name), f"Inference.{name}", 0, open_low=True)
            object.__setattr__(self, name, value)
        if self.method == "importance" and not callable(self.proposal):
            raise ValueError(
                "Inference.proposal: method 'importance' needs a proposal callable "
                f"(observed, key, num_proposals) -> (values, log_q), got {self.proposal!r}"
            )
        if self.method != "importance" and self.proposal is not None:
            raise ValueError(
                f"Inference.proposal: only method 'importance' uses a proposal, method is "
                f"{self.method!r}"
            )


@mechanism_dataclass
class NumpyroMechanism(Mechanism):
    """A node defined by a numpyro sub-model; its noise is every latent sample site.

    `model(**parents)` samples its exogenous noise with `numpyro.sample` (whose priors must
    not depend on the parents) and returns the node value. It is written for one unit with
    elementwise operations and runs under a plate over units. Its `numpyro.param` sites are
    the mechanism's learnable parameters (`SCM.fit`). Abduction conditions the
    output on the observed value with a Gaussian kernel of width `inference.obs_scale` and
    infers the noise posterior by SVI or NUTS, once for all units, in one jitted program.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import numpyro
      >>> import numpyro.distributions as dist
      >>> from causalvision.scm import SCM, NumpyroMechanism, Root
      >>> def model(x):
      ...     u = numpyro.sample("u", dist.Normal(0.0, 1.0))
      ...     return jnp.tanh(x) + u**3
      >>> scm = SCM({"x": Root(dist.Normal(0.0, 1.0)), "y": NumpyroMechanism(("x",), model)})
      >>> factual = {"x": jnp.zeros(1, jnp.float32), "y": jnp.ones(1, jnp.float32)}  # u = 1
      >>> cf = scm.counterfactual(factual, do={"x": 1.0}, key=jax.random.key(0))  # u by SVI
      >>> round(float(cf["y"][0]), 1)  # exactly tanh(1) + 1 = 1.76
      1.8
    """

    parents: tuple[str, ...]
    model: Callable[..., Array]
    inference: Inference = Inference()
    params: Mapping[str, Array] | None = None
    param_constraints: tuple[tuple[str, constraints.Constraint], ...] = dataclasses.field(
        default=(), repr=False
    )
    _static_fields: ClassVar[tuple[str, ...]] = (
        "parents",
        "model",
        "inference",
        "param_constraints",
    )
    exact_abduction: ClassVar[bool] = False

    def __post_init__(self):
        object.__setattr__(self, "parents", _node_names(self.parents, "NumpyroMechanism.parents"))
        if not callable(self.model):
            raise TypeError(f"NumpyroMechanism: `model` must be callable, got {self.model!r}")
        if not isinstance(self.inference, Inference):
            raise TypeError(
                f"NumpyroMechanism.inference: expected an Inference, got {self.inference!r}"
            )
        if self.inference.method == "importance":
            raise ValueError(
                "NumpyroMechanism.inference: method 'importance' infers missing nodes of a "
                "factual, not a mechanism's noise; use 'svi' or 'nuts'"
            )
        if self.params is None:  # discover the model's `numpyro.param` sites and their inits
            dummy = {p: jnp.zeros((1,), jnp.float32) for p in self.parents}
            run = numpyro.handlers.seed(lambda: self._plated(self.model, dummy, 1), 0)
            sites = numpyro.handlers.trace(run).get_trace().values()
            params = [s for s in sites if s["type"] == "param"]
            object.__setattr__(self, "params", {s["name"]: s["value"] for s in params})
            object.__setattr__(
                self,
                "param_constraints",
                tuple((s["name"], s["kwargs"].get("constraint", constraints.real)) for s in params),
            )
        for name, constraint in self.param_constraints:
            value = self.params.get(name)
            if value is None or _is_traced(value):
                continue
            array = np.asarray(value)
            if not (np.isfinite(array).all() and _satisfies(constraint, array)):
                raise ValueError(
                    f"NumpyroMechanism.params[{name!r}]: expected finite value(s) satisfying "
                    f"{constraint}, got {preview(value)}"
                )

    @staticmethod
    def _plated(fn: Callable[..., Array], parents: Parents, num_units: int) -> Array:
        with numpyro.plate("units", num_units, dim=-1):
            return fn(**parents)

    def call(self, **parents: Array) -> Array:
        """The sub-model with its `numpyro.param` sites fixed to this mechanism's `params`.

        The param sites are hidden from outer handlers: the SCM learns them under its own
        names (`"node.param"`), see `parameters()`.
        """
        hide = numpyro.handlers.block(hide_fn=lambda site: site["type"] == "param")
        with hide, numpyro.handlers.substitute(data=dict(self.params)):
            return self.model(**{p: parents[p] for p in self.parents})

    def _run(self, parents: Parents, num_units: int) -> Array:
        return self._plated(self.call, {p: parents[p] for p in self.parents}, num_units)

    def parameters(self):
        return {name: (self.params[name], c) for name, c in self.param_constraints}

    def with_parameters(self, values):
        unknown = set(values) - set(self.params)
        if unknown:
            raise ValueError(f"NumpyroMechanism: unknown parameter(s) {sorted(unknown)}")
        return dataclasses.replace(self, params={**self.params, **values})

    def sample_noise(self, key, num_units):
        dummy = {p: jnp.zeros((num_units,), jnp.float32) for p in self.parents}
        trace = numpyro.handlers.trace(numpyro.handlers.seed(self._run, key)).get_trace(
            dummy, num_units
        )
        return {
            name: site["value"]
            for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"]
        }

    def predict(self, noise, parents):
        num_units = _num_units(parents, noise)
        # `seed` only guards against a site missing from `noise`, which would be an error.
        substituted = numpyro.handlers.substitute(self._run, data=noise)
        return numpyro.handlers.seed(substituted, jax.random.key(0))(parents, num_units)

    def _conditioned(self, value: Array, parents: Parents) -> Callable[[], None]:
        num_units = value.shape[0]

        def model():
            out = self._run(parents, num_units)
            with numpyro.plate("units", num_units, dim=-1):
                numpyro.sample("_observed", dist.Normal(out, self.inference.obs_scale), obs=value)

        return model

    def abduct(self, value, parents, key=None, num_samples=None):
        if key is None:
            raise ValueError("NumpyroMechanism.abduct: inference needs a PRNG `key`")
        from causalvision.scm.inference import posterior_noise

        return posterior_noise(self._conditioned(value, parents), key, num_samples, self.inference)
