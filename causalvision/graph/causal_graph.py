"""`CausalGraph`: a validated DAG with latent nodes, d-separation, back-door and front-door
criteria, adjustment-set enumeration and identification.

Algorithms
----------
* Back-door sets are the sets ``Z`` of observed non-descendants of the treatment ``X`` that
  d-separate ``X`` and ``Y`` in the back-door graph (``G`` without the edges out of ``X``).
  Minimal ones are listed with ListMinSep of van der Zander, Liśkiewicz & Textor (2019),
  "Separators and adjustment sets in causal graphs: complete criteria and an algorithmic
  framework", Artificial Intelligence 270: every minimal d-separator lies in ``An(X ∪ Y)``, where
  d-separation is plain separation in the moral graph of the ancestral graph; minimal
  separators there are listed with Takata's (2010) backtracking (see `_cuts`). Polynomial delay,
  no search over subsets.
* All back-door sets (``minimal=False``) are listed with ListSep of the same paper: a
  backtracking over "include v / exclude v" whose branches are kept only if
  ``R ∩ An(X ∪ Y ∪ I)`` is a separator (I = included, R = allowed). Polynomial delay per set,
  but the number of sets can be exponential in the number of nodes.
* Minimal front-door sets: conditions (ii) and (iii) hold node by node, so the valid nodes can
  be found first; the minimal front-door sets are then exactly the minimal cuts of the directed
  paths ``X -> Y`` through valid nodes, listed with the same polynomial-delay cut enumeration.
  (Jeong, Tian & Bareinboim, NeurIPS 2022, list all front-door sets with polynomial delay.)
* A smallest back-door or front-door set needs no listing: it is a minimum vertex cut of the same
  graph (moralised ancestral back-door graph, or directed paths through valid nodes), found by
  one maximum flow on the vertex-split graph (FindMinCostSep of van der Zander et al. with unit
  costs; see `_cuts.minimum_cut`). `identify` uses it, so it stays polynomial on graphs whose
  minimal sets are exponentially many.

* `identify` falls back, where no adjustment set exists, to Shpitser & Pearl's (2006) ID
  algorithm, and answers conditional queries with their IDC, both on the latent projection
  (see `id_algorithm`); estimands are expression trees (`expression`) that evaluate exactly.

Every listing is a lazy iterator in the enumeration's own (deterministic) order: a caller takes
what it needs (``next``, ``itertools.islice``) and stops.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Literal

import networkx as nx

from causalvision.graph._cuts import minimal_cuts, minimum_cut
from causalvision.graph.id_algorithm import (
    LatentProjection,
    NotIdentifiable,
    id_estimand,
    idc_estimand,
)
from causalvision.graph.identification import (
    Identification,
    backdoor_estimand,
    backdoor_expression,
    frontdoor_estimand,
    frontdoor_expression,
    not_identified,
    query_text,
)

Nodes = str | Iterable[str]
_NAMES = "a node name or an iterable of node names"


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: node names must be non-empty str, got {name!r}")
    return name


def _duplicates(items: Iterable[Hashable]) -> list[Hashable]:
    seen: set[Hashable] = set()
    dup: list[Hashable] = []
    for item in items:
        if item in seen and item not in dup:
            dup.append(item)
        seen.add(item)
    return dup


def _iterate(value: Any, argument: str, expected: str) -> list[Any]:
    """``value``'s items as a list; a `TypeError` naming ``argument`` if it is not iterable."""
    try:
        items = iter(value)
    except TypeError:
        raise TypeError(f"{argument}: expected {expected}, got {value!r}") from None
    return list(items)


def _node_list(nodes: Any, argument: str) -> list[Any]:
    """A node name, or an iterable of them, as a list (a str is one name, not its letters)."""
    return [nodes] if isinstance(nodes, str) else _iterate(nodes, argument, _NAMES)


