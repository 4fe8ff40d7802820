"""The result of `CausalGraph.identify`: a strategy, its adjustment set and the estimand."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from causalvision.graph.expression import Expression, Prob, Sum, evaluate, product, summation
from causalvision.graph.id_algorithm import Hedge


def _join(nodes: Iterable[str]) -> str:
    return ", ".join(sorted(nodes))


@dataclasses.dataclass(frozen=True)
class Identification:
    """How ``P(outcome | do(treatment)[, given])`` is computed from observational distributions.

    Attributes:
        strategy: "backdoor", "frontdoor", "id" (Shpitser & Pearl's ID), "idc" (their IDC, for
            a query with ``given``) or "none" (not identifiable).
        adjustment_set: the back-door set or front-door mediators (empty otherwise).
        estimand: the formula as text.
        expression: the formula as an `Expression` tree (``None`` if not identifiable).
        hedge: for "none" from ID/IDC, the `Hedge` witnessing non-identifiability.
        treatment, outcome, given: the query's nodes, sorted (the axes of `evaluate`).
    """

    strategy: Literal["backdoor", "frontdoor", "id", "idc", "none"]
    adjustment_set: frozenset[str]
    estimand: str
    # Derived from the query and the estimand: left out of equality, so results compare as
    # before these fields existed.
    expression: Expression | None = dataclasses.field(default=None, compare=False)
    hedge: Hedge | None = dataclasses.field(default=None, compare=False)
    treatment: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    outcome: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    given: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    def __str__(self) -> str:
        return self.estimand

    @property
    def axes(self) -> tuple[str, ...]:
        """The axes of `evaluate`'s result: treatment, then given, then outcome nodes."""
        return self.treatment + self.given + self.outcome

    def evaluate(self, source: Any, nodes: Sequence[str] | None = None) -> np.ndarray:
        """``P(outcome = y | do(treatment = x)[, given = z])`` for every ``(x, z, y)``.

        Args:
            source: the observational distribution over the observed nodes: a numpy array with
                one axis per node of ``nodes`` (value ``k`` at index ``k``), a dict
                ``{(value, ...): probability}`` keyed in the order of ``nodes``, or discrete
                samples ``{node: int array}`` (plug-in counts; ``nodes`` not needed).
            nodes: the node of each table axis.

        Returns:
            An array with one axis per node of `axes` (treatment, given, outcome). Entries
            whose formula divides by a zero probability (positivity fails) are NaN.

        Raises:
            ValueError: if the query is not identified.
        """
        if self.expression is None:
            raise ValueError(f"nothing to evaluate: {self.estimand}")
        return evaluate(self.expression, source, nodes, axes=self.axes)[1]


def backdoor_estimand(treatment: Iterable[str], outcome: Iterable[str], zs: Iterable[str]) -> str:
    """``P(Y | do(X)) = Σ_{Z} P(Y | X, Z) P(Z)`` (or ``P(Y | X)`` for an empty Z)."""
    x, y, z = _join(treatment), _join(outcome), _join(zs)
    if not z:
        return f"P({y} | do({x})) = P({y} | {x})"
    return f"P({y} | do({x})) = Σ_{{{z}}} P({y} | {x}, {z}) P({z})"


def frontdoor_estimand(treatment: str, outcome: str, zs: Iterable[str]) -> str:
    """``P(Y | do(X)) = Σ_{M} P(M | X) Σ_{X'} P(Y | X', M) P(X')`` (``P(Y)`` for an empty M)."""
    x, y, m = treatment, outcome, _join(zs)
    if not m:  # no directed path from X to Y
        return f"P({y} | do({x})) = P({y})"
    return f"P({y} | do({x})) = Σ_{{{m}}} P({m} | {x}) Σ_{{{x}'}} P({y} | {x}', {m}) P({x}')"


def not_identified(
    treatment: Iterable[str],
    outcome: Iterable[str],
    hedge: Hedge | None = None,
    given: Iterable[str] = (),
) -> str:
    """The ``estimand`` text of a query that is not identifiable."""
    query = query_text(treatment, outcome, given)
    if hedge is None:
        return f"{query} is not identified by back-door or front-door adjustment"
    how = "IDC" if _join(given) else "back-door or front-door adjustment, nor by ID"
    return f"{query} is not identified by {how}: {hedge.reason}"


def query_text(treatment: Iterable[str], outcome: Iterable[str], given: Iterable[str] = ()) -> str:
    """``P(Y | do(X))`` or ``P(Y | do(X), Z)``."""
    x, y, z = _join(treatment), _join(outcome), _join(given)
    return f"P({y} | do({x}), {z})" if z else f"P({y} | do({x}))"


def backdoor_expression(
    treatment: Iterable[str], outcome: Iterable[str], zs: Iterable[str]
) -> Expression:
    """``Σ_{Z} P(Y | X, Z) P(Z)`` as an expression tree."""
    x, y, z = set(treatment), set(outcome), set(zs)
    if not z:
        return Prob(tuple(y), tuple(x))
    return summation(z, product([Prob(tuple(y), tuple(x | z)), Prob(tuple(z))]))


def frontdoor_expression(treatment: str, outcome: str, zs: Iterable[str]) -> Expression:
    """``Σ_{M} P(M | X) Σ_{X'} P(Y | X', M) P(X')`` as an expression tree."""
    m = tuple(zs)
    if not m:
        return Prob((outcome,))
    inner = Sum((treatment,), product([Prob((outcome,), (treatment, *m)), Prob((treatment,))]))
    return Sum(m, product([Prob(m, (treatment,)), inner]))
