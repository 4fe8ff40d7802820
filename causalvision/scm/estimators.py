"""Estimators of interventional quantities from observational data, for a given causal graph.

Data is a dict ``node -> array of shape (N,)`` (one value per unit). Two families:

* **Discrete** (every involved column integer or bool): exact plug-in estimates from counts.
  Units are collapsed into the cells of the joint table; every quantity is a function of the
  cell counts, so a bootstrap resample of the units is a multinomial draw of cell counts.
* **Continuous or mixed**: regression, either ordinary least squares with an intercept
  (``regressor="linear"``) or a small Flax NNX MLP (``regressor="mlp"``), plugged into the
  back-door / front-door formula.

Every estimator is a pure function of ``(arrays, weights, key)``; standard errors come from a
nonparametric bootstrap that ``vmap``s that function over resampling weights.

No confident number where the data cannot support one. Refused (``ValueError``): fewer than
10 units, or fewer than twice as many as a regression has coefficients (a bootstrap over a
handful of units gives no usable standard error); a treatment that never varies while the
query asks for another value; a discrete treatment value never observed, or missing from a
stratum of the discrete estimators (positivity violated: the formula is undefined). Warned
about (``UserWarning``), as the estimate exists but rests on little: a (treatment, stratum)
cell of the discrete estimators with fewer than 3 units (a bootstrap resample then misses it
more than 5% of the time and reuses its full-data mean, so the standard error comes out too
small) or with an empirical propensity ``P(T = t | stratum)`` below 0.01; for regressions, a
discrete treatment value held by fewer than 3 units, strata without that value holding over
1% of the units (the model extrapolates there), and a continuous treatment value outside the
observed range.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from causalvision.graph import CausalGraph
from causalvision.scm._compat import lenient_promotion
from causalvision.scm._validation import as_node_list, check_data
from causalvision.scm.estimate import Estimate
from causalvision.validation import check_int, check_key, warn

__all__ = [
    "backdoor_adjustment",
    "estimate_effect",
    "frontdoor_adjustment",
    "interventional_distribution",
]

_REGRESSORS = ("linear", "mlp")
_METHODS = ("auto", "backdoor", "frontdoor")

# MLP regressor: two hidden layers, full-batch adam inside one `lax.scan`.
_MLP_HIDDEN = 64
_MLP_STEPS = 300
_MLP_LEARNING_RATE = 1e-2
# Front-door with an MLP: Monte Carlo pairs (residual i, treatment j) per treatment value.
_MAX_PAIRS = 2000
# Bootstrap: draw cell counts with `jax.random.multinomial` (a scan over cells) up to this many
# cells, else resample units; bound the size of one vmapped chunk of resamples.
_MAX_MULTINOMIAL_CELLS = 4096
_CHUNK_ELEMENTS = 1 << 22
# Reliability thresholds (see the module docstring for why these values).
_MIN_UNITS = 10  # units below which no estimate is given
_FEW_UNITS = 3  # units of a cell below which a resample misses it > 5% of the time (e^-3)
_MIN_PROPENSITY = 0.01  # P(T = t | stratum), or the share of units extrapolated to


def _float_dtype() -> jnp.dtype:
    return jnp.dtype(jnp.result_type(float))


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _is_discrete_dtype(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_))


def _columns(data: Mapping[str, Any], required: Sequence[str]) -> tuple[dict[str, jax.Array], int]:
    """Check the involved columns (present, 1-D, same size, no NaN) and return them."""
    if not isinstance(data, Mapping):
        raise TypeError(f"data: expected a dict of node -> array, got {type(data).__name__}")
    subset = {name: data[name] for name in dict.fromkeys(required) if name in data}
    arrays, size = check_data(subset, required, "data")
    for name, array in arrays.items():
        if array.ndim != 1:
            raise ValueError(
                f"data[{name!r}]: expected a 1-D array (one value per unit), got shape "
                f"{tuple(array.shape)}"
            )
        if not (_is_discrete_dtype(array.dtype) or jnp.issubdtype(array.dtype, jnp.floating)):
            raise ValueError(
                f"data[{name!r}]: expected a numeric or bool column, got dtype {array.dtype}"
            )
    if size == 0:
        raise ValueError("data: expected at least one unit, got columns of length 0")
    return arrays, size


def _check_roles(treatment: str, outcome: str, zs: Sequence[str], argument: str) -> None:
    for name, what in ((treatment, "treatment"), (outcome, "outcome")):
        if not isinstance(name, str):
            raise TypeError(f"{what}: expected a node name (str), got {name!r}")
    if treatment == outcome:
        raise ValueError(f"treatment and outcome: expected two different nodes, got {treatment!r}")
    for name, what in ((treatment, "treatment"), (outcome, "outcome")):
        if name in zs:
            raise ValueError(
                f"{argument}: must not contain the {what} {name!r}, got {sorted(set(zs))}"
            )


def _check_options(regressor: str, num_bootstrap: int, key: jax.Array | None) -> jax.Array:
    if regressor not in _REGRESSORS:
        raise ValueError(f"regressor: expected one of {list(_REGRESSORS)}, got {regressor!r}")
    check_int(num_bootstrap, "num_bootstrap", 0)
    if num_bootstrap == 1:  # one replicate has no spread: a standard error of 0
        raise ValueError("num_bootstrap: expected 0 (no standard error) or an int >= 2, got 1")
    if key is None:
        if num_bootstrap > 0 or regressor == "mlp":
            why = "the MLP's initialisation" if regressor == "mlp" else "the bootstrap"
            raise ValueError(
                f"key: {why} draws random numbers; pass a PRNG key (or num_bootstrap=0 with "
                "the linear or discrete estimator, which draw none)"
            )
        return jax.random.key(0)  # never used: nothing here draws
    return check_key(key)


def _is_discrete(arrays: Mapping[str, jax.Array], discrete: bool | None) -> bool:
    if discrete is None:
        return all(_is_discrete_dtype(a.dtype) for a in arrays.values())
    if not isinstance(discrete, bool | np.bool_):
        raise TypeError(f"discrete: expected True, False or None, got {discrete!r}")
    return bool(discrete)


def _scalar(value: Any, argument: str) -> Any:
    array = np.asarray(value)
    if array.ndim != 0 or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise ValueError(f"{argument}: expected a scalar treatment value, got {value!r}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array):
        raise ValueError(f"{argument}: expected a finite scalar treatment value, got {value!r}")
    return array.item()


def _check_size(size: int, need: int, what: str) -> None:
    if size < need:
        raise ValueError(f"data: {size} rows are too few to estimate {what}; need at least {need}")


def _check_varies(column: np.ndarray, treatment: str, values: Sequence[Any]) -> None:
    """Refuse a query for a treatment value that a constant treatment column never takes."""
    first = column[0]
    if (column == first).all() and any(v != first for v in values):
        other = next(v for v in values if v != first)
        raise ValueError(
            f"treatment {treatment!r} never varies in data (positivity violated): every unit "
            f"has {treatment}={first.item()!r}, so nothing is known of {treatment}={other!r}"
        )


# --------------------------------------------------------------------------------------------
# Discrete: encoding units into cells of the joint table
# --------------------------------------------------------------------------------------------


def _encode(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes in ``[0, K)`` (shape (N,)) and the K sorted levels of one column (host side)."""
    levels, codes = np.unique(column, return_inverse=True)
    return codes.reshape(-1), levels