class CausalGraph:
    """A causal DAG over named nodes, some of them latent (unobserved).

    Args:
        edges: directed edges ``(parent, child)``.
        nodes: extra nodes, e.g. isolated ones; nodes of ``edges`` are added automatically.
        latent: unobserved nodes (e.g. a confounder ``U`` with ``U -> X``, ``U -> Y``); they are
            never used for adjustment.

    Raises:
        TypeError: if ``edges``, ``nodes`` or ``latent`` is not iterable (a single name is fine).
        ValueError: on a directed cycle or self-loop, a duplicate node, latent or edge, a latent
            name that is not a node, or a node name that is not a non-empty str.
    """

    def __init__(
        self,
        edges: Iterable[tuple[str, str]],
        *,
        nodes: Iterable[str] = (),
        latent: Iterable[str] = (),
    ) -> None:
        pairs = _iterate(edges, "edges", "an iterable of (parent, child) pairs")
        for edge in pairs:
            if not isinstance(edge, tuple | list) or len(edge) != 2:
                raise ValueError(f"edges: expected (parent, child) pairs, got {edge!r}")
            _check_name(edge[0], "edges")
            _check_name(edge[1], "edges")
        pairs = [(p, c) for p, c in pairs]
        extra = _node_list(nodes, "nodes")
        hidden = _node_list(latent, "latent")
        for what, items in (("node", extra), ("latent", hidden)):
            for name in items:
                _check_name(name, what)
            if dup := _duplicates(items):
                raise ValueError(f"duplicate {what}(s): {', '.join(map(str, dup))}")
        if dup := _duplicates(pairs):
            raise ValueError(f"duplicate edge(s): {', '.join(f'{p} -> {c}' for p, c in dup)}")
        if loops := sorted({p for p, c in pairs if p == c}):
            raise ValueError(f"self-loop(s) on: {', '.join(loops)}")
        graph = nx.DiGraph()
        graph.add_nodes_from(extra)
        graph.add_edges_from(pairs)
        if unknown := sorted(set(hidden) - set(graph)):
            raise ValueError(f"latent: unknown node(s) {', '.join(unknown)}")
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            pass
        else:
            names = [p for p, _ in cycle] + [cycle[0][0]]
            raise ValueError(f"the graph has a directed cycle: {' -> '.join(names)}")
        self._latent = frozenset(hidden)
        nx.set_node_attributes(graph, {n: n in self._latent for n in graph}, "latent")
        self._graph = graph
        self._nodes = tuple(nx.lexicographical_topological_sort(graph))
        rank = {n: i for i, n in enumerate(self._nodes)}
        self._edges = tuple(sorted(graph.edges, key=lambda e: (rank[e[0]], rank[e[1]])))
        self._projection: LatentProjection | None = None

    # ------------------------------------------------------------------ basics
    @property
    def nodes(self) -> tuple[str, ...]:
        """All nodes in topological order (ties broken lexicographically)."""
        return self._nodes

    @property
    def observed(self) -> tuple[str, ...]:
        """The observed (non-latent) nodes, in the order of `nodes`."""
        return tuple(n for n in self._nodes if n not in self._latent)

    @property
    def latent(self) -> frozenset[str]:
        return self._latent

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        return self._edges

    def _names(self, nodes: Nodes, argument: str, *, empty: bool = False) -> frozenset[str]:
        """Normalise a name or iterable of names: `TypeError` if ``nodes`` is neither,
        `ValueError` on unknown names (or none, unless ``empty``)."""
        names = _node_list(nodes, argument)
        unknown = [n for n in names if not isinstance(n, str) or n not in self._graph]
        if unknown:
            raise ValueError(
                f"{argument}: unknown node(s) {', '.join(map(repr, unknown))}; "
                f"the graph's nodes are {', '.join(self._nodes)}"
            )
        if not names and not empty:
            raise ValueError(f"{argument}: expected at least one node, got none")
        return frozenset(names)

    def parents(self, nodes: Nodes) -> frozenset[str]:
        """Parents of a node (or union over several)."""
        names = self._names(nodes, "nodes")
        return frozenset(p for n in names for p in self._graph.predecessors(n))

    def children(self, nodes: Nodes) -> frozenset[str]:
        """Children of a node (or union over several)."""
        names = self._names(nodes, "nodes")
        return frozenset(c for n in names for c in self._graph.successors(n))

    def ancestors(self, nodes: Nodes) -> frozenset[str]:
        """Proper ancestors of the given nodes (a given node is included only if it is an
        ancestor of another given node)."""
        names = self._names(nodes, "nodes")
        return frozenset().union(*(nx.ancestors(self._graph, n) for n in names))

    def descendants(self, nodes: Nodes) -> frozenset[str]:
        """Proper descendants of the given nodes (see `ancestors`)."""
        names = self._names(nodes, "nodes")
        return frozenset().union(*(nx.descendants(self._graph, n) for n in names))

    def project(self, nodes: Nodes) -> CausalGraph:
        """The graph over `nodes` alone: j -> i wherever a directed path runs from j to i
        through nodes outside the set only (the directed part of the latent projection;
        confounding by the dropped nodes is not represented). Latent marks are kept."""
        keep = self._names(nodes, "nodes")
        edges = []
        for child in keep:
            # Walk up from the child through dropped nodes until a kept one is reached.
            frontier, seen = list(self._graph.predecessors(child)), set()
            while frontier:
                node = frontier.pop()
                if node in seen:
                    continue
                seen.add(node)
                if node in keep:
                    edges.append((node, child))
                else:
                    frontier.extend(self._graph.predecessors(node))
        order = [n for n in self._nodes if n in keep]
        return CausalGraph(edges, nodes=order, latent=sorted(self._latent & keep))

    def to_networkx(self) -> nx.DiGraph:
        """A copy as `networkx.DiGraph`; each node has a boolean ``latent`` attribute."""
        return self._graph.copy()

    def __repr__(self) -> str:
        isolated = [n for n in self._nodes if self._graph.degree(n) == 0]
        extra = f", nodes={isolated!r}" if isolated else ""
        lat = f", latent={sorted(self._latent)!r}" if self._latent else ""
        return f"CausalGraph(edges={list(self._edges)!r}{extra}{lat})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalGraph):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[frozenset[str], frozenset[tuple[str, str]], frozenset[str]]:
        return frozenset(self._nodes), frozenset(self._edges), self._latent

    # ------------------------------------------------------------ d-separation
    def d_separated(self, xs: Nodes, ys: Nodes, zs: Nodes = ()) -> bool:
        """Whether ``zs`` d-separates ``xs`` from ``ys`` (the sets must be disjoint)."""
        x, y = self._names(xs, "xs"), self._names(ys, "ys")
        z = self._names(zs, "zs", empty=True)
        pairs = (("xs", x, "ys", y), ("xs", x, "zs", z), ("ys", y, "zs", z))
        for name_a, a, name_b, b in pairs:
            if both := a & b:
                raise ValueError(f"{name_a} and {name_b} overlap: {', '.join(sorted(both))}")
        return nx.is_d_separator(self._graph, set(x), set(y), set(z))

    # --------------------------------------------------------------- back-door
    def _query(
        self, treatment: Nodes, outcome: Nodes, zs: Nodes = ()
    ) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        """Validate a (treatment, outcome, adjustment set) query."""
        x, y = self._names(treatment, "treatment"), self._names(outcome, "outcome")
        if both := x & y:
            raise ValueError(f"treatment and outcome overlap: {', '.join(sorted(both))}")
        for name, s in (("treatment", x), ("outcome", y)):
            if lat := s & self._latent:
                raise ValueError(f"{name}: latent node(s) {', '.join(sorted(lat))}")
        z = self._names(zs, "zs", empty=True)
        if lat := z & self._latent:
            raise ValueError(f"zs: latent node(s) cannot be adjusted for: {', '.join(sorted(lat))}")
        if both := z & (x | y):
            raise ValueError(f"zs overlaps treatment/outcome: {', '.join(sorted(both))}")
        return x, y, z

    def _backdoor_graph(self, x: frozenset[str]) -> nx.DiGraph:
        """The graph without the edges out of ``x``."""
        g = self._graph.copy()
        g.remove_edges_from([(a, b) for a in x for b in self._graph.successors(a)])
        return g

    def _backdoor_problem(
        self, x: frozenset[str], y: frozenset[str]
    ) -> tuple[nx.DiGraph, frozenset[str]]:
        """The back-door graph and the nodes an adjustment set may use."""
        allowed = frozenset(self.observed) - x - y - self.descendants(x)
        return self._backdoor_graph(x), allowed

    def is_backdoor_set(self, treatment: Nodes, outcome: Nodes, zs: Nodes) -> bool:
        """Pearl's back-door criterion, generalised to sets of treatments and outcomes.

        ``zs`` is a back-door set if (i) no node of ``zs`` descends from a treatment and (ii)
        ``zs`` blocks every path from a treatment to an outcome that starts with an arrow into
        that treatment and passes through no other treatment, i.e. d-separates treatment and
        outcome once the edges out of the treatments are removed.
        """
        x, y, z = self._query(treatment, outcome, zs)
        if z & self.descendants(x):
            return False
        return nx.is_d_separator(self._backdoor_graph(x), set(x), set(y), set(z))

    def backdoor_sets(
        self, treatment: Nodes, outcome: Nodes, minimal: bool = True
    ) -> Iterator[frozenset[str]]:
        """Back-door adjustment sets of observed nodes, lazily: stop whenever you have enough.

        With ``minimal=True`` (default) the inclusion-minimal sets, by ListMinSep (van der
        Zander, Liśkiewicz & Textor 2019; Takata 2010): minimal separators of the moralised
        ancestral back-door graph, polynomial delay. If the empty set is valid it is the only
        one. With ``minimal=False`` every valid set, by ListSep of the same paper (polynomial
        delay per set; their number can be exponential in the number of nodes).

        Sets come in the enumeration's order, deterministic but not by size: sort with
        ``key=lambda s: (len(s), sorted(s))`` to rank them, or call `smallest_backdoor_set` for
        the first of that ranking without listing. Nothing is yielded if no set exists. The
        arguments are checked at the call, not at the first ``next``.
        """
        x, y, _ = self._query(treatment, outcome)
        g, allowed = self._backdoor_problem(x, y)
        if minimal:
            return _minimal_separators(g, x, y, allowed)
        return _all_separators(g, x, y, allowed)

    def smallest_backdoor_set(self, treatment: Nodes, outcome: Nodes) -> frozenset[str] | None:
        """A back-door set of observed nodes of the smallest size (ties: the first by sorted
        names), or ``None`` if there is none.

        A minimum vertex cut of the moralised ancestral back-door graph, by one maximum flow
        (polynomial, however many minimal sets there are).
        """
        x, y, _ = self._query(treatment, outcome)
        g, allowed = self._backdoor_problem(x, y)
        return _smallest_separator(g, x, y, allowed)

    # -------------------------------------------------------------- front-door
    def _single(self, treatment: Nodes, outcome: Nodes) -> tuple[str, str]:
        x, y, _ = self._query(treatment, outcome)
        if len(x) != 1 or len(y) != 1:
            raise ValueError(
                f"the front-door criterion takes one treatment and one outcome, got "
                f"treatment={sorted(x)}, outcome={sorted(y)}"
            )
        return next(iter(x)), next(iter(y))

    def _frontdoor_nodes_ok(self, x: str, y: str, zs: Iterable[str]) -> set[str]:
        """The nodes of ``zs`` that satisfy conditions (ii) and (iii) of the front-door
        criterion on their own."""
        g_x = self._backdoor_graph(frozenset([x]))
        return {
            z
            for z in zs
            if nx.is_d_separator(g_x, {x}, {z}, set())
            and nx.is_d_separator(self._backdoor_graph(frozenset([z])), {z}, {y}, {x})
        }

    def is_frontdoor_set(self, treatment: str, outcome: str, zs: Nodes) -> bool:
        """Pearl's front-door criterion for one treatment ``X`` and one outcome ``Y``.

        (i) ``zs`` intercepts every directed path ``X -> Y``; (ii) no back-door path from ``X``
        to any ``z`` is open (empty conditioning set); (iii) every back-door path from each
        ``z`` to ``Y`` is blocked by ``{X}``.

        (ii) and (iii) are read node by node, as in Pearl (2009, Def. 3.3.3). A set-level
        reading of (iii) (``X`` d-separates ``Z`` and ``Y`` once the edges out of all of ``Z``
        are removed) is weaker and can accept a few more sets; this is the conservative one.
        """
        x, y = self._single(treatment, outcome)
        _, _, z = self._query(x, y, zs)
        rest = self._graph.subgraph(set(self._graph) - z)
        if nx.has_path(rest, x, y):
            return False
        return self._frontdoor_nodes_ok(x, y, z) == z

    def _frontdoor_problem(self, x: str, y: str) -> tuple[nx.DiGraph, frozenset[str]]:
        """The graph and the nodes a front-door set may use: observed nodes on directed paths
        ``x -> y`` that satisfy (ii) and (iii) (both concern single nodes and hold for every
        subset of a valid set)."""
        g = self._graph
        between = (nx.descendants(g, x) & nx.ancestors(g, y)) - self._latent
        return g, frozenset(self._frontdoor_nodes_ok(x, y, between))

    def frontdoor_sets(self, treatment: str, outcome: str) -> Iterator[frozenset[str]]:
        """Minimal front-door sets of observed nodes, lazily: stop whenever you have enough.

        A minimal front-door set is a minimal cut of the directed paths ``X -> Y`` through
        nodes that satisfy (ii) and (iii), listed with polynomial delay (Takata 2010 style
        backtracking over closest cuts, see `_cuts`). Order, laziness and argument checks as in
        `backdoor_sets`; `smallest_frontdoor_set` ranks without listing. Yields only the empty
        set if there is no directed path ``X -> Y``, nothing if no set exists.
        """
        x, y = self._single(treatment, outcome)
        g, valid = self._frontdoor_problem(x, y)
        return minimal_cuts({x}, {y}, g.successors, g.predecessors, set(g) - valid)

    def smallest_frontdoor_set(self, treatment: str, outcome: str) -> frozenset[str] | None:
        """A front-door set of observed nodes of the smallest size (ties: the first by sorted
        names), or ``None`` if there is none: a minimum cut of the directed paths ``X -> Y``
        through valid nodes, by one maximum flow."""
        x, y = self._single(treatment, outcome)
        g, valid = self._frontdoor_problem(x, y)
        return minimum_cut({x}, {y}, g.successors, set(g) - valid, key=str)

    # ---------------------------------------------------------- identification
    def latent_projection(self) -> LatentProjection:
        """The latent projection: observed nodes, ``a -> b`` where a directed path runs from
        ``a`` to ``b`` through latent nodes only, ``a <-> b`` where a latent node reaches both
        by directed paths through latent nodes only."""
        if self._projection is None:
            self._projection = LatentProjection.of(self._graph, self._nodes, self._latent)
        return self._projection

    def c_components(self) -> list[frozenset[str]]:
        """The c-components of the latent projection (observed nodes joined by bidirected
        edges), ordered by their first node in `nodes`."""
        return self.latent_projection().c_components()

    def identify(
        self,
        treatment: Nodes,
        outcome: Nodes,
        given: Nodes | None = None,
        *,
        method: Literal["auto", "id"] = "auto",
    ) -> Identification:
        """Identify ``P(outcome | do(treatment))``, or ``P(outcome | do(treatment), given)``.

        Without ``given``: back-door adjustment (the smallest set, ties by sorted names), else
        front-door adjustment (single treatment and outcome; the smallest set likewise), else
        Shpitser & Pearl's ID algorithm (strategy "id"), which is complete: if it fails the
        result has strategy "none" and a `Hedge`. With ``given``: IDC (strategy "idc"), also
        complete. ``method="id"`` skips the adjustment criteria. The `Identification` carries
        the estimand as text and as an expression tree (`Identification.evaluate`).

        Example:
            >>> g = CausalGraph(
            ...     [("smoking", "tar"), ("tar", "cancer"), ("U", "smoking"), ("U", "cancer")],
            ...     latent=["U"],
            ... )
            >>> result = g.identify("smoking", "cancer")
            >>> result.strategy, sorted(result.adjustment_set)
            ('frontdoor', ['tar'])
            >>> print(g.identify("tar", "cancer"))
            P(cancer | do(tar)) = Σ_{smoking} P(cancer | tar, smoking) P(smoking)
        """
        if method not in ("auto", "id"):
            raise ValueError(f"method: expected 'auto' or 'id', got {method!r}")
        x, y, _ = self._query(treatment, outcome)
        z = frozenset() if given is None else self._names(given, "given", empty=True)
        if lat := z & self._latent:
            raise ValueError(f"given: latent node(s) {', '.join(sorted(lat))}")
        if both := z & (x | y):
            raise ValueError(f"given overlaps treatment/outcome: {', '.join(sorted(both))}")
        axes = {"treatment": tuple(sorted(x)), "outcome": tuple(sorted(y))}
        if not z and method == "auto":
            if (zs := self.smallest_backdoor_set(x, y)) is not None:
                expr = backdoor_expression(x, y, zs)
                return Identification("backdoor", zs, backdoor_estimand(x, y, zs), expr, **axes)
            if len(x) == 1 and len(y) == 1:
                (tx,), (ty,) = x, y
                if (ms := self.smallest_frontdoor_set(tx, ty)) is not None:
                    expr = frontdoor_expression(tx, ty, ms)
                    text = frontdoor_estimand(tx, ty, ms)
                    return Identification("frontdoor", ms, text, expr, **axes)
        g = self.latent_projection()
        try:
            expr = idc_estimand(g, x, y, z) if z else id_estimand(g, x, y)
        except NotIdentifiable as failure:
            text = not_identified(x, y, failure.hedge, z)
            return Identification(
                "none", frozenset(), text, None, failure.hedge, **axes, given=tuple(sorted(z))
            )
        text = f"{query_text(x, y, z)} = {expr.format(x | y | z)}"
        strategy: Literal["id", "idc"] = "idc" if z else "id"
        return Identification(strategy, frozenset(), text, expr, **axes, given=tuple(sorted(z)))


