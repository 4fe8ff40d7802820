"""The result of `CausalGraph.identify`: a strategy, its adjustment set and the estimand."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Literal


def _join(nodes: Iterable[str]) -> str:
    return ", ".join(sorted(nodes))


@dataclasses.dataclass(frozen=True)
class Identification:
    """How ``P(outcome | do(treatment))`` is computed from observational distributions."""

    strategy: Literal["backdoor", "frontdoor", "none"]
    adjustment_set: frozenset[str]
    estimand: str

    def __str__(self) -> str:
        return self.estimand


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


def not_identified(treatment: Iterable[str], outcome: Iterable[str]) -> str:
    x, y = _join(treatment), _join(outcome)
    return f"P({y} | do({x})) is not identified by back-door or front-door adjustment"