def _joint(columns: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint code over several columns, compacted to the observed combinations.

    Returns the codes (N,) in ``[0, K)`` and the index of one unit per combination (K,).
    Compacting after every column keeps the codes below N times a column's cardinality.
    """
    codes = np.zeros(size, np.int64)
    first = np.zeros(1, np.int64)
    for column in columns:
        column_codes, levels = _encode(column)
        combined = codes * len(levels) + column_codes
        _, first, codes = np.unique(combined, return_index=True, return_inverse=True)
        codes = codes.reshape(-1)
    return codes, first


def _padded(array: np.ndarray, length: int) -> np.ndarray:
    return np.concatenate(
        [array, np.zeros((length - array.shape[0], *array.shape[1:]), array.dtype)]
    )


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    return num / jnp.where(den > 0, den, jnp.ones_like(den))


def _pair_means(
    arrays: Mapping[str, jax.Array], w: jax.Array, num_pairs: int
) -> tuple[jax.Array, jax.Array]:
    """Weighted count (P,) and mean outcome (P, D) of every observed (treatment, stratum) pair.

    A pair that a resample misses gets its full-data mean (``arrays["fallback"]``).
    """
    n = jax.ops.segment_sum(w, arrays["pair"], num_pairs)
    sums = jax.ops.segment_sum(jnp.expand_dims(w, 1) * arrays["y"], arrays["pair"], num_pairs)
    present = jnp.expand_dims(n, 1) > 0
    return n, jnp.where(present, _safe_div(sums, jnp.expand_dims(n, 1)), arrays["fallback"])


def _backdoor_discrete(
    arrays: Mapping[str, jax.Array], w: jax.Array, key: jax.Array, config: tuple
) -> jax.Array:
    """``Σ_z E[y | t, z] P(z)`` for every target treatment t; (V, D).

    ``arrays["lookup"]`` (V, S) holds the pair (t, z) of every target and stratum: all exist,
    as positivity was checked on the data.
    """
    del key
    _, num_s, num_pairs = config
    n, means = _pair_means(arrays, w, num_pairs)
    p_s = jax.ops.segment_sum(n, arrays["pair_s"], num_s) / w.sum()
    return jnp.einsum("vsd,s->vd", means[arrays["lookup"]], p_s)


def _frontdoor_discrete(
    arrays: Mapping[str, jax.Array], w: jax.Array, key: jax.Array, config: tuple
) -> jax.Array:
    """``Σ_m P(m | t) Σ_t' E[y | t', m] P(t')`` for every target treatment t; (V, D).

    ``arrays["lookup"]`` (V, S) holds the pair (t, m) of every target and mediator stratum, -1
    where the target never occurs with m (there P(m | t) = 0).
    """
    del key
    num_t, num_s, num_pairs = config
    n, means = _pair_means(arrays, w, num_pairs)
    p_t = jax.ops.segment_sum(n, arrays["pair_t"], num_t) / w.sum()
    weighted = means * jnp.expand_dims(p_t[arrays["pair_t"]], 1)
    inner = jax.ops.segment_sum(weighted, arrays["pair_s"], num_s)  # (S, D)
    lookup = arrays["lookup"]
    n_tm = jnp.where(lookup >= 0, n[jnp.maximum(lookup, 0)], jnp.zeros_like(n, shape=()))
    totals = n_tm.sum(axis=1, keepdims=True)
    p_m = jnp.where(totals > 0, _safe_div(n_tm, totals), arrays["fallback_p_m"])
    return p_m @ inner


def _stratum_text(names: Sequence[str], columns: Sequence[np.ndarray], unit: int) -> str:
    if not names:
        return "{} (no adjustment)"
    values = ", ".join(f"{n}={c[unit].item()!r}" for n, c in zip(names, columns, strict=True))
    return "{" + values + "}"


class _Strata(NamedTuple):
    """Units grouped by treatment level and stratum (an observed combination of the set)."""

    t_codes: np.ndarray  # (N,) treatment level of every unit
    t_levels: np.ndarray  # (T,) sorted treatment values
    z_columns: list[np.ndarray]  # the set's columns
    s_codes: np.ndarray  # (N,) stratum of every unit
    s_first: np.ndarray  # (S,) one unit of every stratum
    pair_codes: np.ndarray  # (N,) (treatment, stratum) pair of every unit
    pair_t: np.ndarray  # (P,) treatment level of every pair
    pair_s: np.ndarray  # (P,) stratum of every pair
    lookup: np.ndarray  # (V, S) the pair of every target value and stratum, -1 if none


def _strata(
    columns: Mapping[str, np.ndarray],
    size: int,
    treatment: str,
    zs: Sequence[str],
    values: Sequence[Any],
    value_args: Sequence[str],
) -> _Strata:
    """Encode the units into (treatment, stratum) pairs; every target value must occur."""
    t_codes, t_levels = _encode(columns[treatment])
    targets = []
    for value, argument in zip(values, value_args, strict=True):
        matches = np.flatnonzero(t_levels == value)
        if matches.size == 0:
            raise ValueError(
                f"{argument}: the treatment {treatment!r} never takes the value {value!r} in the "
                f"data; observed values are {t_levels.tolist()}"
            )
        targets.append(int(matches[0]))
    z_columns = [columns[z] for z in zs]
    s_codes, s_first = _joint(z_columns, size)
    pair_codes, pair_first = _joint([t_codes, s_codes], size)
    pair_t, pair_s = t_codes[pair_first], s_codes[pair_first]
    lookup = np.full((len(targets), len(s_first)), -1, np.int64)
    for v, target in enumerate(targets):
        (found,) = np.nonzero(pair_t == target)
        lookup[v, pair_s[found]] = found
    return _Strata(
        t_codes, t_levels, z_columns, s_codes, s_first, pair_codes, pair_t, pair_s, lookup
    )


def _where(zs: Sequence[str], strata: _Strata, stratum: int, kind: str) -> str:
    if not zs:
        return " in the data"
    text = _stratum_text(zs, strata.z_columns, int(strata.s_first[stratum]))
    return f" with mediators {text}" if kind == "frontdoor" else f" in the stratum {text}"


def _check_positivity(
    strata: _Strata, treatment: str, zs: Sequence[str], values: Sequence[Any], kind: str
) -> None:
    """Refuse a plug-in formula that positivity leaves undefined; warn where it barely holds.

    Back-door needs every target value in every stratum; front-door needs every treatment
    value with every mediator stratum that a target value reaches. The cells that enter the
    estimate must hold at least `_FEW_UNITS` units and a propensity of `_MIN_PROPENSITY`.
    """
    t_levels, lookup, pair_t, pair_s = strata.t_levels, strata.lookup, strata.pair_t, strata.pair_s
    num_t, num_s = len(t_levels), len(strata.s_first)
    if kind == "backdoor":
        for v, value in enumerate(values):
            (bad,) = np.nonzero(lookup[v] < 0)
            if bad.size:
                raise ValueError(
                    f"positivity violated: no unit has treatment {treatment}={value!r} in the "
                    f"stratum {_stratum_text(zs, strata.z_columns, int(strata.s_first[bad[0]]))} "
                    f"({bad.size} such strata); P({treatment}={value!r} | {', '.join(zs)}) = 0 "
                    f"there, so the back-door adjustment is not defined"
                )
        used = np.unique(lookup)
    else:
        pairs_per_stratum = np.bincount(pair_s, minlength=num_s)
        for v, value in enumerate(values):
            (bad,) = np.nonzero((lookup[v] >= 0) & (pairs_per_stratum < num_t))
            if bad.size:
                missing = np.setdiff1d(np.arange(num_t), pair_t[pair_s == bad[0]])[0]
                raise ValueError(
                    f"positivity violated: no unit has treatment {treatment}="
                    f"{t_levels[missing].item()!r} with mediators "
                    f"{_stratum_text(zs, strata.z_columns, int(strata.s_first[bad[0]]))}, which "
                    f"occur under {treatment}={value!r}; the front-door adjustment is not defined"
                )
        reached = np.unique(pair_s[lookup[lookup >= 0]])
        used = np.flatnonzero(np.isin(pair_s, reached))
    pair_n = np.bincount(strata.pair_codes, minlength=len(pair_t))[used]
    propensity = pair_n / np.bincount(strata.s_codes, minlength=num_s)[pair_s[used]]
    reasons = []
    for mask, why in (
        (pair_n < _FEW_UNITS, f"fewer than {_FEW_UNITS} units"),
        (propensity < _MIN_PROPENSITY, f"a propensity below {_MIN_PROPENSITY}"),
    ):
        if mask.any():
            first = int(np.argmax(mask))
            pair = used[first]
            level = t_levels[pair_t[pair]].item()
            reasons.append(
                f"{mask.sum()} (treatment, stratum) cell(s) have {why}, e.g. {pair_n[first]} "
                f"unit(s) with {treatment}={level!r}{_where(zs, strata, pair_s[pair], kind)} "
                f"(P = {propensity[first]:.3g})"
            )
    if reasons:
        warn(
            f"positivity nearly violated: {'; '.join(reasons)}. The estimate leans on a "
            f"handful of units there, and its bootstrap standard error is unreliable"
        )


def _check_regression_support(
    columns: Mapping[str, np.ndarray],
    size: int,
    treatment: str,
    zs: Sequence[str],
    values: Sequence[Any],
    value_args: Sequence[str],
    kind: str,
) -> None:
    """Positivity for a regression: it is defined everywhere, so only warn where it extrapolates.

    A discrete (integer or bool) treatment value must occur, in the strata of the discrete
    columns of the set as the plug-in formula would need it; a continuous one should lie in
    the observed range.
    """
    column = columns[treatment]
    if not _is_discrete_dtype(column.dtype):
        low, high = column.min().item(), column.max().item()
        outside = [v for v in values if not low <= v <= high]
        if outside:
            warn(
                f"treatment {treatment!r}: the value {outside[0]!r} lies outside the observed "
                f"range [{low:.4g}, {high:.4g}]; the regression extrapolates beyond the data"
            )
        return
    discrete_zs = [z for z in zs if _is_discrete_dtype(columns[z].dtype)]
    strata = _strata(columns, size, treatment, discrete_zs, values, value_args)
    levels_per_stratum = np.bincount(strata.pair_s, minlength=len(strata.s_first))
    for v, value in enumerate(values):
        arm = int((column == value).sum())
        if kind == "backdoor":  # strata where the value never occurs
            lacking = strata.lookup[v] < 0
        else:  # mediator strata the value reaches that lack another treatment value
            lacking = (strata.lookup[v] >= 0) & (levels_per_stratum < len(strata.t_levels))
        share = np.isin(strata.s_codes, np.flatnonzero(lacking)).mean()
        if arm < _FEW_UNITS:
            warn(
                f"positivity nearly violated: only {arm} unit(s) have {treatment}={value!r}; "
                f"the regression's estimate there rests on them alone"
            )
        elif share > _MIN_PROPENSITY:
            where = _where(discrete_zs, strata, int(np.argmax(lacking)), kind)
            missing = (
                f"no unit has {treatment}={value!r}{where}"
                if kind == "backdoor"
                else f"not every value of {treatment} occurs{where}, reached from {value!r}"
            )
            warn(
                f"positivity violated for {share:.1%} of the units: {missing} "
                f"({lacking.sum()} such strata); the regression extrapolates there"
            )


def _discrete_setup(
    arrays: Mapping[str, jax.Array],
    size: int,
    treatment: str,
    outcome: str,
    zs: Sequence[str],
    values: Sequence[Any],
    value_args: Sequence[str],
    kind: str,
    outcome_levels: np.ndarray | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array], tuple, Callable]:
    """Collapse the units into cells of the (treatment, stratum, outcome) table.

    Host-side encoding (sizes O(N), never the full product of cardinalities): strata are the
    observed combinations of ``zs``, pairs the observed (treatment, stratum) combinations,
    cells the observed (pair, outcome) combinations. Checks the treatment values and
    positivity. Returns the arrays of the pure estimator, the arrays for bootstrap draws (cell
    counts (C,), and each unit's cell when C is large), the static config and the estimator.
    With ``outcome_levels`` the outcome becomes one indicator column per level (D = levels),
    else D = 1.
    """
    columns = {name: np.asarray(arrays[name]) for name in (treatment, outcome, *zs)}
    strata = _strata(columns, size, treatment, zs, values, value_args)
    _check_positivity(strata, treatment, zs, values, kind)
    pair_codes, pair_t, pair_s = strata.pair_codes, strata.pair_t, strata.pair_s
    lookup = strata.lookup
    num_t, num_s, num_pairs = len(strata.t_levels), len(strata.s_first), len(pair_t)
    unit_cell, cell_first = _joint([pair_codes, columns[outcome]], size)
    num_cells = len(cell_first)
    count = np.bincount(unit_cell, minlength=num_cells)
    cell_y = columns[outcome][cell_first]
    if outcome_levels is None:
        cell_y = np.expand_dims(cell_y.astype(np.float64), 1)
    else:
        cell_y = (np.expand_dims(cell_y, 1) == np.expand_dims(outcome_levels, 0)).astype(float)
    cell_pair = pair_codes[cell_first]
    pair_n = np.bincount(cell_pair, weights=count, minlength=num_pairs)
    pair_sums = np.zeros((num_pairs, cell_y.shape[1]))
    np.add.at(pair_sums, cell_pair, cell_y * np.expand_dims(count, 1))
    # Few cells: pad to a power of two so that compiled bootstrap draws are reused.
    small = num_cells <= _MAX_MULTINOMIAL_CELLS
    length = max(16, 1 << (num_cells - 1).bit_length()) if small else num_cells
    dtype = _float_dtype()
    estimator_arrays = {
        "pair": jnp.asarray(_padded(cell_pair, length), jnp.int32),
        "y": jnp.asarray(_padded(cell_y, length), dtype),
        "pair_t": jnp.asarray(pair_t, jnp.int32),
        "pair_s": jnp.asarray(pair_s, jnp.int32),
        "lookup": jnp.asarray(lookup, jnp.int32),
        "fallback": jnp.asarray(pair_sums / np.expand_dims(pair_n, 1), dtype),
    }
    if kind == "backdoor":
        estimator = _backdoor_discrete
    else:
        estimator = _frontdoor_discrete
        n_tm = np.where(lookup >= 0, pair_n[np.maximum(lookup, 0)], 0.0)
        p_m = n_tm / n_tm.sum(axis=1, keepdims=True)
        estimator_arrays["fallback_p_m"] = jnp.asarray(p_m, dtype)
    draw_arrays = {"count": jnp.asarray(_padded(count, length), dtype)}
    if not small:
        draw_arrays["unit_cell"] = jnp.asarray(unit_cell, jnp.int32)
    return estimator_arrays, draw_arrays, (num_t, num_s, num_pairs), estimator


@functools.partial(jax.jit, static_argnames=("num_bootstrap",))
def _multinomial_counts(key: jax.Array, count: jax.Array, num_bootstrap: int) -> jax.Array:
    """Cell counts of ``num_bootstrap`` resamples of the units: (B, C), multinomial."""
    total = count.sum()
    draw = lambda k: jax.random.multinomial(k, total, count / total, dtype=count.dtype)
    return jax.vmap(draw)(jax.random.split(key, num_bootstrap))


def _draw_cells(draw: Mapping[str, jax.Array], key: jax.Array) -> jax.Array:
    """Cell counts of one resample of the units, drawn unit by unit (many cells)."""
    unit_cell = draw["unit_cell"]
    picks = jax.random.randint(key, unit_cell.shape, 0, unit_cell.shape[0])
    ones = jnp.ones_like(draw["count"], shape=unit_cell.shape)
    return jax.ops.segment_sum(ones, unit_cell[picks], draw["count"].shape[0])


# --------------------------------------------------------------------------------------------
# Continuous: linear and MLP regressions
# --------------------------------------------------------------------------------------------


def _weighted_moments(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Weighted mean and standard deviation (zero spread mapped to 1) of x (N, d)."""
    w2 = jnp.expand_dims(w / w.sum(), 1)
    mean = (w2 * x).sum(axis=0, keepdims=True)
    std = jnp.sqrt((w2 * (x - mean) ** 2).sum(axis=0, keepdims=True))
    return mean, jnp.where(std > 0, std, jnp.ones_like(std))


def _ols(x: jax.Array, y: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Weighted least squares with an intercept: y (N, o) ≈ b0 + x (N, d) @ b.

    Returns the intercept (o,) and coefficients (d, o). Columns are centred and scaled first.
    """
    x_mean, x_std = _weighted_moments(x, w)
    y_mean = (jnp.expand_dims(w / w.sum(), 1) * y).sum(axis=0, keepdims=True)
    root = jnp.expand_dims(jnp.sqrt(w), 1)
    coef, *_ = jnp.linalg.lstsq(root * (x - x_mean) / x_std, root * (y - y_mean))
    coef = coef / x_std.reshape(-1, 1)
    intercept = y_mean.reshape(-1) - (x_mean @ coef).reshape(-1)
    return intercept, coef


def _wmean(x: jax.Array, w: jax.Array) -> jax.Array:
    """Weighted mean over units (axis 0)."""
    return jnp.tensordot(w, x, axes=1) / w.sum()


class _MLP(nnx.Module):
    """Two hidden layers of 64 units with SiLU."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.hidden1 = nnx.Linear(din, _MLP_HIDDEN, rngs=rngs)
        self.hidden2 = nnx.Linear(_MLP_HIDDEN, _MLP_HIDDEN, rngs=rngs)
        self.out = nnx.Linear(_MLP_HIDDEN, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(nnx.silu(self.hidden2(nnx.silu(self.hidden1(x)))))


def _mlp_init(din: int, dout: int, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    graphdef, params = nnx.split(_MLP(din, dout, rngs=nnx.Rngs(params=key)))
    return graphdef, params


def _fit_mlp(
    graphdef: nnx.GraphDef, params: nnx.State, x: jax.Array, y: jax.Array, w: jax.Array
) -> Callable[[jax.Array], jax.Array]:
    """Fit y (N, o) on x (N, d) by weighted squared error; returns the fitted function."""
    x_mean, x_std = _weighted_moments(x, w)
    y_mean, y_std = _weighted_moments(y, w)
    xs, ys = (x - x_mean) / x_std, (y - y_mean) / y_std
    weight = jnp.expand_dims(w / w.sum(), 1)
    optimizer = optax.adam(_MLP_LEARNING_RATE)

    def loss(p: nnx.State) -> jax.Array:
        return (weight * (nnx.merge(graphdef, p)(xs) - ys) ** 2).sum()

    def step(carry: tuple, _: None) -> tuple[tuple, None]:
        p, state = carry
        grads = jax.grad(loss)(p)
        with lenient_promotion():  # optax mixes int step counters with floats
            updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    with lenient_promotion():
        state = optimizer.init(params)
    (fitted, _), _ = jax.lax.scan(step, (params, state), None, _MLP_STEPS)
    return lambda x_new: nnx.merge(graphdef, fitted)((x_new - x_mean) / x_std) * y_std + y_mean


def _backdoor_regression(
    arrays: Mapping[str, jax.Array], w: jax.Array, key: jax.Array, config: tuple
) -> jax.Array:
    """Mean over units of the fitted E[y | t = value, z_i] for every value; (V,)."""
    del key
    t, y, values = jnp.expand_dims(arrays["t"], 1), arrays["y"], arrays["values"]
    z = arrays.get("z")  # absent for an empty adjustment set: no zero-size arrays
    features = lambda t_col: t_col if z is None else jnp.concatenate([t_col, z], axis=1)
    x = features(t)
    if config[0] == "linear":
        intercept, coef = _ols(x, jnp.expand_dims(y, 1), w)
        # mean_i (b0 + b_t v + b_z . z_i) = b0 + b_t v + b_z . mean(z)
        adjustment = 0.0 if z is None else _wmean(z, w) @ coef[1:, 0]
        return intercept[0] + values * coef[0, 0] + adjustment
    graphdef = config[1]
    f = _fit_mlp(graphdef, arrays["params"], x, jnp.expand_dims(y, 1), w)

    def at(value: jax.Array) -> jax.Array:
        return _wmean(f(features(jnp.full_like(t, value)))[:, 0], w)

    return jax.vmap(at)(values)


def _frontdoor_regression(
    arrays: Mapping[str, jax.Array], w: jax.Array, key: jax.Array, config: tuple
) -> jax.Array:
    """Mean over pairs (i, j) of f_y(m(value) + r_i, t_j) for every value; (V,)."""
    t, y, values = arrays["t"], arrays["y"], arrays["values"]
    if "z" not in arrays:  # no mediators (no directed path): E[y | do(t)] = E[y]
        return jnp.full_like(values, _wmean(y, w))
    m = arrays["z"]
    t2 = jnp.expand_dims(t, 1)
    x_y = jnp.concatenate([m, t2], axis=1)
    if config[0] == "linear":
        a0, a = _ols(t2, m, w)  # one linear model per mediator: (k,), (1, k)
        residual_mean = _wmean(m - jnp.expand_dims(a0, 0) - t2 * a, w)
        b0, b = _ols(x_y, jnp.expand_dims(y, 1), w)  # (1,), (k + 1, 1)
        b_m, b_t = b[:-1, 0], b[-1, 0]
        # f_y linear: the double mean collapses to the fitted values at the mean residual and
        # the mean treatment.
        m_at = jnp.expand_dims(a0 + residual_mean, 0) + jnp.expand_dims(values, 1) * a
        return b0[0] + m_at @ b_m + _wmean(t, w) * b_t
    _, graphdef_m, graphdef_y, num_pairs = config
    f_m = _fit_mlp(graphdef_m, arrays["params_m"], t2, m, w)
    f_y = _fit_mlp(graphdef_y, arrays["params_y"], x_y, jnp.expand_dims(y, 1), w)
    residual = m - f_m(t2)
    size = t.shape[0]
    if size * size <= num_pairs:  # every pair, weighted
        i = jnp.repeat(jnp.arange(size), size)
        j = jnp.tile(jnp.arange(size), size)
        pair_w = w[i] * w[j]
    else:  # Monte Carlo pairs drawn from the (resampled) empirical distribution
        key_i, key_j = jax.random.split(key)
        p = w / w.sum()
        i = jax.random.choice(key_i, size, (num_pairs,), p=p)
        j = jax.random.choice(key_j, size, (num_pairs,), p=p)
        pair_w = jnp.ones_like(w, shape=(num_pairs,))

    def at(value: jax.Array) -> jax.Array:
        m_value = f_m(jnp.full_like(t2[:1], value))  # (1, k)
        x_pairs = jnp.concatenate([m_value + residual[i], t2[j]], axis=1)
        return _wmean(f_y(x_pairs)[:, 0], pair_w)

    return jax.vmap(at)(values)


def _draw_units(draw: Mapping[str, jax.Array], key: jax.Array) -> jax.Array:
    """Per-unit counts of a bootstrap resample."""
    size = draw["ones"].shape[0]
    picks = jax.random.randint(key, (size,), 0, size)
    return jax.ops.segment_sum(draw["ones"], picks, size)


# --------------------------------------------------------------------------------------------
# Bootstrap driver
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("estimator", "config"))
def _point(estimator: Callable, arrays: dict, weights: jax.Array, key: jax.Array, config: tuple):
    return estimator(arrays, weights, key, config)


@functools.partial(
    jax.jit, static_argnames=("estimator", "draw", "config", "num_bootstrap", "batch_size")
)
def _replicates(
    estimator: Callable,
    draw: Callable,
    arrays: dict,
    draw_arrays: dict,
    key: jax.Array,
    config: tuple,
    num_bootstrap: int,
    batch_size: int,
) -> jax.Array:
    """``num_bootstrap`` replicates, ``vmap``ped in equal chunks of ``batch_size`` under a scan.

    The resamples are padded to whole chunks (the extra ones are dropped) rather than using
    ``lax.map(batch_size=...)``'s remainder step, which has deadlocked XLA:CPU in some shapes.
    """

    def one(k: jax.Array) -> jax.Array:
        key_draw, key_fit = jax.random.split(k)
        return estimator(arrays, draw(draw_arrays, key_draw), key_fit, config)

    num_chunks = -(-num_bootstrap // batch_size)
    keys = jax.random.split(key, num_chunks * batch_size).reshape(num_chunks, batch_size)
    chunks = jax.lax.map(jax.vmap(one), keys)  # (chunks, batch, ...)
    return chunks.reshape(-1, *chunks.shape[2:])[:num_bootstrap]


@functools.partial(jax.jit, static_argnames=("estimator", "config"))
def _replicates_given(
    estimator: Callable, arrays: dict, weights: jax.Array, key: jax.Array, config: tuple
) -> jax.Array:
    keys = jax.random.split(key, weights.shape[0])
    return jax.vmap(lambda w, k: estimator(arrays, w, k, config))(weights, keys)


def _run(
    estimator: Callable,
    arrays: dict,
    weights: jax.Array,
    config: tuple,
    num_bootstrap: int,
    key: jax.Array,
    *,
    draw: Callable | None,
    draw_arrays: dict,
    cost: int,
) -> tuple[jax.Array, jax.Array]:
    """Point estimate (V, ...) on the data and bootstrap replicates (B, V, ...).

    ``draw=None``: the resampling weights are multinomial cell counts drawn up front; else
    ``draw(draw_arrays, key)`` draws one resample's weights inside chunks of ``vmap``.
    """
    key_point, key_boot = jax.random.split(key)
    point = _point(estimator, arrays, weights, key_point, config)
    if num_bootstrap == 0:
        return point, jnp.zeros((0, *point.shape), point.dtype)
    if draw is None:
        key_draw, key_fit = jax.random.split(key_boot)
        counts = _multinomial_counts(key_draw, draw_arrays["count"], num_bootstrap)
        return point, _replicates_given(estimator, arrays, counts, key_fit, config)
    num_chunks = -(-num_bootstrap // max(1, min(num_bootstrap, _CHUNK_ELEMENTS // max(cost, 1))))
    batch_size = -(-num_bootstrap // num_chunks)  # equal chunks, at most num_chunks - 1 spare
    replicates = _replicates(
        estimator, draw, arrays, draw_arrays, key_boot, config, num_bootstrap, batch_size
    )
    return point, replicates


def _interventional_means(
    data: Mapping[str, Any],
    treatment: str,
    outcome: str,
    values: Sequence[Any],
    value_args: Sequence[str],
    zs: Sequence[str],
    kind: str,
    zs_argument: str,
    *,
    discrete: bool | None,
    regressor: str,
    num_bootstrap: int,
    key: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """E[outcome | do(treatment = v)] for every v: point (V,) and bootstrap replicates (B, V)."""
    _check_roles(treatment, outcome, zs, zs_argument)
    key = _check_options(regressor, num_bootstrap, key)
    values = [_scalar(v, a) for v, a in zip(values, value_args, strict=True)]
    arrays, size = _columns(data, [treatment, outcome, *zs])
    involved = {n: arrays[n] for n in (treatment, outcome, *zs)}
    is_discrete = _is_discrete(involved, discrete)
    # Coefficients of the largest regression: intercept, treatment and the set (or mediators).
    coefficients = 0 if is_discrete else len(zs) + 2
    what = f"E[{outcome} | do({treatment})] by {kind.replace('door', '-door')} adjustment"
    _check_size(size, max(_MIN_UNITS, 2 * coefficients), what)
    columns = {n: np.asarray(a) for n, a in involved.items()}
    _check_varies(columns[treatment], treatment, values)
    if is_discrete:
        cell_arrays, draw_arrays, config, estimator = _discrete_setup(
            arrays, size, treatment, outcome, zs, values, value_args, kind
        )
        many = "unit_cell" in draw_arrays
        point, replicates = _run(
            estimator,
            cell_arrays,
            draw_arrays["count"],
            config,
            num_bootstrap,
            key,
            draw=_draw_cells if many else None,
            draw_arrays=draw_arrays,
            cost=2 * size,
        )
        return point[:, 0], replicates[:, :, 0]
    _check_regression_support(columns, size, treatment, zs, values, value_args, kind)
    dtype = _float_dtype()
    floats = {n: a.astype(dtype) for n, a in arrays.items()}
    reg_arrays = {
        "t": floats[treatment],
        "y": floats[outcome],
        "values": jnp.asarray(values, dtype),
    }
    if zs:
        reg_arrays["z"] = jnp.stack([floats[n] for n in zs], axis=1)
    key, key_init = jax.random.split(key)
    ones = jnp.ones((size,), dtype)
    if kind == "backdoor":
        estimator = _backdoor_regression
        if regressor == "linear":
            config, cost = ("linear",), size * (len(zs) + 2)
        else:
            graphdef, reg_arrays["params"] = _mlp_init(len(zs) + 1, 1, key_init)
            config, cost = ("mlp", graphdef), size * _MLP_HIDDEN * 4
    else:
        estimator = _frontdoor_regression
        if regressor == "linear" or not zs:  # no mediators: E[Y | do(t)] = E[Y], no model
            config, cost = ("linear",), size * (2 * len(zs) + 2)
        else:
            key_m, key_y = jax.random.split(key_init)
            graphdef_m, reg_arrays["params_m"] = _mlp_init(1, len(zs), key_m)
            graphdef_y, reg_arrays["params_y"] = _mlp_init(len(zs) + 1, 1, key_y)
            config = ("mlp", graphdef_m, graphdef_y, _MAX_PAIRS)
            cost = max(size, _MAX_PAIRS * len(values)) * _MLP_HIDDEN * 4
    return _run(
        estimator,
        reg_arrays,
        ones,
        config,
        num_bootstrap,
        key,
        draw=_draw_units,
        draw_arrays={"ones": ones},
        cost=cost,
    )


def _estimate(point: jax.Array, replicates: jax.Array) -> Estimate:
    if replicates.shape[0] < 2:
        return Estimate(point, jnp.zeros_like(point))
    return Estimate(point, jnp.std(replicates, axis=0, ddof=1))


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def backdoor_adjustment(
    data: Mapping[str, Any],
    treatment: str,
    outcome: str,
    value: Any,
    *,
    adjustment_set: Iterable[str],
    discrete: bool | None = None,
    regressor: str = "linear",
    num_bootstrap: int = 200,
    key: jax.Array | None = None,
) -> Estimate:
    """E[outcome | do(treatment = value)] by back-door adjustment over ``adjustment_set``.

    Args:
      data: node -> array of shape (N,); needs the treatment, outcome and adjustment columns.
      treatment, outcome: node names.
      value: the treatment value set by the intervention (a scalar). For a discrete treatment
        it must occur in the data.
      adjustment_set: nodes Z satisfying the back-door criterion (may be empty).
      discrete: exact plug-in from counts (``Σ_z E[Y | t, z] P(z)``) if True, regression if
        False; None: discrete iff every involved column has an integer or bool dtype.
      regressor: ``"linear"`` (least squares with an intercept) or ``"mlp"`` (small MLP); used
        for continuous data: the estimate is the mean over units of the fitted
        ``E[Y | T = value, Z = z_i]``. The treatment enters the regression as a number.
      num_bootstrap: resamples of the units for the bootstrap standard error (0: stderr 0).
        Discrete: multinomial cell counts; a (treatment, stratum) cell that a resample misses
        keeps its full-data mean. ``"mlp"`` retrains the MLP on every resample (vmapped), so
        a few dozen resamples are usually enough there.
      key: PRNG key for the bootstrap and the MLP; required unless neither is used.

    Returns:
      ``Estimate`` with scalar ``value`` (the estimate on the data) and ``stderr`` (the
      standard deviation of the bootstrap replicates).

    Raises:
      ValueError: a missing column, NaN, mismatched sizes, treatment == outcome, the
        treatment or outcome in the set, a discrete ``value`` never observed, a positivity
        violation (a stratum without the treatment value), an unknown ``regressor``.
    """
    zs = as_node_list(adjustment_set, "adjustment_set")
    point, replicates = _interventional_means(
        data,
        treatment,
        outcome,
        [value],
        ["value"],
        zs,
        "backdoor",
        "adjustment_set",
        discrete=discrete,
        regressor=regressor,
        num_bootstrap=num_bootstrap,
        key=key,
    )
    return _estimate(point[0], replicates[:, 0])


def frontdoor_adjustment(
    data: Mapping[str, Any],
    treatment: str,
    outcome: str,
    value: Any,
    *,
    mediators: Iterable[str],
    discrete: bool | None = None,
    regressor: str = "linear",
    num_bootstrap: int = 200,
    key: jax.Array | None = None,
) -> Estimate:
    """E[outcome | do(treatment = value)] by front-door adjustment through ``mediators``.

    Discrete: ``Σ_m P(m | t) Σ_t' E[Y | t', m] P(t')`` from counts. Continuous: fit each
    mediator on the treatment (keeping residuals) and the outcome on (mediators, treatment);
    ``E[Y | do(t)] = mean_{i,j} f_Y(m(t) + r_i, t_j)`` — exact in closed form for
    ``regressor="linear"``, over at most 2000 Monte Carlo pairs for ``"mlp"`` (one MLP with an
    output per mediator models M given T).

    Args and returns as `backdoor_adjustment`; ``mediators`` must satisfy the front-door
    criterion relative to (treatment, outcome). An empty set (no directed path from treatment
    to outcome) gives ``E[Y]``.
    """
    ms = as_node_list(mediators, "mediators")
    point, replicates = _interventional_means(
        data,
        treatment,
        outcome,
        [value],
        ["value"],
        ms,
        "frontdoor",
        "mediators",
        discrete=discrete,
        regressor=regressor,
        num_bootstrap=num_bootstrap,
        key=key,
    )
    return _estimate(point[0], replicates[:, 0])


def _resolve(
    graph: CausalGraph,
    treatment: str,
    outcome: str,
    method: str,
    adjustment_set: Iterable[str] | None,
) -> tuple[str, list[str]]:
    """The strategy ("backdoor" / "frontdoor", or "id" for ``method="auto"`` when only the ID
    algorithm identifies the effect) and the set to use, checked against the graph."""
    if not isinstance(graph, CausalGraph):  # e.g. data and graph swapped
        raise TypeError(
            f"graph: expected a CausalGraph (e.g. scm.graph), got {type(graph).__name__}"
        )
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {list(_METHODS)}, got {method!r}")
    for name, what in ((treatment, "treatment"), (outcome, "outcome")):
        if name not in graph.nodes:
            raise ValueError(
                f"{what}: unknown node {name!r}; the graph's nodes are {sorted(graph.nodes)}"
            )
        if name in graph.latent:
            raise ValueError(f"{what}: {name!r} is latent in the graph; it has no data")
    if adjustment_set is not None:
        zs = as_node_list(adjustment_set, "adjustment_set")
        unknown = [z for z in zs if z not in graph.nodes]
        if unknown:
            raise ValueError(
                f"adjustment_set: unknown node(s) {sorted(unknown)}; the graph's nodes are "
                f"{sorted(graph.nodes)}"
            )
        latent = [z for z in zs if z in graph.latent]
        if latent:
            raise ValueError(
                f"adjustment_set: {sorted(zs)} contains latent node(s) {sorted(latent)}, which "
                f"have no data"
            )
        _check_roles(treatment, outcome, zs, "adjustment_set")
        checks = {"backdoor": graph.is_backdoor_set, "frontdoor": graph.is_frontdoor_set}
        names = {"backdoor": "back-door", "frontdoor": "front-door"}
        tried = ("backdoor", "frontdoor") if method == "auto" else (method,)
        for strategy in tried:
            if checks[strategy](treatment, outcome, zs):
                return strategy, zs
        criteria = " nor the ".join(names[s] for s in tried)
        raise ValueError(
            f"adjustment_set: {sorted(zs)} does not satisfy the {criteria} criterion for the "
            f"effect of {treatment!r} on {outcome!r} in the graph"
        )
    if treatment == outcome:
        raise ValueError(f"treatment and outcome: expected two different nodes, got {treatment!r}")
    if method == "backdoor":
        smallest = graph.smallest_backdoor_set(treatment, outcome)
        if smallest is None:
            raise ValueError(
                f"method='backdoor': the graph has no back-door adjustment set of observed nodes "
                f"for the effect of {treatment!r} on {outcome!r}"
            )
        return "backdoor", sorted(smallest)
    if method == "frontdoor":
        smallest = graph.smallest_frontdoor_set(treatment, outcome)
        if smallest is None:
            raise ValueError(
                f"method='frontdoor': the graph has no front-door set of observed mediators for "
                f"the effect of {treatment!r} on {outcome!r}"
            )
        return "frontdoor", sorted(smallest)
    identification = graph.identify(treatment, outcome)
    if identification.strategy == "none":
        raise ValueError(
            f"the effect of {treatment!r} on {outcome!r} is not identifiable from this graph: "
            f"{identification.estimand}"
        )
    return identification.strategy, sorted(identification.adjustment_set)


def _id_means(
    data: Mapping[str, Any],
    graph: CausalGraph,
    treatment: str,
    outcome: str,
    values: Sequence[Any],
    *,
    discrete: bool | None,
    num_bootstrap: int,
    key: jax.Array,
) -> tuple[np.ndarray, np.ndarray]:
    """``E[outcome | do(treatment = v)]`` for each v by plug-in counts in the ID estimand
    (`CausalGraph.identify`'s strategy "id"), and ``num_bootstrap`` replicates (resampled
    units; a replicate whose formula is undefined reuses the full-data value)."""
    identification = graph.identify(treatment, outcome)
    expression = identification.expression
    assert expression is not None  # "id" always carries one
    needed = sorted(expression.nodes() | {treatment, outcome})
    arrays, size = _columns(data, needed)
    if discrete is False or not all(_is_discrete_dtype(arrays[n].dtype) for n in needed):
        raise ValueError(
            f"the effect of {treatment!r} on {outcome!r} is identified only by the ID algorithm "
            f"({identification.estimand}); it is evaluated by plug-in counts and needs discrete "
            f"(integer or bool) columns {needed}"
        )
    _check_size(size, _MIN_UNITS, f"E[{outcome} | do({treatment})]")
    columns = {n: np.asarray(arrays[n]).astype(np.int64) for n in needed}
    if min(int(c.min()) for c in columns.values()) < 0:
        raise ValueError(f"data: the ID estimand needs non-negative integer columns {needed}")
    _check_varies(columns[treatment], treatment, values)
    indices = []
    for v in values:
        if float(v) != int(v) or int(v) < 0:
            raise ValueError(f"value: expected a non-negative integer treatment value, got {v!r}")
        if not (columns[treatment] == int(v)).any():
            raise ValueError(
                f"treatment value {treatment}={v!r} never occurs in data (positivity violated)"
            )
        indices.append(int(v))

    def means(cols: Mapping[str, np.ndarray]) -> np.ndarray:
        table = identification.evaluate(cols)  # axes (treatment, outcome), index = value
        levels = np.arange(table.shape[1], dtype=float)
        out = np.full(len(indices), np.nan)
        for i, v in enumerate(indices):
            if v < table.shape[0]:
                out[i] = float(table[v] @ levels)
        return out

    point = means(columns)
    if np.isnan(point).any():
        raise ValueError(
            f"the ID estimand of E[{outcome} | do({treatment})] divides by a zero empirical "
            f"probability (positivity violated): {identification.estimand}"
        )
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max)))
    replicates = np.empty((num_bootstrap, len(indices)))
    for b in range(num_bootstrap):
        rows = rng.integers(0, size, size)
        rep = means({n: c[rows] for n, c in columns.items()})
        replicates[b] = np.where(np.isnan(rep), point, rep)
    return point, replicates


def estimate_effect(
    data: Mapping[str, Any],
    graph: CausalGraph,
    treatment: str,
    outcome: str,
    value: Any,
    baseline: Any,
    *,
    method: str = "auto",
    adjustment_set: Iterable[str] | None = None,
    discrete: bool | None = None,
    regressor: str = "linear",
    num_bootstrap: int = 200,
    key: jax.Array | None = None,
) -> Estimate:
    """Average treatment effect ``E[Y | do(T = value)] - E[Y | do(T = baseline)]``.

    ``method="auto"`` asks ``graph.identify`` (back-door if it finds a set, else front-door, else
    Shpitser & Pearl's ID algorithm: its estimand is evaluated by plug-in counts, discrete data
    only, with a bootstrap over resampled units for the stderr);
    ``"backdoor"`` / ``"frontdoor"`` force one. An explicit ``adjustment_set`` must pass
    ``graph.is_backdoor_set`` / ``is_frontdoor_set`` (either, for "auto"). Raises ValueError if
    the effect is not identifiable. Both terms use the same bootstrap resamples, so the
    stderr is that of the difference. Latent nodes need no column; the set's columns must be
    present. Other arguments as `backdoor_adjustment`; returns a scalar ``Estimate``.
    """
    strategy, zs = _resolve(graph, treatment, outcome, method, adjustment_set)
    if strategy == "id":
        key = _check_options(regressor, num_bootstrap, key)
        values = [_scalar(value, "value"), _scalar(baseline, "baseline")]
        pt, reps = _id_means(
            data,
            graph,
            treatment,
            outcome,
            values,
            discrete=discrete,
            num_bootstrap=num_bootstrap,
            key=key,
        )
        dtype = _float_dtype()
        return _estimate(
            jnp.asarray(pt[0] - pt[1], dtype), jnp.asarray(reps[:, 0] - reps[:, 1], dtype)
        )
    point, replicates = _interventional_means(
        data,
        treatment,
        outcome,
        [value, baseline],
        ["value", "baseline"],
        zs,
        strategy,
        "adjustment_set",
        discrete=discrete,
        regressor=regressor,
        num_bootstrap=num_bootstrap,
        key=key,
    )
    return _estimate(point[0] - point[1], replicates[:, 0] - replicates[:, 1])


def interventional_distribution(
    data: Mapping[str, Any],
    treatment: str,
    outcome: str,
    value: Any,
    *,
    graph: CausalGraph | None = None,
    adjustment_set: Iterable[str] | None = None,
    method: str = "auto",
) -> dict[int, float]:
    """``P(outcome = y | do(treatment = value))`` for each observed y, exactly from counts.

    Discrete data only (integer or bool columns). The set comes from ``graph`` (as in
    `estimate_effect`; where only the ID algorithm identifies the effect, its estimand is
    evaluated by plug-in counts) or, without a graph, from ``adjustment_set``: a back-door set for
    ``method="auto"`` / ``"backdoor"``, the mediators for ``"frontdoor"``.

    Returns:
      ``{y: probability}`` over the sorted observed outcome values; the values sum to 1.
    """
    if graph is not None:
        strategy, zs = _resolve(graph, treatment, outcome, method, adjustment_set)
    else:
        if method not in _METHODS:
            raise ValueError(f"method: expected one of {list(_METHODS)}, got {method!r}")
        if adjustment_set is None:
            raise ValueError(
                "adjustment_set: expected the adjustment set (or mediators) when no graph is "
                "given, got None"
            )
        zs = as_node_list(adjustment_set, "adjustment_set")
        strategy = "frontdoor" if method == "frontdoor" else "backdoor"
    _check_roles(treatment, outcome, zs, "adjustment_set")
    value = _scalar(value, "value")
    if strategy == "id":  # graph is not None: only `_resolve` answers "id"
        assert graph is not None
        identification = graph.identify(treatment, outcome)
        expression = identification.expression
        assert expression is not None
        needed = sorted(expression.nodes() | {treatment, outcome})
        arrays, size = _columns(data, needed)
        for name in needed:
            if not _is_discrete_dtype(arrays[name].dtype):
                raise ValueError(
                    f"data[{name!r}]: interventional_distribution needs discrete (integer or "
                    f"bool) columns, got dtype {arrays[name].dtype}"
                )
        _check_size(size, _MIN_UNITS, f"P({outcome} | do({treatment}))")
        columns = {n: np.asarray(arrays[n]) for n in needed}
        _check_varies(columns[treatment], treatment, [value])
        table = identification.evaluate(columns)  # axes (treatment, outcome), index = value
        if not 0 <= int(value) < table.shape[0] or np.isnan(table[int(value)]).any():
            raise ValueError(
                f"P({outcome} | do({treatment}={value!r})): the ID estimand is undefined on these "
                f"data (positivity violated): {identification.estimand}"
            )
        levels = np.unique(columns[outcome]).tolist()
        return {int(y): float(table[int(value), int(y)]) for y in levels}
    arrays, size = _columns(data, [treatment, outcome, *zs])
    for name in (treatment, outcome, *zs):
        if not _is_discrete_dtype(arrays[name].dtype):
            raise ValueError(
                f"data[{name!r}]: interventional_distribution needs discrete (integer or bool) "
                f"columns, got dtype {arrays[name].dtype}"
            )
    _check_size(size, _MIN_UNITS, f"P({outcome} | do({treatment}))")
    _check_varies(np.asarray(arrays[treatment]), treatment, [value])
    levels = np.unique(np.asarray(arrays[outcome]))
    cell_arrays, draw_arrays, config, estimator = _discrete_setup(
        arrays, size, treatment, outcome, zs, [value], ["value"], strategy, levels
    )
    point = _point(estimator, cell_arrays, draw_arrays["count"], jax.random.key(0), config)
    probs = np.asarray(point)[0]
    return {int(y): float(p) for y, p in zip(np.asarray(levels).tolist(), probs, strict=True)}