def _ancestral(g: nx.DiGraph, nodes: Iterable[str]) -> set[str]:
    """``nodes`` together with all their ancestors in ``g``."""
    out = set(nodes)
    stack = list(out)
    while stack:
        for p in g.predecessors(stack.pop()):
            if p not in out:
                out.add(p)
                stack.append(p)
    return out


def _moral_ancestral(g: nx.DiGraph, x: frozenset[str], y: frozenset[str]) -> nx.Graph:
    """The moral graph of ``g``'s ancestral graph of ``x ∪ y``: every minimal d-separator lies
    in ``An(x ∪ y)``, and for those sets d-separation is plain separation in this graph."""
    return nx.moral_graph(g.subgraph(_ancestral(g, x | y)))


def _minimal_separators(
    g: nx.DiGraph, x: frozenset[str], y: frozenset[str], allowed: frozenset[str]
) -> Iterator[frozenset[str]]:
    """ListMinSep: all minimal d-separators of ``x`` and ``y`` in ``g`` within ``allowed``."""
    moral = _moral_ancestral(g, x, y)
    forbidden = set(moral) - x - y - allowed
    yield from minimal_cuts(x, y, moral.neighbors, moral.neighbors, forbidden)


def _smallest_separator(
    g: nx.DiGraph, x: frozenset[str], y: frozenset[str], allowed: frozenset[str]
) -> frozenset[str] | None:
    """FindMinCostSep with unit costs: a smallest d-separator of ``x`` and ``y`` in ``g`` within
    ``allowed`` (ties by sorted names), or ``None``. A smallest one is minimal, so it lies in
    ``An(x ∪ y)``."""
    moral = _moral_ancestral(g, x, y)
    return minimum_cut(x, y, moral.neighbors, set(moral) - allowed, key=str)


def _all_separators(
    g: nx.DiGraph, x: frozenset[str], y: frozenset[str], allowed: frozenset[str]
) -> Iterator[frozenset[str]]:
    """ListSep: all d-separators ``Z`` of ``x`` and ``y`` in ``g`` with ``Z ⊆ allowed``."""

    def feasible(include: frozenset[str], allow: frozenset[str]) -> bool:
        # some separator I ⊆ Z ⊆ R exists iff R ∩ An(X ∪ Y ∪ I) is one (van der Zander et al.)
        candidate = allow & _ancestral(g, x | y | include)
        return nx.is_d_separator(g, set(x), set(y), set(candidate))

    start: tuple[frozenset[str], frozenset[str]] = (frozenset(), allowed)
    if not feasible(*start):
        return
    stack = [start]
    while stack:
        include, allow = stack.pop()
        if include == allow:
            yield include
            continue
        v = min(allow - include)
        for child in ((include, allow - {v}), (include | {v}, allow)):
            if feasible(*child):
                stack.append(child)
