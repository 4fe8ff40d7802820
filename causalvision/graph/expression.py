"""Estimands as expression trees over an observational distribution, and their exact evaluation.

An estimand is built from four frozen node types:

* `Prob` — ``P(A | B)``, a conditional of the observational joint over the observed nodes;
* `Product` — a product of factors;
* `Sum` — ``Σ_{W} body``, a sum over every value of the variables ``W`` (lexically scoped: a
  bound variable shadows a free one of the same name, and prints with a prime);
* `Fraction` — ``numerator / denominator``.

A variable is named by its node, so an expression's free variables are the nodes whose values
the caller fixes (treatment, outcome, conditioning set). `evaluate` computes the expression for
every value of its free variables, from a probability table or from discrete samples (plug-in
counts). Conventions: ``P(A | B)`` with ``P(B) = 0`` is undefined (NaN), and a product with a
zero factor is 0 even if another factor is undefined (the usual plug-in convention: terms of
weight zero do not count).
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Expression",
    "Fraction",
    "Prob",
    "Product",
    "Sum",
    "evaluate",
]


def _sorted(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(names)))


class Expression(abc.ABC):
    """Base class of estimand nodes (`Prob`, `Product`, `Sum`, `Fraction`)."""

    @abc.abstractmethod
    def free(self) -> frozenset[str]:
        """The free variables: the nodes whose values the expression is a function of."""

    @abc.abstractmethod
    def nodes(self) -> frozenset[str]:
        """Every node the expression mentions (free or bound): the data it needs."""

    @abc.abstractmethod
    def _format(self, names: Mapping[str, str], used: frozenset[str]) -> str:
        """The text, with `names` for the variables in scope and `used` names taken."""

    def __str__(self) -> str:
        return self.format()

    def format(self, reserved: Iterable[str] = ()) -> str:
        """The formula as text; a bound variable whose name is free or in ``reserved`` (e.g.
        the query's treatment) prints with a prime (``X'``)."""
        free = self.free()
        return self._format({v: v for v in free}, frozenset(free) | frozenset(reserved))

    def evaluate(self, source: Any, nodes: Sequence[str] | None = None) -> tuple[tuple, np.ndarray]:
        """``(variables, array)``: the value for every assignment of the free variables, one
        axis per variable (sorted names). See `evaluate` for ``source`` and ``nodes``."""
        return evaluate(self, source, nodes)


@dataclasses.dataclass(frozen=True)
class Prob(Expression):
    """``P(variables | given)`` under the observational distribution."""

    variables: tuple[str, ...]
    given: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", _sorted(self.variables))
        object.__setattr__(self, "given", _sorted(self.given))
        if not self.variables:
            raise ValueError("Prob: expected at least one variable")
        if both := set(self.variables) & set(self.given):
            raise ValueError(f"Prob: {sorted(both)} both conditioned on and distributed")

    def free(self) -> frozenset[str]:
        return frozenset(self.variables) | frozenset(self.given)

    def nodes(self) -> frozenset[str]:
        return self.free()

    def _format(self, names: Mapping[str, str], used: frozenset[str]) -> str:
        lhs = ", ".join(names[v] for v in self.variables)
        if not self.given:
            return f"P({lhs})"
        return f"P({lhs} | {', '.join(names[v] for v in self.given)})"


@dataclasses.dataclass(frozen=True)
class Product(Expression):
    """The product of ``factors`` (1 if there are none)."""

    factors: tuple[Expression, ...]

    def free(self) -> frozenset[str]:
        return frozenset().union(*(f.free() for f in self.factors))

    def nodes(self) -> frozenset[str]:
        return frozenset().union(*(f.nodes() for f in self.factors))

    def _format(self, names: Mapping[str, str], used: frozenset[str]) -> str:
        if not self.factors:
            return "1"
        # Terms first (most conditioned first: P(Y | X, Z) P(Z)); a sum runs to the end of the
        # product, so only the last may be bare.
        plain = sorted(
            (f for f in self.factors if isinstance(f, Prob)),
            key=lambda f: (-len(f.given), f.variables),
        )
        other = [f for f in self.factors if not isinstance(f, Prob)]
        parts = [f._format(names, used) for f in plain]
        for i, f in enumerate(other):
            text = f._format(names, used)
            last_sum = i == len(other) - 1 and isinstance(f, Sum)
            parts.append(text if last_sum else f"[{text}]")
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Sum(Expression):
    """``Σ_{over} body``: the sum over every joint value of the variables ``over``."""

    over: tuple[str, ...]
    body: Expression

    def __post_init__(self) -> None:
        object.__setattr__(self, "over", _sorted(self.over))

    def free(self) -> frozenset[str]:
        return self.body.free() - frozenset(self.over)

    def nodes(self) -> frozenset[str]:
        return self.body.nodes() | frozenset(self.over)

    def _format(self, names: Mapping[str, str], used: frozenset[str]) -> str:
        inner = dict(names)
        taken = set(used)
        for v in self.over:
            display = v
            while display in taken:  # a name in use outside: prime the bound one
                display += "'"
            inner[v] = display
            taken.add(display)
        shown = ", ".join(inner[v] for v in self.over)
        return f"Σ_{{{shown}}} {self.body._format(inner, frozenset(taken))}"


@dataclasses.dataclass(frozen=True)
class Fraction(Expression):
    """``numerator / denominator``."""

    numerator: Expression
    denominator: Expression

    def free(self) -> frozenset[str]:
        return self.numerator.free() | self.denominator.free()

    def nodes(self) -> frozenset[str]:
        return self.numerator.nodes() | self.denominator.nodes()

    def _format(self, names: Mapping[str, str], used: frozenset[str]) -> str:
        num = self.numerator._format(names, used)
        den = self.denominator._format(names, used)
        if not isinstance(self.numerator, Prob):
            num = f"({num})"
        if not isinstance(self.denominator, Prob):
            den = f"({den})"
        return f"{num} / {den}"


# ------------------------------------------------------------------------------ simplification
def product(factors: Iterable[Expression]) -> Expression:
    """A simplified product: nested products flattened, unit products dropped, and chain-rule
    pairs ``P(A | B, K) P(B | K)`` merged into ``P(A, B | K)``."""
    flat: list[Expression] = []
    for f in factors:
        if isinstance(f, Product):
            flat.extend(f.factors)
        else:
            flat.append(f)
    merged = True
    while merged:
        merged = False
        for i, j in itertools.permutations(range(len(flat)), 2):
            a, b = flat[i], flat[j]
            if (
                isinstance(a, Prob)
                and isinstance(b, Prob)
                and set(a.given) == set(b.variables) | set(b.given)
            ):
                new = Prob(a.variables + b.variables, b.given)
                flat = [f for k, f in enumerate(flat) if k not in (i, j)] + [new]
                merged = True
                break
    return flat[0] if len(flat) == 1 else Product(tuple(flat))


def summation(over: Iterable[str], body: Expression) -> Expression:
    """A simplified ``Σ_{over} body``: nested sums merged (when no name is captured), and a
    variable that only one term ``P(v, A | K)`` mentions summed out (``P(A | K)``)."""
    over_set = set(over)
    if not over_set:
        return body
    factors = list(body.factors) if isinstance(body, Product) else [body]
    changed = True
    while changed:
        changed = False
        # Pull inner sums out when their bound names clash with nothing outside them.
        for i, f in enumerate(factors):
            if isinstance(f, Sum):
                others = frozenset().union(*(g.free() for k, g in enumerate(factors) if k != i))
                bound = set(f.over)
                if not bound & (over_set | others):
                    inner = list(f.body.factors) if isinstance(f.body, Product) else [f.body]
                    factors = factors[:i] + factors[i + 1 :] + inner
                    over_set |= bound
                    changed = True
                    break
            elif isinstance(f, Product):
                factors = factors[:i] + factors[i + 1 :] + list(f.factors)
                changed = True
                break
        if changed:
            continue
        for v in sorted(over_set):
            mentions = [i for i, f in enumerate(factors) if v in f.free()]
            if len(mentions) == 1:
                f = factors[mentions[0]]
                if isinstance(f, Prob) and v in f.variables:
                    rest = tuple(u for u in f.variables if u != v)
                    factors.pop(mentions[0])
                    if rest:
                        factors.append(Prob(rest, f.given))
                    over_set.discard(v)
                    changed = True
                    break
        if not changed:
            simplified = product(factors)
            new_factors = (
                list(simplified.factors) if isinstance(simplified, Product) else [simplified]
            )
            if new_factors != factors:
                factors = new_factors
                changed = True
    body = product(factors) if factors else Product(())
    if not over_set:
        return body
    return Sum(tuple(over_set), body)


def fraction(numerator: Expression, denominator: Expression) -> Expression:
    """A simplified ratio: ``P(A, B | K) / P(B | K)`` becomes ``P(A | B, K)``."""
    if (
        isinstance(numerator, Prob)
        and isinstance(denominator, Prob)
        and set(denominator.given) == set(numerator.given)
        and set(denominator.variables) < set(numerator.variables)
    ):
        rest = set(numerator.variables) - set(denominator.variables)
        return Prob(tuple(rest), numerator.given + denominator.variables)
    return Fraction(numerator, denominator)


# ---------------------------------------------------------------------------------- evaluation
class _Table:
    """Marginals of a probability table with one axis per node."""

    def __init__(self, table: np.ndarray, nodes: Sequence[str]) -> None:
        self.table = table
        self.axis = {n: i for i, n in enumerate(nodes)}
        self.cards = {n: table.shape[i] for n, i in self.axis.items()}
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def marginal(self, names: tuple[str, ...]) -> np.ndarray:
        if names not in self._cache:
            unknown = [n for n in names if n not in self.axis]
            if unknown:
                raise ValueError(f"the table has no axis for node(s) {unknown}")
            drop = tuple(i for n, i in self.axis.items() if n not in names)
            kept = sorted(names, key=self.axis.__getitem__)  # the summed table's axis order
            summed = self.table.sum(axis=drop)
            self._cache[names] = np.transpose(summed, [kept.index(n) for n in names])
        return self._cache[names]


class _Samples:
    """Empirical marginals (plug-in counts) of discrete samples ``{node: int array}``."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.columns: dict[str, np.ndarray] = {}
        self.size: int | None = None
        for name, column in data.items():
            array = np.asarray(column)
            if array.ndim != 1:
                raise ValueError(f"data[{name!r}]: expected shape (N,), got {array.shape}")
            if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
                raise ValueError(
                    f"data[{name!r}]: plug-in evaluation needs discrete (integer or bool) "
                    f"columns, got dtype {array.dtype}"
                )
            array = array.astype(np.int64)
            if array.size and array.min() < 0:
                raise ValueError(f"data[{name!r}]: values must be non-negative integers")
            if self.size is not None and array.size != self.size:
                raise ValueError("data: columns have different lengths")
            self.size = array.size
            self.columns[name] = array
        if not self.size:
            raise ValueError("data: expected at least one unit")
        self.cards = {n: int(c.max()) + 1 for n, c in self.columns.items()}
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def marginal(self, names: tuple[str, ...]) -> np.ndarray:
        if names not in self._cache:
            if missing := [n for n in names if n not in self.columns]:
                raise ValueError(f"data: no column for node(s) {missing}")
            shape = tuple(self.cards[n] for n in names)
            index = np.ravel_multi_index(tuple(self.columns[n] for n in names), shape)
            counts = np.bincount(index, minlength=int(np.prod(shape)))
            self._cache[names] = (counts / self.size).reshape(shape)
        return self._cache[names]


