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
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Set
from typing import TypeVar

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
