"""Exact distributions of small discrete SCMs by enumeration: the ground truth for checking
identification (`CausalGraph.identify`) on random models."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from causalvision.graph.causal_graph import CausalGraph

__all__ = ["RandomBinarySCM"]


class RandomBinarySCM:
    """Binary variables with random conditional probability tables over a `CausalGraph`
    (latent nodes included), and their exact distributions by enumeration: the ground truth
    an estimand from `CausalGraph.identify` is checked against (`Identification.evaluate` of
    `observational()` must equal `interventional(...)`).

    Args:
      graph: the causal graph; every node is a binary variable.
      rng: draws each node's table P(node = 1 | parents) uniformly in [0.1, 0.9].

    Exponential in the number of nodes (2^nodes entries): for graphs of up to ~20 nodes.

    Example:
      >>> import numpy as np
      >>> g = CausalGraph([("X", "M"), ("M", "Y"), ("U", "X"), ("U", "Y")], latent=["U"])
      >>> model = RandomBinarySCM(g, np.random.default_rng(0))
      >>> result = g.identify("X", "Y")  # front-door through M
      >>> got = result.evaluate(model.observational(), g.observed)
      >>> bool(np.allclose(got, model.interventional(["X"], ["Y"])))
      True
    """

    @staticmethod
    def random_graph(rng: np.random.Generator, *, latent_anywhere: bool = False) -> CausalGraph:
        """A random graph to check identification on: 4-8 observed nodes V0..., forward edges
        of a random density in [0.2, 0.5], and 1-3 latent confounders U0... (roots with two
        observed children); with `latent_anywhere`, one or two of the V nodes are latent too."""
        n = int(rng.integers(4, 9))
        names = [f"V{i}" for i in range(n)]
        density = rng.uniform(0.2, 0.5)
        edges = [
            (names[i], names[j])
            for i in range(n)
            for j in range(i + 1, n)
            if rng.random() < density
        ]
        latent: list[str] = []
        if latent_anywhere:
            k = int(rng.integers(1, 3))
            latent = [str(v) for v in rng.choice(names, size=k, replace=False)]
        for k in range(int(rng.integers(1, 4))):
            a, b = rng.choice(names, size=2, replace=False)
            edges += [(f"U{k}", str(a)), (f"U{k}", str(b))]
            latent.append(f"U{k}")
        return CausalGraph(edges, nodes=names, latent=latent)

    def __init__(self, graph: CausalGraph, rng: np.random.Generator) -> None:
        self.graph = graph
        self.nodes = graph.nodes
        self.axis = {n: i for i, n in enumerate(self.nodes)}
        self.parents = {n: sorted(graph.parents(n)) for n in self.nodes}
        self.cpt = {}
        for n in self.nodes:
            p1 = rng.uniform(0.1, 0.9, size=(2,) * len(self.parents[n]))
            self.cpt[n] = np.stack([1 - p1, p1], axis=-1)  # axes: parents..., n

    def joint(self, do: Mapping[str, int] | None = None) -> np.ndarray:
        """The joint over every node (axes in `nodes` order), under ``do``."""
        do = do or {}
        k = len(self.nodes)
        out = np.ones((2,) * k)
        for n in self.nodes:
            names = [*self.parents[n], n]
            if n in do:
                table = np.zeros((2,) * len(names))
                table[..., do[n]] = 1.0
            else:
                table = self.cpt[n]
            order = sorted(range(len(names)), key=lambda i: self.axis[names[i]])
            shape = [1] * k
            for i in order:
                shape[self.axis[names[i]]] = 2
            out = out * np.transpose(table, order).reshape(shape)
        return out

    def marginal(self, joint: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The marginal of `joint` (axes in `nodes` order) over `names`, axes in that order."""
        drop = tuple(i for n, i in self.axis.items() if n not in names)
        kept = sorted(names, key=self.axis.__getitem__)
        return np.transpose(joint.sum(axis=drop), [kept.index(n) for n in names])

    def observational(self) -> np.ndarray:
        """The joint over the observed nodes, axes in ``graph.observed`` order."""
        return self.marginal(self.joint(), self.graph.observed)

    def interventional(
        self, xs: Sequence[str], ys: Sequence[str], zs: Sequence[str] = ()
    ) -> np.ndarray:
        """``P(ys | do(xs), zs)`` with axes (xs, zs, ys), by enumeration."""
        out = np.empty((2,) * (len(xs) + len(zs) + len(ys)))
        for xv in itertools.product((0, 1), repeat=len(xs)):
            joint = self.marginal(self.joint(dict(zip(xs, xv, strict=True))), [*zs, *ys])
            if zs:
                norm = joint.sum(axis=tuple(range(len(zs), len(zs) + len(ys))), keepdims=True)
                joint = joint / norm
            out[xv] = joint
        return out

    def sample(self, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`size` units of the observed nodes, `{node: (size,) int64}`, drawn with `rng`."""
        data: dict[str, np.ndarray] = {}
        for n in self.nodes:
            pa = tuple(data[p] for p in self.parents[n])
            p1 = self.cpt[n][(*pa, 1)] if pa else np.full(size, self.cpt[n][1])
            data[n] = (rng.random(size) < p1).astype(np.int64)
        return {n: data[n] for n in self.graph.observed}
