"""Conditional normalizing flows for scalar and low-dimensional attributes, as SCM mechanisms.

A flow maps standard-normal noise `u ~ N(0, I)` of shape `(N, D)` to an attribute `x = f(u; c)`
through a stack of invertible, elementwise bijectors whose parameters may depend on a context
`c` `(N, C)` (the parent values):

    u -> layers[0] -> layers[1] -> ... -> support transform -> x

- `ConditionalAffine`: `x = loc(c) + exp(log_scale(c)) * u`;
- `ConditionalSpline`: a monotonic rational-quadratic spline (Durkan et al. 2019, "Neural
  Spline Flows") with K bins on `[-B, B]` and identity (linear) tails outside;
- `Positive(shift)` / `Interval(low, high)`: fixed output transforms for constrained attributes
  (`x > shift` via softplus or exp; `low < x < high` via a sigmoid).

Every bijector has `forward(u, context) -> (x, log_det)` and `inverse(x, context) ->
(u, log_det)` with elementwise log-determinants `(N, D)`, so `log p(x | c)` is exact by the
change of variables. The bijectors act on each of the D dimensions separately: dimensions are
independent given the context (no coupling or autoregressive mixing).

`FlowMechanism` wraps a `ConditionalFlow` as an SCM node with exact, deterministic abduction
(`u = f^{-1}(x; pa)`), which is how deepscm and causal-gen model Morpho thickness and
intensity (REFERENCE 2.1-2.2). `fit_flow_mechanism` trains one by maximum likelihood.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from flax import nnx
from numpyro.distributions import constraints

from causalvision.nn.image_mechanism import ParentEncoding
from causalvision.scm import lenient_promotion
from causalvision.scm.mechanisms import Mechanism, _stack_parents, mechanism_dataclass
from causalvision.validation import check_int

Array = jax.Array
Parents = Mapping[str, Array]

__all__ = [
    "ConditionalAffine",
    "ConditionalFlow",
    "ConditionalSpline",
    "FlowMechanism",
    "Interval",
    "Positive",
    "fit_flow_mechanism",
    "rational_quadratic_spline",
]

LAYERS = ("affine", "spline")
SUPPORTS = ("positive", "interval")

# Lower bounds on bin widths, heights and knot derivatives keep the spline strictly monotone
# and its inverse well conditioned whatever the network outputs.
MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3
# softplus(raw + offset) + MIN_DERIVATIVE == 1 at raw == 0: a zero output is the identity.
_DERIVATIVE_OFFSET = math.log(math.expm1(1.0 - MIN_DERIVATIVE))
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _context_or_empty(context: Array | None, num: int) -> Array:
    if context is None:
        return jnp.zeros((num, 0), jnp.float32)
    return context


class _MLP(nnx.Module):
    """Dense layers with GELU, `(N, C) -> (N, out)`; the last layer starts at zero.

    Zero output weights make every bijector start as the identity, so an untrained flow is
    the base N(0, I) (pushed through the support transform) and training starts stable.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *, rngs):
        sizes = (in_features, *hidden)
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
        self.out = nnx.Linear(
            sizes[-1],
            out_features,
            kernel_init=nnx.initializers.zeros_init(),
            bias_init=nnx.initializers.zeros_init(),
            rngs=rngs,
        )

    def __call__(self, context: Array) -> Array:
        h = context
        for layer in self.hidden:
            h = jax.nn.gelu(layer(h))
        return self.out(h)


class _ConditionalParams(nnx.Module):
    """Per-dimension bijector parameters `(N, D, P)`: an MLP of the context, or free if C = 0."""

    def __init__(self, dim: int, context_dim: int, size: int, hidden: Sequence[int], *, rngs):
        self.dim, self.context_dim, self.size = dim, context_dim, size
        if context_dim > 0:
            self.net = _MLP(context_dim, hidden, dim * size, rngs=rngs)
        else:
            self.free = nnx.Param(jnp.zeros((dim, size), jnp.float32))

    def __call__(self, context: Array, num: int) -> Array:
        if self.context_dim > 0:
            return jnp.reshape(self.net(context), (num, self.dim, self.size))
        return jnp.broadcast_to(self.free[...][None], (num, self.dim, self.size))


# -------------------------------------------------------------------------------------------
# Conditional affine.


