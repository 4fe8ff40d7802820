"""Listing minimal vertex cuts with polynomial delay.

One routine serves two searches: minimal separators in an undirected graph (the moralised
ancestral graph used for back-door sets; neighbours in both directions) and minimal cuts of the
directed paths treatment -> outcome (front-door sets; successors forwards, predecessors
backwards).

The enumeration is the backtracking scheme of Takata (2010), "Space-optimal, backtracking
algorithms to list the minimal vertex separators of a graph", with the restriction to allowed
vertices of van der Zander, Liśkiewicz & Textor (2019), "Separators and adjustment sets in
causal graphs: complete criteria and an algorithmic framework" (ListMinSep):

* A minimal cut ``Z`` is determined by its source side ``C`` (what the sources still reach once
  ``Z`` is removed), and ``Z`` is the set of out-neighbours of ``C``.
* ``_close(S)`` returns the cut whose source side is the smallest one containing ``S``: cut
  just in front of the set ``D`` of vertices that still reach a sink without touching ``S`` or
  its out-neighbours. A forbidden vertex in that cut can only lie on the source side of any
  valid cut, so it is absorbed into ``S`` and the closure repeats (at most ``n`` times).
* A search state ``(S, T)`` stands for the valid cuts whose source side contains ``S`` and
  misses ``T``. Its closest cut ``Z = {z1, ..., zk}`` is output; every other cut of the state
  has ``zi`` on its source side for a first ``i``, giving the disjoint child states
  ``(C + {zi}, T + {z1, ..., z(i-1)})``.

Children are checked before they are kept, so every kept state yields a cut: the delay between
two outputs is ``O(n)`` closures, each ``O(n (n + m))``.

A smallest cut needs no listing (`minimum_cut`): it is a minimum cut of the vertex-split flow
network, in which each allowed vertex is an arc of capacity 1 and everything else has infinite
capacity (FindMinCostSep of van der Zander et al. with unit costs). The minimum cuts are the
residual-closed source sides of one maximum flow (Picard & Queyranne 1980), so whether some
minimum cut contains given vertices takes two searches in the residual network, and the
lexicographically first minimum cut follows greedily.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Set
from typing import Any, TypeVar

N = TypeVar("N", bound=Hashable)
Step = Callable[[N], Iterable[N]]


def _reach(starts: Iterable[N], step: Step[N], blocked: Set[N]) -> set[N]:
    """Vertices reachable from ``starts`` along ``step`` without entering ``blocked``."""
    seen = {v for v in starts if v not in blocked}
    stack = list(seen)
    while stack:
        for w in step(stack.pop()):
            if w not in seen and w not in blocked:
                seen.add(w)
                stack.append(w)
    return seen


def _close(
    side: Set[N],
    succ: Step[N],
    pred: Step[N],
    sinks: Set[N],
    forbidden: Set[N],
) -> tuple[frozenset[N], frozenset[N]] | None:
    """The valid minimal cut with the smallest source side containing ``side``, or ``None``."""
    side = set(side)
    while True:
        out = {w for v in side for w in succ(v)} - side
        if out & sinks or side & sinks:
            return None
        back = _reach(sinks, pred, side | out)
        cut = {u for v in back for u in pred(v)} - back
        side = _reach(side, succ, cut)
        bad = cut & forbidden
        if not bad:
            return frozenset(side), frozenset(cut)
        side |= bad


def minimal_cuts(
    sources: Iterable[N],
    sinks: Iterable[N],
    succ: Step[N],
    pred: Step[N],
    forbidden: Iterable[N] = (),
) -> Iterator[frozenset[N]]:
    """Yield every inclusion-minimal vertex set avoiding ``forbidden``, ``sources`` and ``sinks``
    that cuts all ``succ``-paths from ``sources`` to ``sinks`` (polynomial delay, see above).
    """
    sinks = frozenset(sinks)
    forbidden = frozenset(forbidden)
    first = _close(frozenset(sources), succ, pred, sinks, forbidden)
    if first is None:
        return
    stack: list[tuple[tuple[frozenset[N], frozenset[N]], frozenset[N]]]
    stack = [(first, frozenset())]
    while stack:
        (side, cut), avoid = stack.pop()
        yield cut
        children = []
        done = set(avoid)
        for z in sorted(cut, key=repr):
            if z not in done:
                found = _close(side | {z}, succ, pred, sinks, forbidden)
                if found is not None and not found[0] & done:
                    children.append((found, frozenset(done)))
            done.add(z)
        stack.extend(reversed(children))


# ---------------------------------------------------------------------------- minimum cut
# Flow-network nodes are ports (vertex, side): side 0 is a vertex's entry, side 1 its exit. The
# super-source and super-sink use sides no vertex port has, so they never collide with one.
Port = tuple[Any, int]
Residual = dict[Port, dict[Port, float]]
_SOURCE: Port = (None, 2)
_SINK: Port = (None, 3)


def _network(
    sources: Set[N], sinks: Set[N], succ: Step[N], cuttable: Callable[[N], bool]
) -> Residual:
    """Residual capacities of the vertex-split network, before any flow: ``v``'s entry -> exit
    arc has capacity 1 if ``cuttable(v)``, every other arc infinite capacity."""
    residual: Residual = {_SOURCE: {}, _SINK: {}}  # even if no sink is reachable

    def arc(u: Port, v: Port, capacity: float) -> None:
        out = residual.setdefault(u, {})
        out[v] = out.get(v, 0) + capacity
        residual.setdefault(v, {}).setdefault(u, 0)  # the reverse arc, for cancelling flow

    for v in sources:
        arc(_SOURCE, (v, 0), math.inf)
    for v in _reach(sources, lambda v: () if v in sinks else succ(v), frozenset()):
        if v in sinks:  # paths end at the first sink they meet
            arc((v, 0), _SINK, math.inf)
            continue
        arc((v, 0), (v, 1), 1 if cuttable(v) else math.inf)
        for w in succ(v):
            arc((v, 1), (w, 0), math.inf)
    return residual


def _forward(residual: Residual) -> Step[Port]:
    return lambda u: [v for v, c in residual[u].items() if c > 0]


def _backward(residual: Residual) -> Step[Port]:
    return lambda v: [u for u in residual[v] if residual[u][v] > 0]


def _augmenting_path(residual: Residual) -> list[Port] | None:
    """A shortest source -> sink path of positive residual capacity (Edmonds-Karp)."""
    parent: dict[Port, Port] = {_SOURCE: _SOURCE}
    frontier = [_SOURCE]
    while frontier and _SINK not in parent:
        following = []
        for u in frontier:
            for v, capacity in residual[u].items():
                if capacity > 0 and v not in parent:
                    parent[v] = u
                    following.append(v)
        frontier = following
    if _SINK not in parent:
        return None
    path = [_SINK]
    while path[-1] != _SOURCE:
        path.append(parent[path[-1]])
    return path[::-1]


def _max_flow(residual: Residual) -> int:
    """Saturate ``residual`` in place; return the flow's value (finite by the caller's check)."""
    value = 0
    while (path := _augmenting_path(residual)) is not None:
        pairs = list(itertools.pairwise(path))
        amount = min(residual[u][v] for u, v in pairs)
        for u, v in pairs:
            residual[u][v] -= amount
            residual[v][u] += amount
        value += int(amount)
    return value


def minimum_cut(
    sources: Iterable[N],
    sinks: Iterable[N],
    succ: Step[N],
    forbidden: Iterable[N] = (),
    *,
    key: Callable[[N], Any] = repr,
) -> frozenset[N] | None:
    """The smallest vertex set avoiding ``forbidden``, ``sources`` and ``sinks`` that cuts all
    ``succ``-paths from ``sources`` to ``sinks``; among several, the first by sorted members
    under ``key``. ``None`` if no such set exists (a path through forbidden vertices only).

    One maximum flow (``k + 1`` searches for a cut of size ``k``), then two residual searches
    per saturated vertex: ``O(n (n + m))`` at worst, no listing of cuts.
    """
    sources, sinks = frozenset(sources), frozenset(sinks)
    blocked = frozenset(forbidden) | sources | sinks
    if _reach(sources, lambda v: [w for w in succ(v) if w in blocked], frozenset()) & sinks:
        return None
    residual = _network(sources, sinks, succ, lambda v: v not in blocked)
    size = _max_flow(residual)
    forward, backward = _forward(residual), _backward(residual)
    # Every minimum cut is the set of split arcs leaving a residual-closed set that holds the
    # source (``inside``) and none of the ports that reach the sink (``outside``).
    inside = _reach([_SOURCE], forward, frozenset())
    outside = _reach([_SINK], backward, frozenset())
    # Only saturated split arcs are ever cut.
    saturated = [v for v, side in residual if side == 0 and residual[(v, 0)].get((v, 1)) == 0]
    chosen: list[N] = []
    for v in sorted(saturated, key=key):
        if len(chosen) == size:
            break
        more_inside = _reach([(v, 0)], forward, inside)
        if more_inside & outside:
            continue
        more_outside = _reach([(v, 1)], backward, outside)
        if more_outside & (inside | more_inside):
            continue
        inside |= more_inside
        outside |= more_outside
        chosen.append(v)
    return frozenset(chosen)