def _source(source: Any, nodes: Sequence[str] | None) -> _Table | _Samples:
    if isinstance(source, Mapping) and source and all(isinstance(k, str) for k in source):
        return _Samples(source)
    if nodes is None:
        raise ValueError("nodes: expected the node of each table axis (or tuple position)")
    nodes = list(nodes)
    if isinstance(source, Mapping):
        keys = list(source)
        if any(not isinstance(k, tuple) or len(k) != len(nodes) for k in keys):
            raise ValueError(f"table: expected keys that are tuples of {len(nodes)} values")
        shape = tuple(max(int(k[i]) for k in keys) + 1 for i in range(len(nodes)))
        table = np.zeros(shape)
        for k, p in source.items():
            table[tuple(int(v) for v in k)] += float(p)
    else:
        table = np.asarray(source, dtype=float)
        if table.ndim != len(nodes):
            raise ValueError(f"table: expected {len(nodes)} axes ({nodes}), got {table.ndim}")
    if np.any(table < 0) or not np.isclose(table.sum(), 1.0, atol=1e-6):
        raise ValueError("table: expected non-negative probabilities that sum to 1")
    return _Table(table, nodes)


def _align(names: tuple[str, ...], array: np.ndarray, target: tuple[str, ...]) -> np.ndarray:
    """``array`` (axes ``names``) transposed and reshaped to broadcast against ``target``."""
    order = sorted(range(len(names)), key=lambda i: target.index(names[i]))
    size = {names[i]: array.shape[i] for i in range(len(names))}
    return np.transpose(array, order).reshape([size.get(t, 1) for t in target])


