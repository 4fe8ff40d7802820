"""OC-CRL's sparse-offset objective (Mansouri et al., ICLR 2024; REFERENCE §6.3).

A scene x₁ and its sparse perturbation x₂ (a few objects' properties moved) are encoded to
latents z₁, z₂ `(B, K, P)` (K slots of P dims; x₂'s slots are initialised from x₁'s final
slots). The slots come in no order, so z₂'s slots are matched to z₁'s, and the latent loss asks
that a known or candidate *offset mechanism* m map z₁ onto the matched z₂:

    L_latent = MSE(m(z₁), z₂[π])

Shapes and formulas
-------------------
- Matching. `cost[b, i, j] = Σ_p (a[b, i, p] − c[b, j, p])²` `(B, K, K)`; a permutation
  `π (B, K)` with `π[b, i]` the slot of z₂ matched to slot i of z₁. `match_slots` offers

  * "greedy" (jit-compatible): K rounds, each taking the smallest remaining entry of the cost
    matrix and striking out its row and column. Exact when every row's best column is unique
    and mutually best (well separated slots); otherwise a fair approximation;
  * "argmin" (jit-compatible, OC-CRL's `argmin`): `π[b, i] = argmin_j cost[b, i, j]`, which
    is *not* always a permutation (two slots of z₁ may pick one slot of z₂);
  * "hungarian" (host-side numpy, not jit): `scipy.optimize.linear_sum_assignment` per scene,
    the optimal permutation.

  The losses use "greedy" or "argmin" (traceable); the matching is computed on
  `stop_gradient`ed latents (a discrete choice has no gradient), as in OC-CRL. Pass a
  precomputed `permutation` (e.g. a Hungarian one computed outside `jit`) to use that instead.

- Known offsets, aligned with z₁'s slots (`sparse_offset_loss(z1, z2, offsets=δ)`,
  δ `(B, K, P)`): m(z₁) = z₁ + δ and

      L = mean_{b, i, p} (z₁[b, i, p] + δ[b, i, p] − z₂[b, π[b, i], p])²,  π = match(z₁ + δ, z₂).

- Candidate offsets (`sparse_offset_loss(z1, z2, candidates=C)`, C `(M, P)` shared or
  `(B, M, P)` per scene): the perturbation moved *one* slot by *one* of the candidates, and
  which slot and which candidate are unknown. The mechanisms are m_{s, c}(z₁) = z₁ + c ⊗ e_s
  (candidate c added to slot s only), K·M per scene, and each scene takes its best one:

      L = mean_b min_{s, c} mean_{i, p} (m_{s,c}(z₁)[b, i, p] − z₂[b, π_{s,c}[b, i], p])²,
      π_{s,c} = match(m_{s,c}(z₁), z₂).

  This covers OC-CRL's three settings: known offset with unknown slot (C = the true offset
  `(B, 1, P)`), sign-known (`(B, 1, P)` of ±δ·e_p), and unknown (`signed_basis_offsets(P, δ)`
  `(2P, P)`: all ±δ·e_p). Include the zero vector among the candidates only if some pairs are
  unperturbed: with it a constant encoder (z₁ = z₂) scores 0, a collapse the reconstruction
  term must then prevent.

- The total OC-CRL loss is w_latent·L_latent + w_recons·reconstruction (the reconstruction is
  the model's own, e.g. `SlotAttentionAutoEncoder`'s MSE); `occrl_objective` combines them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from causalvision.validation import check_int, check_real

Array = jax.Array

__all__ = [
    "MATCHINGS",
    "match_slots",
    "matching_cost",
    "occrl_objective",
    "signed_basis_offsets",
    "sparse_offset_loss",
]

#: The slot-matching methods of `match_slots` (`method=`).
MATCHINGS = ("greedy", "argmin", "hungarian")


def _latents(value: Any, argument: str) -> Array:
    shape = tuple(np.shape(value))
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{argument}: expected shape (B, K, P) with B, K, P >= 1, got {shape}")
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise ValueError(f"{argument}: expected a floating-point array, got dtype {array.dtype}")
    return array


def _pair(z1: Any, z2: Any) -> tuple[Array, Array]:
    z1, z2 = _latents(z1, "z1"), _latents(z2, "z2")
    if z1.shape != z2.shape:
        raise ValueError(f"z2: expected z1's shape {z1.shape}, got {z2.shape}")
    return z1, z2


def matching_cost(z1: Any, z2: Any) -> Array:
    """Squared distances `(B, K, K)`: `cost[b, i, j] = ||z1[b, i] − z2[b, j]||²`."""
    z1, z2 = _pair(z1, z2)
    return _cost(z1, z2)


def _cost(a: Array, b: Array) -> Array:
    return jnp.sum((a[:, :, None, :] - b[:, None, :, :]) ** 2, axis=-1)


def _greedy(cost: Array) -> Array:
    """Greedy permutation `(B, K)` from costs `(B, K, K)`: repeatedly the smallest free entry."""
    batch, k, _ = cost.shape
    big = jnp.asarray(jnp.inf, cost.dtype)

    def step(carry, _):
        cost, perm = carry
        flat = jnp.argmin(cost.reshape(batch, -1), axis=1)
        row, col = flat // k, flat % k
        rows = jnp.arange(batch)
        perm = perm.at[rows, row].set(col.astype(jnp.int32))
        cost = jnp.where(jnp.arange(k)[None, :, None] == row[:, None, None], big, cost)
        cost = jnp.where(jnp.arange(k)[None, None, :] == col[:, None, None], big, cost)
        return (cost, perm), None

    perm0 = jnp.zeros((batch, k), jnp.int32)
    (_, perm), _ = jax.lax.scan(step, (cost, perm0), None, length=k)
    return perm


def _match(cost: Array, method: str) -> Array:
    if method == "greedy":
        return _greedy(cost)
    return jnp.argmin(cost, axis=-1).astype(jnp.int32)


def _check_method(method: Any, allowed: tuple[str, ...]) -> str:
    if method not in allowed:
        raise ValueError(f"matching: expected one of {allowed}, got {method!r}")
    return method


def match_slots(z1: Any, z2: Any, *, method: str = "greedy") -> Array | np.ndarray:
    """The slot of z2 matched to each slot of z1, `(B, K)` int32, by squared distance.

    Args:
      z1, z2: `(B, K, P)` latents.
      method: "greedy" (jit-compatible permutation, optimal on well separated slots),
        "argmin" (jit-compatible, each row's nearest; may repeat a slot) or "hungarian"
        (optimal permutation via scipy, host-side: not jit-compatible, returns numpy).

    Returns:
      π `(B, K)` with z2[b, π[b, i]] the match of z1[b, i]; `take_slots(z2, π)` reorders z2.
    """
    method = _check_method(method, MATCHINGS)
    z1, z2 = _pair(z1, z2)
    cost = _cost(z1, z2)
    if method != "hungarian":
        return _match(cost, method)
    if isinstance(cost, jax.core.Tracer):
        raise ValueError("method: 'hungarian' runs on the host and cannot be traced; use 'greedy'")
    cost = np.asarray(cost)
    perm = np.empty(cost.shape[:2], np.int32)
    for b in range(cost.shape[0]):
        rows, cols = scipy.optimize.linear_sum_assignment(cost[b])
        perm[b, rows] = cols
    return perm


def _take(z: Array, perm: Array) -> Array:
    return jnp.take_along_axis(z, perm[:, :, None], axis=1)


def signed_basis_offsets(num_latents: int, delta: float = 0.1) -> Array:
    """OC-CRL's unknown-offset candidates `(2P, P)`: +δ·e_p for p < P, then −δ·e_p."""
    num_latents = check_int(num_latents, "num_latents", 1)
    delta = check_real(delta, "delta", 0.0, open_low=True)
    eye = jnp.eye(num_latents, dtype=jnp.float32) * delta
    return jnp.concatenate([eye, -eye], axis=0)


def sparse_offset_loss(
    z1: Any,
    z2: Any,
    *,
    offsets: Any = None,
    candidates: Any = None,
    matching: str = "greedy",
    permutation: Any = None,
) -> Array:
    """OC-CRL's latent loss MSE(m(z₁), z₂[π]) (module docstring for the formulas).

    Args:
      z1: `(B, K, P)` latents of the first scenes.
      z2: `(B, K, P)` latents of the perturbed scenes.
      offsets: known offsets aligned with z1's slots `(B, K, P)`: m(z₁) = z₁ + offsets.
      candidates: candidate offsets `(M, P)` or `(B, M, P)`: one slot moved by one candidate,
        the best (slot, candidate) per scene. Give exactly one of `offsets`, `candidates`.
      matching: "greedy" or "argmin" (both jit-compatible), on stop-gradient latents.
      permutation: `(B, K)` a precomputed π (e.g. `match_slots(..., method="hungarian")`);
        only with `offsets`.

    Returns:
      the scalar loss (mean over scenes); differentiable in z1 and z2; jit-compatible.
    """
    z1, z2 = _pair(z1, z2)
    matching = _check_method(matching, ("greedy", "argmin"))
    batch, k, p = z1.shape
    if (offsets is None) == (candidates is None):
        raise ValueError("offsets, candidates: expected exactly one of them")
    if offsets is not None:
        offsets = jnp.asarray(offsets)
        if offsets.shape != z1.shape:
            raise ValueError(
                f"offsets: expected z1's shape (B, K, P) = {z1.shape}, got {offsets.shape}"
            )
        moved = z1 + offsets
        if permutation is None:
            perm = _match(_cost(*jax.lax.stop_gradient((moved, z2))), matching)
        else:
            perm = jnp.asarray(permutation)
            if perm.shape != (batch, k) or not jnp.issubdtype(perm.dtype, jnp.integer):
                raise ValueError(
                    f"permutation: expected integer slot indices of shape {(batch, k)}, "
                    f"got {perm.dtype} {perm.shape}"
                )
        return jnp.mean((moved - _take(z2, perm)) ** 2)
    if permutation is not None:
        raise ValueError("permutation: only used with offsets (candidates match per mechanism)")
    cands = jnp.asarray(candidates)
    if cands.ndim == 2:
        cands = jnp.broadcast_to(cands[None], (batch, *cands.shape))
    if cands.ndim != 3 or cands.shape[0] != batch or cands.shape[2] != p or cands.shape[1] < 1:
        raise ValueError(
            f"candidates: expected shape (M, {p}) or ({batch}, M, {p}), got {jnp.shape(candidates)}"
        )
    m = cands.shape[1]
    # Mechanisms (s, c): z1 with candidate c added to slot s. moved (B, K·M, K, P).
    onehot = jnp.eye(k, dtype=z1.dtype)  # (s, i)
    shift = onehot[None, :, None, :, None] * cands[:, None, :, None, :]  # (B, K, M, K, P)
    moved = z1[:, None, None] + shift
    moved = moved.reshape(batch * k * m, k, p)
    target = jnp.broadcast_to(z2[:, None], (batch, k * m, k, p)).reshape(batch * k * m, k, p)
    perm = _match(_cost(*jax.lax.stop_gradient((moved, target))), matching)
    errors = jnp.mean((moved - _take(target, perm)) ** 2, axis=(1, 2)).reshape(batch, k * m)
    return jnp.mean(jnp.min(errors, axis=1))


def occrl_objective(
    latent_loss: Any,
    reconstruction_loss: Any,
    *,
    w_latent: float = 1.0,
    w_recons: float = 1.0,
) -> Array:
    """OC-CRL's total loss w_latent·L_latent + w_recons·reconstruction (scalars)."""
    w_latent = check_real(w_latent, "w_latent", 0.0)
    w_recons = check_real(w_recons, "w_recons", 0.0)
    return w_latent * jnp.asarray(latent_loss) + w_recons * jnp.asarray(reconstruction_loss)
