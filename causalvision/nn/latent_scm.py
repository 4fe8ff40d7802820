"""An additive-noise SCM over latent blocks, one block per causal variable (CausalDiffAE's
causal layer, REFERENCE §2.3).

Each causal variable i owns a block z_i `(B,)`; the blocks follow the variables' graph:

    z_i = f_i(z_pa(i)) + u_i        (roots: z_i = u_i)

where pa(i) are i's parents in the `CausalGraph` and f_i is a small MLP reading their blocks
concatenated. This is z = f(Aᵀ z) + u with the adjacency A of the graph, solved in
topological order, so z_i depends on u_j exactly when j is i or one of its ancestors.
CausalDiffAE's code computes f(Aᵀ u) instead (one step from the noise); the two agree for
graphs of depth one up to f's constant, and only the recursive form is an SCM for deeper
graphs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from causalvision.graph import CausalGraph
from causalvision.nn.cpu_kernels import lecun_normal
from causalvision.validation import check_int

Array = jax.Array

__all__ = ["LatentSCM"]


class LatentSCM(nnx.Module):
    """z = f(Aᵀ z) + u over one latent block per node of `graph`.

    Args:
      graph: the causal variables and their edges (e.g. `CausalGraph.project` of a dataset's
        graph onto the variables that get a block). Its topological order is the block order.
      block_size: B, the width of each block.
      hidden: width of each mechanism's hidden layer.
      rngs: parameter initialisation.

    Blocks are passed as `(N, V, B)` arrays, V = the number of variables.
    """

    def __init__(self, graph: CausalGraph, block_size: int, *, hidden: int = 32, rngs: nnx.Rngs):
        if not isinstance(graph, CausalGraph):
            raise ValueError(f"graph: expected a CausalGraph, got {type(graph).__name__}")
        self.variables = graph.nodes
        self.block_size = check_int(block_size, "block_size", 1)
        hidden = check_int(hidden, "hidden", 1)
        index = {name: k for k, name in enumerate(self.variables)}
        # Parents by block index, as static tuples: which blocks each mechanism reads.
        self.parent_blocks = tuple(
            tuple(sorted(index[p] for p in graph.parents(name))) for name in self.variables
        )
        mechanisms = {}
        for k, parents in enumerate(self.parent_blocks):
            if parents:
                mechanisms[str(k)] = nnx.Sequential(
                    nnx.Linear(len(parents) * self.block_size, hidden, rngs=rngs),
                    jax.nn.gelu,
                    nnx.Linear(hidden, self.block_size, kernel_init=lecun_normal(1.0), rngs=rngs),
                )
        self.mechanisms = nnx.Dict(mechanisms)

    @property
    def adjacency(self) -> np.ndarray:
        """A `(V, V)`: A[j, i] = 1 where variable j is a parent of variable i."""
        size = len(self.variables)
        matrix = np.zeros((size, size), np.int32)
        for child, parents in enumerate(self.parent_blocks):
            matrix[list(parents), child] = 1
        return matrix

    def _check_blocks(self, blocks: Array, argument: str) -> Array:
        expected = (len(self.variables), self.block_size)
        if jnp.ndim(blocks) != 3 or tuple(jnp.shape(blocks)[1:]) != expected:
            raise ValueError(
                f"{argument}: expected shape (N, {expected[0]}, {expected[1]}) (N, variables, "
                f"block_size), got {tuple(jnp.shape(blocks))}"
            )
        return jnp.asarray(blocks, jnp.float32)

    def _mechanism(self, k: int, blocks: list[Array]) -> Array:
        parents = self.parent_blocks[k]
        inputs = jnp.concatenate([blocks[j] for j in parents], axis=-1)
        return self.mechanisms[str(k)](inputs)

    def __call__(self, noise: Array) -> Array:
        """z `(N, V, B)` from the exogenous noise u `(N, V, B)`."""
        noise = self._check_blocks(noise, "noise")
        blocks: list[Array] = []
        for k, parents in enumerate(self.parent_blocks):  # topological order
            u = noise[:, k]
            blocks.append(self._mechanism(k, blocks) + u if parents else u)
        return jnp.stack(blocks, axis=1)

    def noise(self, blocks: Array) -> Array:
        """u = z − f(Aᵀ z) `(N, V, B)`: the exogenous noise of the blocks z `(N, V, B)`."""
        blocks = self._check_blocks(blocks, "blocks")
        columns = [blocks[:, k] for k in range(len(self.variables))]
        return jnp.stack(
            [
                columns[k] - self._mechanism(k, columns) if parents else columns[k]
                for k, parents in enumerate(self.parent_blocks)
            ],
            axis=1,
        )