def _eval(expr: Expression, src: _Table | _Samples) -> tuple[tuple[str, ...], np.ndarray]:
    if isinstance(expr, Prob):
        joint_names = expr.given + expr.variables
        joint = src.marginal(joint_names)
        if not expr.given:
            return joint_names, joint
        cond = src.marginal(expr.given)
        cond = cond.reshape(cond.shape + (1,) * len(expr.variables))
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(cond > 0, joint / np.where(cond > 0, cond, 1.0), np.nan)
        return joint_names, value
    if isinstance(expr, Product):
        parts = [_eval(f, src) for f in expr.factors]
        target = _sorted(n for names, _ in parts for n in names)
        value = np.ones((1,) * len(target))
        zero = np.zeros((1,) * len(target), dtype=bool)
        for names, array in parts:
            aligned = _align(names, array, target)
            value = value * aligned
            zero = zero | (aligned == 0)
        return target, np.where(zero, 0.0, value)
    if isinstance(expr, Sum):
        names, array = _eval(expr.body, src)
        axes = tuple(i for i, n in enumerate(names) if n in expr.over)
        scale = 1
        for v in expr.over:
            if v not in names:  # a variable the body does not depend on: one copy per value
                scale *= src.cards[v]
        kept = tuple(n for n in names if n not in expr.over)
        return kept, array.sum(axis=axes) * scale
    if isinstance(expr, Fraction):
        num_names, num = _eval(expr.numerator, src)
        den_names, den = _eval(expr.denominator, src)
        target = _sorted(num_names + den_names)
        a, b = _align(num_names, num, target), _align(den_names, den, target)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)
        return target, value
    raise TypeError(f"not an expression: {expr!r}")


