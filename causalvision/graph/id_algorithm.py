"""Shpitser & Pearl's ID and IDC algorithms on the latent projection of a `CausalGraph`.

* ID: I. Shpitser and J. Pearl (2006), "Identification of joint interventional distributions
  in recursive semi-Markovian causal models", AAAI (Fig. 3 there). Complete: it returns an
  estimand of ``P(y | do(x))`` exactly when one exists, else a hedge.
* IDC: I. Shpitser and J. Pearl (2006), "Identification of conditional interventional
  distributions", UAI (Fig. 6 there): ``P(y | do(x), z)``, also complete.

Both run on the latent projection (Verma 1993): the observed nodes, ``a -> b`` wherever a
directed path runs from ``a`` to ``b`` through latent nodes only, and ``a <-> b`` wherever a
latent node reaches both ``a`` and ``b`` by directed paths through latent nodes only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import networkx as nx

from causalvision.graph.expression import (
    Expression,
    Prob,
    fraction,
    product,
    summation,
)

__all__ = ["Hedge", "LatentProjection", "NotIdentifiable", "id_estimand", "idc_estimand"]


def _fmt(nodes: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(nodes)) + "}"


@dataclasses.dataclass(frozen=True)
class Hedge:
    """A witness of non-identifiability (Shpitser & Pearl 2006, Def. 4 and Thm. 4).

    ``forest`` (F) and ``subforest`` (F') are node sets of the latent projection; both are
    ``roots``-rooted c-forests (bidirected-connected, every node reaching ``roots`` by a
    directed path inside the set), ``F' ⊂ F``, F meets the interventions in force when ID
    failed (``intervened``, which includes the query's treatment nodes in F) and F' does not.
    Two models agreeing on ``P(v)`` can then disagree on ``P(roots | do(F \\ F'))``.
    """

    forest: frozenset[str]
    subforest: frozenset[str]
    roots: frozenset[str]
    intervened: frozenset[str]

    @property
    def reason(self) -> str:
        """A readable account of the failure."""
        return (
            f"hedge F = {_fmt(self.forest)}, F' = {_fmt(self.subforest)} "
            f"(c-forests rooted at {_fmt(self.roots)}; F \\ F' = "
            f"{_fmt(self.forest - self.subforest)} is intervened on)"
        )

    def __str__(self) -> str:
        return self.reason


class NotIdentifiable(Exception):
    """Raised inside ID when a hedge is found; carries the `Hedge`."""

    def __init__(self, hedge: Hedge) -> None:
        super().__init__(hedge.reason)
        self.hedge = hedge


@dataclasses.dataclass(frozen=True)
class LatentProjection:
    """An acyclic directed mixed graph over observed nodes.

    ``nodes`` are in a topological order; ``directed`` holds pairs ``(parent, child)``;
    ``bidirected`` holds pairs ``(a, b)`` with ``a < b`` (a hidden common cause).
    """

    nodes: tuple[str, ...]
    directed: frozenset[tuple[str, str]]
    bidirected: frozenset[tuple[str, str]]

    @classmethod
    def of(
        cls, graph: nx.DiGraph, order: Iterable[str], latent: frozenset[str]
    ) -> LatentProjection:
        """The latent projection of the DAG ``graph`` (``order``: its topological order)."""
        observed = tuple(n for n in order if n not in latent)
        directed: set[tuple[str, str]] = set()
        for a in observed:
            for b in _reach_through(graph, a, latent):
                directed.add((a, b))
        bidirected: set[tuple[str, str]] = set()
        for u in latent:
            reached = sorted(_reach_through(graph, u, latent))
            for i, a in enumerate(reached):
                for b in reached[i + 1 :]:
                    bidirected.add((a, b))
        return cls(observed, frozenset(directed), frozenset(bidirected))

    def subgraph(self, keep: Iterable[str]) -> LatentProjection:
        """The induced subgraph over ``keep``."""
        k = frozenset(keep)
        return LatentProjection(
            tuple(n for n in self.nodes if n in k),
            frozenset(e for e in self.directed if e[0] in k and e[1] in k),
            frozenset(e for e in self.bidirected if e[0] in k and e[1] in k),
        )

    def parents(self, node: str) -> frozenset[str]:
        return frozenset(a for a, b in self.directed if b == node)

    def ancestors(self, nodes: Iterable[str], cut: Iterable[str] = ()) -> frozenset[str]:
        """``nodes`` and their ancestors, ignoring directed edges into ``cut`` (``G_{\\bar X}``)."""
        cut_set = frozenset(cut)
        into: dict[str, list[str]] = {}
        for a, b in self.directed:
            if b not in cut_set:
                into.setdefault(b, []).append(a)
        out = set(nodes)
        stack = list(out)
        while stack:
            for p in into.get(stack.pop(), ()):
                if p not in out:
                    out.add(p)
                    stack.append(p)
        return frozenset(out)

    def c_components(self) -> list[frozenset[str]]:
        """The c-components: connected components of the bidirected edges, in the order of
        their first node."""
        g = nx.Graph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from(self.bidirected)
        rank = {n: i for i, n in enumerate(self.nodes)}
        comps = [frozenset(c) for c in nx.connected_components(g)]
        return sorted(comps, key=lambda c: min(rank[n] for n in c))

    def as_dag(self) -> nx.DiGraph:
        """A DAG with the same m-separations: one latent parent per bidirected edge."""
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from(self.directed)
        for a, b in self.bidirected:
            g.add_edges_from([((a, b), a), ((a, b), b)])
        return g


def _reach_through(graph: nx.DiGraph, start: str, latent: frozenset[str]) -> set[str]:
    """Observed nodes reached from ``start`` by directed paths whose inner nodes are latent."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = list(graph.successors(start))
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in latent:
            stack.extend(graph.successors(node))
        else:
            found.add(node)
    return found


# ------------------------------------------------------------------------------------------ ID
@dataclasses.dataclass(frozen=True)
class _Dist:
    """The distribution ID works with: over the random variables ``scope``.

    ``expr is None``: the observational marginal over ``scope``. Otherwise ``expr`` (whose
    other free variables are fixed interventions); ``factors``, when known, give each
    variable's conditional on its predecessors in ``scope`` (a product of them is ``expr``).
    """

    scope: frozenset[str]
    rank: Mapping[str, int]
    expr: Expression | None = None
    factors: Mapping[str, Expression] | None = None

    def _before(self, v: str) -> frozenset[str]:
        return frozenset(u for u in self.scope if self.rank[u] < self.rank[v])

    def conditional(self, v: str) -> Expression:
        """``P(v | v_π^{(i-1)})``: ``v`` given its predecessors in ``scope``."""
        if self.expr is None:
            return Prob((v,), tuple(self._before(v)))
        if self.factors is not None:
            return self.factors[v]
        later = self.scope - self._before(v) - {v}
        return fraction(summation(later, self.expr), summation(later | {v}, self.expr))

    def marginal(self, keep: frozenset[str]) -> Expression:
        """``Σ_{scope \\ keep} P``."""
        if self.expr is None:
            return Prob(tuple(keep))
        return summation(self.scope - keep, self.expr)

    def restrict(self, keep: frozenset[str]) -> _Dist:
        """The marginal over ``keep`` as a new distribution."""
        if self.expr is None:
            return _Dist(keep, self.rank)
        dropped = self.scope - keep
        factors = None
        if self.factors is not None and all(
            self.rank[d] > self.rank[k] for d in dropped for k in keep
        ):  # only trailing variables go: the earlier conditionals stay as they are
            factors = {k: self.factors[k] for k in keep}
            return _Dist(keep, self.rank, product(factors[k] for k in self._ordered(keep)), factors)
        return _Dist(keep, self.rank, self.marginal(keep), factors)

    def _ordered(self, nodes: Iterable[str]) -> list[str]:
        return sorted(nodes, key=self.rank.__getitem__)


def _id(y: frozenset[str], x: frozenset[str], p: _Dist, g: LatentProjection) -> Expression:
    """One call of ID(y, x, P, G) (Shpitser & Pearl 2006, Fig. 3)."""
    v = frozenset(g.nodes)
    # Line 1: no intervention.
    if not x:
        return p.marginal(y)
    # Line 2: drop non-ancestors of y.
    an = g.ancestors(y)
    if an != v:
        return _id(y, x & an, p.restrict(an), g.subgraph(an))
    # Line 3: intervene also on nodes that cannot affect y once x is fixed.
    w = (v - x) - g.ancestors(y, cut=x)
    if w:
        return _id(y, x | w, p, g)
    # Line 4: factorise over the c-components of G \ x.
    components = g.subgraph(v - x).c_components()
    if len(components) > 1:
        terms = [_id(s, v - s, p, g) for s in components]
        return summation(v - (y | x), product(terms))
    (s,) = components
    whole = g.c_components()
    # Line 5: G is one c-component: a hedge.
    if whole == [v]:
        raise NotIdentifiable(Hedge(v, s, y, x))
    # Line 6: s is a c-component of G.
    if s in whole:
        return summation(s - y, product(p.conditional(n) for n in p._ordered(s)))
    # Line 7: s lies in a larger c-component s'.
    (big,) = [c for c in whole if s < c]
    factors = {n: p.conditional(n) for n in big}
    expr = product(factors[n] for n in p._ordered(big))
    return _id(y, x & big, _Dist(big, p.rank, expr, factors), g.subgraph(big))


def _observational(g: LatentProjection) -> _Dist:
    return _Dist(frozenset(g.nodes), {n: i for i, n in enumerate(g.nodes)})


def _close(expr: Expression, keep: frozenset[str]) -> Expression:
    """Average out free variables outside ``keep``: ID's line 3 leaves some free, and the
    estimand does not depend on their values, so ``Σ_w P(w) E(w) = E``."""
    extra = expr.free() - keep
    if not extra:
        return expr
    return summation(extra, product([Prob(tuple(extra)), expr]))


def id_estimand(g: LatentProjection, x: frozenset[str], y: frozenset[str]) -> Expression:
    """An estimand of ``P(y | do(x))`` by ID; raises `NotIdentifiable` with a hedge."""
    return _close(_id(y, x, _observational(g), g), x | y)


def idc_estimand(
    g: LatentProjection, x: frozenset[str], y: frozenset[str], z: frozenset[str]
) -> Expression:
    """An estimand of ``P(y | do(x), z)`` by IDC; raises `NotIdentifiable` with a hedge."""
    x_now, z_now = set(x), set(z)
    moved = True
    while moved:  # line 1: move z to x while Y ⊥ z | X, Z \ {z} in G_{\bar X, \underline z}
        moved = False
        for node in sorted(z_now):
            dag = g.as_dag()
            dag.remove_edges_from([(a, b) for a, b in list(dag.edges) if b in x_now])
            dag.remove_edges_from([(node, b) for b in list(dag.successors(node))])
            if nx.is_d_separator(dag, set(y), {node}, (x_now | z_now) - {node}):
                x_now.add(node)
                z_now.discard(node)
                moved = True
                break
    joint = _close(_id(y | z_now, frozenset(x_now), _observational(g), g), x | y | z)
    if not z_now:
        return joint
    return fraction(joint, summation(y, joint))