class ConditionalAffine(nnx.Module):
    """`x = loc(c) + exp(log_scale(c)) * u`, elementwise over `(N, D)`.

    Args:
      dim: D. context_dim: C (0: `loc` and `log_scale` are free parameters `(D,)`).
      hidden: widths of the MLP from the context to `(loc, log_scale)`.
    Starts as the identity (loc 0, scale 1).
    """

    def __init__(
        self, dim: int, context_dim: int, *, hidden: Sequence[int] = (32, 32), rngs: nnx.Rngs
    ):
        self.params = _ConditionalParams(dim, context_dim, 2, hidden, rngs=rngs)

    def _loc_log_scale(self, value: Array, context: Array | None) -> tuple[Array, Array]:
        num = value.shape[0]
        p = self.params(_context_or_empty(context, num), num)
        return p[..., 0], p[..., 1]

    def forward(self, u: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`u (N, D) -> (x (N, D), log|dx/du| (N, D))`."""
        loc, log_scale = self._loc_log_scale(u, context)
        return loc + jnp.exp(log_scale) * u, log_scale

    def inverse(self, x: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`x (N, D) -> (u (N, D), log|du/dx| (N, D))`."""
        loc, log_scale = self._loc_log_scale(x, context)
        return (x - loc) * jnp.exp(-log_scale), -log_scale


# -------------------------------------------------------------------------------------------
# Monotonic rational-quadratic spline.


def _knots(raw: Array, minimum: float, bound: float) -> Array:
    """K bin sizes from unnormalised `(..., K)` -> K + 1 knot positions on `[-B, B]`."""
    num_bins = raw.shape[-1]
    sizes = minimum + (1.0 - minimum * num_bins) * jax.nn.softmax(raw, axis=-1)
    inner = -bound + 2.0 * bound * jnp.cumsum(sizes[..., :-1], axis=-1)
    ends = jnp.ones((*raw.shape[:-1], 1), raw.dtype)
    # The end knots are set exactly, not from the cumulative sum, so the spline meets the
    # identity tails at ±B without round-off gaps.
    return jnp.concatenate([-bound * ends, inner, bound * ends], axis=-1)


def rational_quadratic_spline(
    value: Array,
    widths: Array,
    heights: Array,
    derivatives: Array,
    *,
    bound: float,
    inverse: bool = False,
) -> tuple[Array, Array]:
    """Monotonic rational-quadratic spline on `[-B, B]`, identity outside (Durkan et al. 2019).

    Args:
      value: inputs of any shape `S` (u for the forward map, x for the inverse).
      widths, heights: unnormalised bin widths and heights, `(*S, K)` (softmax-normalised to
        cover `[-B, B]`, each bin at least `MIN_BIN_WIDTH` / `MIN_BIN_HEIGHT` of it).
      derivatives: unnormalised derivatives at the K - 1 interior knots, `(*S, K - 1)`
        (softplus, at least `MIN_DERIVATIVE`); the end knots have derivative 1 so the spline
        joins the identity tails smoothly. All-zero parameters give the identity.
      bound: B > 0.
      inverse: evaluate the inverse map instead.
    Returns:
      `(output, log|d output / d value|)`, both of shape `S`.
    """
    xs = _knots(widths, MIN_BIN_WIDTH, bound)
    ys = _knots(heights, MIN_BIN_HEIGHT, bound)
    ones = jnp.ones((*derivatives.shape[:-1], 1), derivatives.dtype)
    inner = MIN_DERIVATIVE + jax.nn.softplus(derivatives + _DERIVATIVE_OFFSET)
    ds = jnp.concatenate([ones, inner, ones], axis=-1)

    inside = jnp.abs(value) <= bound
    # Evaluate the spline at a clamped input everywhere and select afterwards: the unused
    # branch then stays finite, so gradients through `where` are not NaN.
    v = jnp.clip(value, -bound, bound)
    knots_in = ys if inverse else xs
    index = jnp.sum((v[..., None] >= knots_in[..., 1:-1]).astype(jnp.int32), axis=-1)
    # One gather for each end of the bin, over the stacked knot tables (*S, 3, K + 1).
    table = jnp.stack([xs, ys, ds], axis=-2)
    start = jnp.take_along_axis(table, index[..., None, None], axis=-1)[..., 0]
    end = jnp.take_along_axis(table, index[..., None, None] + 1, axis=-1)[..., 0]
    x_k, y_k, d_k = start[..., 0], start[..., 1], start[..., 2]
    w_k, h_k, d_k1 = end[..., 0] - x_k, end[..., 1] - y_k, end[..., 2]
    s_k = h_k / w_k
    curvature = d_k1 + d_k - 2.0 * s_k

    if inverse:
        # Solve a ξ² + b ξ + c = 0 for ξ in [0, 1] with the root form 2c / (-b - √(b² - 4ac)),
        # which avoids the cancellation of the textbook formula (Durkan et al., eq. 29).
        dy = v - y_k
        a = h_k * (s_k - d_k) + dy * curvature
        b = h_k * d_k - dy * curvature
        c = -s_k * dy
        disc = jnp.maximum(b * b - 4.0 * a * c, 0.0)
        xi = jnp.clip(2.0 * c / (-b - jnp.sqrt(disc)), 0.0, 1.0)
        out = x_k + xi * w_k
    else:
        xi = jnp.clip((v - x_k) / w_k, 0.0, 1.0)
        one_minus = 1.0 - xi
        numerator = h_k * (s_k * xi * xi + d_k * xi * one_minus)
        out = y_k + numerator / (s_k + curvature * xi * one_minus)

    one_minus = 1.0 - xi
    denominator = s_k + curvature * xi * one_minus
    slope = d_k1 * xi * xi + 2.0 * s_k * xi * one_minus + d_k * one_minus * one_minus
    log_det = 2.0 * jnp.log(s_k) + jnp.log(slope) - 2.0 * jnp.log(denominator)
    if inverse:
        log_det = -log_det
    return jnp.where(inside, out, value), jnp.where(inside, log_det, 0.0)


class ConditionalSpline(nnx.Module):
    """Elementwise monotonic rational-quadratic spline whose knots depend on the context.

    Args:
      dim: D. context_dim: C (0: the `3K - 1` knot parameters per dimension are free).
      num_bins: K >= 2. bound: B > 0; outside `[-B, B]` the map is the identity.
      hidden: widths of the MLP from the context to the knot parameters.
    Starts as the identity (uniform bins, unit derivatives).
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        num_bins: int = 8,
        bound: float = 3.0,
        hidden: Sequence[int] = (32, 32),
        rngs: nnx.Rngs,
    ):
        self.num_bins, self.bound = int(num_bins), float(bound)
        self.params = _ConditionalParams(dim, context_dim, 3 * num_bins - 1, hidden, rngs=rngs)

    def _apply(self, value: Array, context: Array | None, inverse: bool) -> tuple[Array, Array]:
        num, k = value.shape[0], self.num_bins
        p = self.params(_context_or_empty(context, num), num)
        return rational_quadratic_spline(
            value, p[..., :k], p[..., k : 2 * k], p[..., 2 * k :], bound=self.bound, inverse=inverse
        )

    def forward(self, u: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`u (N, D) -> (x (N, D), log|dx/du| (N, D))`."""
        return self._apply(u, context, inverse=False)

    def inverse(self, x: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`x (N, D) -> (u (N, D), log|du/dx| (N, D))`."""
        return self._apply(x, context, inverse=True)


# -------------------------------------------------------------------------------------------
# Fixed output transforms for constrained attributes.


def _next_float32(bound: float, up: bool) -> float:
    """The nearest normal float32 strictly above (`up`) or below `bound`.

    Subnormal numbers are skipped: CPUs and accelerators flush them to zero, which would put
    a value back onto a bound of 0.
    """
    value = np.nextafter(np.float32(bound), np.float32(np.inf if up else -np.inf))
    tiny = np.finfo(np.float32).tiny
    if abs(value) < tiny:
        value = tiny if up else -tiny
    return float(value)


def _above(bound: float) -> float:
    return _next_float32(bound, up=True)


def _below(bound: float) -> float:
    return _next_float32(bound, up=False)


class Positive(nnx.Module):
    """`x = shift + softplus(y)` (or `shift + exp(y)`), so `x > shift`. No parameters.

    Softplus (the default) is linear for large `y`, which suits light right tails (thickness);
    exp (deepscm's choice) suits log-normal-like attributes.
    """

    def __init__(self, shift: float = 0.0, kind: str = "softplus"):
        if kind not in ("softplus", "exp"):
            raise ValueError(f"support: positive kind must be 'softplus' or 'exp', got {kind!r}")
        if not math.isfinite(float(shift)):
            raise ValueError(f"support: positive shift must be finite, got {shift!r}")
        self.shift, self.kind = float(shift), kind

    def forward(self, y: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`y (N, D) -> (x (N, D), log|dx/dy| (N, D))`, with `x > shift` strictly."""
        if self.kind == "exp":
            x, log_det = self.shift + jnp.exp(y), y
        else:
            x, log_det = self.shift + jax.nn.softplus(y), jax.nn.log_sigmoid(y)
        # In float32 a very negative y rounds x onto the bound (and exp overflows for large
        # y); keep x strictly inside and finite, so every output is a valid value of the node
        # with a finite inverse.
        return jnp.clip(x, _above(self.shift), _FLOAT32_MAX), log_det

    def inverse(self, x: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`x (N, D) -> (y (N, D), log|dy/dx| (N, D))`; NaN where `x <= shift`."""
        z = x - self.shift
        if self.kind == "exp":
            y = jnp.log(z)
            return y, -y
        # softplus⁻¹(z) = z + log(1 - e^{-z}), accurate for small and large z alike.
        y = z + jnp.log(-jnp.expm1(-z))
        return y, -jax.nn.log_sigmoid(y)

    def contains(self, x: Array) -> Array:
        return x > self.shift

    def interior_point(self) -> float:
        return self.shift + 1.0


class Interval(nnx.Module):
    """`x = low + (high - low) * sigmoid(y)`, so `low < x < high`. No parameters."""

    def __init__(self, low: float, high: float):
        if not (math.isfinite(float(low)) and math.isfinite(float(high)) and low < high):
            raise ValueError(f"support: interval needs finite low < high, got ({low!r}, {high!r})")
        self.low, self.high = float(low), float(high)

    def forward(self, y: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`y (N, D) -> (x (N, D), log|dx/dy| (N, D))`, with `low < x < high` strictly."""
        x = self.low + (self.high - self.low) * jax.nn.sigmoid(y)
        log_det = math.log(self.high - self.low) + jax.nn.log_sigmoid(y) + jax.nn.log_sigmoid(-y)
        # A saturated sigmoid rounds x onto a bound in float32; keep it strictly inside.
        return jnp.clip(x, _above(self.low), _below(self.high)), log_det

    def inverse(self, x: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`x (N, D) -> (y (N, D), log|dy/dx| (N, D))`; NaN outside `(low, high)`."""
        # Distances to both ends rather than p and 1 - p: no cancellation next to `high`.
        below, above = jnp.log(x - self.low), jnp.log(self.high - x)
        y = below - above
        return y, math.log(self.high - self.low) - below - above

    def contains(self, x: Array) -> Array:
        return (x > self.low) & (x < self.high)

    def interior_point(self) -> float:
        return 0.5 * (self.low + self.high)


def _support_transform(support: Any) -> Positive | Interval | None:
    """Validate a support spec: None, ("positive", shift[, kind]) or ("interval", low, high)."""
    if support is None:
        return None
    if not isinstance(support, tuple | list) or not support or support[0] not in SUPPORTS:
        raise ValueError(
            f"support: expected None, ('positive', shift), ('positive', shift, 'exp') or "
            f"('interval', low, high), got {support!r}"
        )
    kind, *args = support
    try:
        args = [a if isinstance(a, str) else float(a) for a in args]
    except (TypeError, ValueError):
        raise ValueError(f"support: expected numeric bounds, got {support!r}") from None
    if kind == "positive" and len(args) in (1, 2) and not isinstance(args[0], str):
        return Positive(*args)
    if kind == "interval" and len(args) == 2 and not any(isinstance(a, str) for a in args):
        return Interval(*args)
    raise ValueError(
        f"support: expected ('positive', shift), ('positive', shift, 'exp') or "
        f"('interval', low, high), got {support!r}"
    )


def _support_spec(transform: Positive | Interval | None) -> tuple | None:
    if isinstance(transform, Positive):
        return ("positive", transform.shift, transform.kind)
    if isinstance(transform, Interval):
        return ("interval", transform.low, transform.high)
    return None


# -------------------------------------------------------------------------------------------
# The flow.


class ConditionalFlow(nnx.Module):
    """A conditional normalizing flow `x = f(u; c)`, `u ~ N(0, I_D)`, over `(N, D)` values.

    Args:
      dim: D, the attribute dimension.
      context_dim: C, the context width (0: an unconditional flow).
      layers: bijector names applied to u in order, each "spline" or "affine"; default
        ("spline", "affine") as deepscm's thickness flow.
      num_layers: instead of `layers`, this many ("spline", "affine") pairs.
      num_bins, bound: K and B of every spline (identity outside `[-B, B]`).
      hidden: MLP widths from the context to each bijector's parameters.
      support: None (x real), ("positive", shift) for `x > shift` (softplus; add "exp" as a
        third entry for exp), or ("interval", low, high) for `low < x < high`; applied last.
      rngs: initialisation randomness (hidden layers; output layers start at zero, so an
        untrained flow is its base distribution pushed through the support transform).

    Every method is a pure function of the module's parameters: jit, grad and vmap apply.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        layers: Sequence[str] | None = None,
        num_layers: int | None = None,
        num_bins: int = 8,
        bound: float = 3.0,
        hidden: Sequence[int] = (32, 32),
        support: Any = None,
        rngs: nnx.Rngs,
    ):
        self.dim = check_int(dim, "dim", 1)
        self.context_dim = check_int(context_dim, "context_dim", 0)
        if layers is not None and num_layers is not None:
            raise ValueError("layers, num_layers: pass at most one of them")
        if num_layers is not None:
            layers = ("spline", "affine") * check_int(num_layers, "num_layers", 1)
        layers = ("spline", "affine") if layers is None else layers
        if isinstance(layers, str) or not layers or any(n not in LAYERS for n in layers):
            raise ValueError(
                f"layers: expected a non-empty sequence of names from {LAYERS}, got {layers!r}"
            )
        num_bins = check_int(num_bins, "num_bins", 2)
        if (
            isinstance(bound, bool)
            or not isinstance(bound, numbers.Real)
            or not 0 < bound < math.inf
        ):
            raise ValueError(f"bound: expected a finite number > 0, got {bound!r}")
        bound = float(bound)
        if isinstance(hidden, int) or any(
            isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1 for h in hidden
        ):
            raise ValueError(f"hidden: expected a sequence of positive ints, got {hidden!r}")
        self.layer_names = tuple(layers)
        self.support_transform = _support_transform(support)
        #: The validated support spec with float bounds, e.g. ("positive", 0.5, "softplus").
        self.support = _support_spec(self.support_transform)
        bijectors = []
        for name in self.layer_names:
            if name == "affine":
                bijectors.append(ConditionalAffine(dim, context_dim, hidden=hidden, rngs=rngs))
            else:
                bijectors.append(
                    ConditionalSpline(
                        dim, context_dim, num_bins=num_bins, bound=bound, hidden=hidden, rngs=rngs
                    )
                )
        self.bijectors = nnx.List(bijectors)

    # Boundary checks (shapes are static, so these run once per trace) ----------------------

    def _check(self, value: Array, context: Array | None, argument: str) -> tuple[Array, Array]:
        value = jnp.asarray(value)
        if value.ndim != 2 or value.shape[1] != self.dim:
            raise ValueError(
                f"{argument}: expected shape (N, {self.dim}) (dim={self.dim}), got {value.shape}"
            )
        num = value.shape[0]
        if context is None:
            if self.context_dim:
                raise ValueError(
                    f"context: the flow is conditional (context_dim={self.context_dim}); pass "
                    f"a context of shape (N, {self.context_dim})"
                )
            context = jnp.zeros((num, 0), jnp.float32)
        context = jnp.asarray(context)
        if context.shape != (num, self.context_dim):
            raise ValueError(
                f"context: expected shape ({num}, {self.context_dim}) (N, context_dim), got "
                f"{context.shape}"
            )
        return value.astype(jnp.float32), context.astype(jnp.float32)

    # Maps -----------------------------------------------------------------------------------

    def _steps(self):
        steps = list(self.bijectors)
        return steps if self.support_transform is None else [*steps, self.support_transform]

    def forward_and_log_det(self, u: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`u (N, D) -> (x (N, D), log|det dx/du| (N,))`."""
        x, context = self._check(u, context, "u")
        total = jnp.zeros(x.shape, jnp.float32)
        for step in self._steps():
            x, log_det = step.forward(x, context)
            total = total + log_det
        return x, jnp.sum(total, axis=1)

    def inverse_and_log_det(self, x: Array, context: Array | None = None) -> tuple[Array, Array]:
        """`x (N, D) -> (u (N, D), log|det du/dx| (N,))`; NaN outside the support."""
        u, context = self._check(x, context, "x")
        total = jnp.zeros(u.shape, jnp.float32)
        for step in reversed(self._steps()):
            u, log_det = step.inverse(u, context)
            total = total + log_det
        return u, jnp.sum(total, axis=1)

    def forward(self, u: Array, context: Array | None = None) -> Array:
        """Push base noise `u (N, D)` to values `x (N, D)` given `context (N, C)`."""
        return self.forward_and_log_det(u, context)[0]

    def inverse(self, x: Array, context: Array | None = None) -> Array:
        """The base noise `u (N, D)` of values `x (N, D)` given `context (N, C)`."""
        return self.inverse_and_log_det(x, context)[0]

    def contains(self, x: Array) -> Array:
        """Per unit, whether every entry of `x (N, D)` lies in the support: `(N,)` bool."""
        if self.support_transform is None:
            return jnp.ones(x.shape[:1], jnp.bool_)
        return jnp.all(self.support_transform.contains(x), axis=1)

    def log_prob(self, x: Array, context: Array | None = None) -> Array:
        """`log p(x | context)` per unit, `(N,)`; `-inf` outside the support.

        Differentiable in the parameters (the training objective): values outside the
        support are replaced by an interior point before the inverse so no NaN leaks into
        gradients, then masked.
        """
        x, context = self._check(x, context, "x")
        ok = self.contains(x)
        if self.support_transform is not None:
            x = jnp.where(ok[:, None], x, self.support_transform.interior_point())
        u, log_det = self.inverse_and_log_det(x, context)
        base = jnp.sum(-0.5 * u * u - _HALF_LOG_2PI, axis=1)
        return jnp.where(ok, base + log_det, -jnp.inf)

    def sample(self, key: Array, context: Array | int) -> Array:
        """Draws `x (N, D)`: one per row of `context (N, C)`, or `N = context` if an int.

        An int is only accepted for an unconditional flow (context_dim 0).
        """
        if isinstance(context, int | np.integer) and not isinstance(context, bool):
            if self.context_dim:
                raise ValueError(
                    f"context: the flow is conditional (context_dim={self.context_dim}); pass "
                    f"a context array (N, {self.context_dim}) instead of a count"
                )
            num, context = check_int(context, "context", 1), None
        else:
            context = jnp.asarray(context)
            if context.ndim != 2:
                raise ValueError(f"context: expected shape (N, C), got {context.shape}")
            num = context.shape[0]
        u = jax.random.normal(key, (num, self.dim), jnp.float32)
        return self.forward(u, context)


# -------------------------------------------------------------------------------------------
# The SCM mechanism.


class _FlowDistribution(dist.Distribution):
    """`p(x | parents)` of a `FlowMechanism` as a numpyro distribution (batch `(N,)`).

    Lets an SCM with flow nodes become a numpyro model (`SCM.to_numpyro`, `SCM.fit`).
    """

    arg_constraints: ClassVar[dict] = {}
    pytree_data_fields = ("mechanism", "parent_values")

    def __init__(self, mechanism: FlowMechanism, parent_values: Parents, num_units: int):
        self.mechanism, self.parent_values = mechanism, dict(parent_values)
        event = () if mechanism.flow.dim == 1 else (mechanism.flow.dim,)
        super().__init__((num_units,), event)

    @constraints.dependent_property(is_discrete=False)
    def support(self):
        spec, event_dims = self.mechanism.flow.support, len(self.event_shape)
        if spec is None:
            base = constraints.real
        elif spec[0] == "positive":
            base = constraints.greater_than(spec[1])
        else:
            base = constraints.open_interval(spec[1], spec[2])
        return constraints.independent(base, event_dims) if event_dims else base

    def _flat(self, value: Array, sample_shape: tuple[int, ...]) -> tuple[Array, Parents]:
        """Fold leading sample axes into the unit axis, tiling the parents to match."""
        reps = math.prod(sample_shape)
        parents = {
            n: jnp.reshape(jnp.broadcast_to(v, (*sample_shape, *v.shape)), (-1, *v.shape[1:]))
            for n, v in self.parent_values.items()
        }
        return jnp.reshape(value, (reps * self.batch_shape[0], *self.event_shape)), parents

    def sample(self, key, sample_shape=()):
        sample_shape = tuple(sample_shape)
        shape = (*sample_shape, *self.batch_shape, *self.event_shape)
        u = jax.random.normal(key, shape, jnp.float32)
        flat, parents = self._flat(u, sample_shape)
        return jnp.reshape(self.mechanism.predict(flat, parents), shape)

    def log_prob(self, value):
        value = jnp.asarray(value)
        lead = value.shape[: value.ndim - len(self.event_shape) - 1]
        flat, parents = self._flat(value, lead)
        return jnp.reshape(self.mechanism.log_prob(flat, parents), (*lead, *self.batch_shape))


@mechanism_dataclass
class FlowMechanism(Mechanism):
    """A node `x = f(u; pa)`, `u ~ N(0, I)`, given by a `ConditionalFlow`: exact abduction.

    Args:
      flow: a `ConditionalFlow` whose `context_dim` matches the parents' context width.
      parents: parent names; their values, flattened and concatenated as float, are the
        context `(N, P)` (`P` = number of scalar parents). Leave empty when using `encoding`.
      encoding: optional `ParentEncoding` (one-hot categorical parents, standardised
        continuous ones); it then defines the parents. Standardising a continuous parent
        (e.g. thickness with offset 2.5 and scale 0.63) helps the context MLP train.

    Node values are `(N,)` for `dim == 1` and `(N, D)` otherwise; so is the noise.
    """

    flow: ConditionalFlow
    parents: tuple[str, ...] = ()
    encoding: ParentEncoding | None = None
    _static_fields: ClassVar[tuple[str, ...]] = ("parents", "encoding")
    exact_abduction: ClassVar[bool] = True

    def __post_init__(self):
        if not isinstance(self.flow, ConditionalFlow):
            raise ValueError(f"flow: expected a ConditionalFlow, got {type(self.flow).__name__}")
        parents = tuple(self.parents)
        if self.encoding is not None:
            if not isinstance(self.encoding, ParentEncoding):
                raise ValueError(f"encoding: expected a ParentEncoding, got {self.encoding!r}")
            if parents and parents != self.encoding.names:
                raise ValueError(
                    f"parents: {parents} differ from the encoding's {self.encoding.names}; "
                    f"pass only `encoding`"
                )
            parents, width = self.encoding.names, self.encoding.size
        else:
            width = len(parents)
        if width != self.flow.context_dim:
            raise ValueError(
                f"flow: context_dim is {self.flow.context_dim} but the parents {parents} give a "
                f"context of width {width}"
            )
        object.__setattr__(self, "parents", parents)

    # Shapes ---------------------------------------------------------------------------------

    def context(self, parents: Parents, num_units: int) -> Array:
        """The flow's context `(N, C)` float32 from parent values."""
        if self.encoding is not None:
            return self.encoding(parents)
        return _stack_parents(parents, self.parents, num_units)

    def _as_matrix(self, value: Array, argument: str) -> Array:
        value = jnp.asarray(value)
        expected = 1 if self.flow.dim == 1 else 2
        if value.ndim != expected or (expected == 2 and value.shape[1] != self.flow.dim):
            shape = "(N,)" if self.flow.dim == 1 else f"(N, {self.flow.dim})"
            raise ValueError(f"{argument}: expected shape {shape}, got {value.shape}")
        value = value.astype(jnp.float32)
        return value[:, None] if self.flow.dim == 1 else value

    def _as_node(self, matrix: Array) -> Array:
        return matrix[:, 0] if self.flow.dim == 1 else matrix

    # Protocol -------------------------------------------------------------------------------

    def sample_noise(self, key: Array, num_units: int) -> Array:
        shape = (num_units,) if self.flow.dim == 1 else (num_units, self.flow.dim)
        return jax.random.normal(key, shape, jnp.float32)

    def predict(self, noise: Array, parents: Parents) -> Array:
        u = self._as_matrix(noise, "noise")
        return self._as_node(self.flow.forward(u, self.context(parents, u.shape[0])))

    def abduct(
        self,
        value: Array,
        parents: Parents,
        key: Array | None = None,
        num_samples: int | None = None,
    ) -> Array:
        x = self._as_matrix(value, "value")
        u = self._as_node(self.flow.inverse(x, self.context(parents, x.shape[0])))
        return self._broadcast_noise(u, num_samples)

    def log_prob(self, value: Array, parents: Parents) -> Array:
        """`log p(x | parents)` per unit `(N,)` by the change of variables; -inf off support."""
        x = self._as_matrix(value, "value")
        return self.flow.log_prob(x, self.context(parents, x.shape[0]))

    def distribution(self, parents: Parents, num_units: int) -> dist.Distribution:
        return _FlowDistribution(self, {p: parents[p] for p in self.parents}, num_units)

    def in_support(self, value: Any) -> np.ndarray | None:
        transform = self.flow.support_transform
        if transform is None:
            return None
        ok = np.asarray(transform.contains(jnp.asarray(value, jnp.float32)))
        return ok if ok.ndim <= 1 else ok.reshape(ok.shape[0], -1).all(axis=1)

    def parameters(self) -> dict[str, tuple[Array, constraints.Constraint]]:
        return {
            "flow" + jax.tree_util.keystr(path): (leaf, constraints.real)
            for path, leaf in jax.tree_util.tree_flatten_with_path(self.flow)[0]
            if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating)
        }

    def with_parameters(self, values: Mapping[str, Array]) -> FlowMechanism:
        unknown = set(values) - set(self.parameters())
        if unknown:
            raise ValueError(f"FlowMechanism: unknown parameter(s) {sorted(unknown)}")
        paths, treedef = jax.tree_util.tree_flatten_with_path(self.flow)
        leaves = [values.get("flow" + jax.tree_util.keystr(p), leaf) for p, leaf in paths]
        return dataclasses.replace(self, flow=jax.tree.unflatten(treedef, leaves))


# -------------------------------------------------------------------------------------------
# Training.


def fit_flow_mechanism(
    mechanism: FlowMechanism,
    data: Mapping[str, Any],
    *,
    node: str,
    steps: int = 2000,
    learning_rate: float = 1e-2,
    batch_size: int = 256,
    key: Array,
    optimizer: optax.GradientTransformation | None = None,
) -> tuple[FlowMechanism, np.ndarray]:
    """Maximum-likelihood training of a `FlowMechanism` on minibatches; returns a new one.

    Args:
      mechanism: the mechanism to train (left unchanged).
      data: node name -> values `(N,)` (or `(N, D)` for the node itself); must hold `node`
        and every parent.
      node: the name of the mechanism's own node in `data`.
      steps: optimisation steps, all in one compiled `lax.scan`.
      learning_rate: peak Adam learning rate (cosine-decayed to 5% over `steps`).
      batch_size: units per step, drawn uniformly with replacement.
      key: PRNG key for the minibatches.
      optimizer: an optax transformation replacing the default Adam schedule.
    Returns:
      `(fitted mechanism, per-step mean negative log-likelihood (steps,))`.
    """
    if not isinstance(mechanism, FlowMechanism):
        raise ValueError(f"mechanism: expected a FlowMechanism, got {type(mechanism).__name__}")
    steps = check_int(steps, "steps", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    if not isinstance(learning_rate, numbers.Real) or not learning_rate > 0:
        raise ValueError(f"learning_rate: expected a number > 0, got {learning_rate!r}")
    if not isinstance(data, Mapping):
        raise ValueError(f"data: expected a dict of arrays, got {type(data).__name__}")
    missing = [n for n in (node, *mechanism.parents) if n not in data]
    if missing:
        raise ValueError(f"data: missing {missing} (need {node!r} and its parents)")
    arrays = {n: jnp.asarray(data[n]) for n in (node, *mechanism.parents)}
    sizes = {n: a.shape[0] if a.ndim else None for n, a in arrays.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"data: expected arrays with one leading unit axis of equal length, got "
                         f"{sizes}")  # fmt: skip
    mechanism._as_matrix(arrays[node], f"data[{node!r}]")
    ok = mechanism.in_support(np.asarray(arrays[node]))
    if ok is not None and not ok.all():
        raise ValueError(
            f"data[{node!r}]: {int((~ok).sum())} value(s) outside the flow's support "
            f"{mechanism.flow.support}"
        )
    num = next(iter(sizes.values()))

    if optimizer is None:
        schedule = optax.cosine_decay_schedule(float(learning_rate), steps, alpha=0.05)
        optimizer = optax.adam(schedule)
    graphdef, params, rest = nnx.split(mechanism.flow, nnx.Param, ...)

    def loss_fn(params, batch):
        flow = nnx.merge(graphdef, params, rest)
        mech = dataclasses.replace(mechanism, flow=flow)
        parents = {p: batch[p] for p in mechanism.parents}
        return -jnp.mean(mech.log_prob(batch[node], parents))

    @jax.jit
    def train(params, arrays, key):
        with lenient_promotion():  # optax mixes its int step counter with floats
            opt_state = optimizer.init(params)

        def step(carry, key):
            params, opt_state = carry
            index = jax.random.randint(key, (batch_size,), 0, num)
            batch = {n: a[index] for n, a in arrays.items()}
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            with lenient_promotion():
                updates, opt_state = optimizer.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
            return (params, opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, opt_state), jax.random.split(key, steps))
        return params, losses

    params, losses = train(params, arrays, key)
    losses = np.asarray(losses)
    if not np.isfinite(losses[-1]):
        raise FloatingPointError(
            "fit_flow_mechanism: the loss became non-finite; lower learning_rate or check data"
        )
    return dataclasses.replace(mechanism, flow=nnx.merge(graphdef, params, rest)), losses