def evaluate(
    expr: Expression,
    source: Any,
    nodes: Sequence[str] | None = None,
    *,
    axes: Sequence[str] | None = None,
) -> tuple[tuple[str, ...], np.ndarray]:
    """The expression's value for every assignment of its free variables.

    Args:
        expr: the estimand.
        source: the observational distribution, as one of
            * a numpy array (or nested lists) of probabilities with one axis per node of
              ``nodes``, value ``k`` of a node at index ``k``;
            * a dict ``{(value of nodes[0], value of nodes[1], ...): probability}``;
            * discrete samples ``{node: int or bool array of shape (N,)}`` (plug-in counts;
              values ``0 .. max``).
        nodes: the node of each table axis (not needed for samples).
        axes: the variables of the result, in order (default: the free variables, sorted);
            must include every free variable; the value is broadcast along the others.

    Returns:
        ``(axes, array)`` with ``array[i, j, ...]`` the value at ``axes = (i, j, ...)``.
    """
    src = _source(source, nodes)
    names, value = _eval(expr, src)
    if axes is None:
        return names, value
    axes = tuple(axes)
    if missing := sorted(set(names) - set(axes)):
        raise ValueError(f"axes: the expression also depends on {missing}")
    shape = tuple(src.cards[a] for a in axes)
    return axes, np.broadcast_to(_align(names, value, axes), shape).copy()
