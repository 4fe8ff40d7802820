"""OC-CRL's sparse-offset objective (matching, known and candidate offsets) and its encoders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from causalvision.losses import (
    match_slots,
    matching_cost,
    occrl_objective,
    signed_basis_offsets,
    sparse_offset_loss,
)
from causalvision.nn import (
    FlatEncoder,
    OCCRLModel,
    SlotAttentionAutoEncoderConfig,
    SpatialBroadcastDecoder,
)

B, K, P = 4, 5, 3


def _separated(seed: int = 0) -> np.ndarray:
    """Slots far apart relative to any offset used below."""
    rng = np.random.default_rng(seed)
    base = np.arange(K, dtype=np.float32)[:, None] * 10.0
    return (base[None] + rng.normal(size=(B, K, P))).astype(np.float32)


def _permutations(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(K) for _ in range(B)]).astype(np.int32)


def _permute(z: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """out[b, perm[b, i]] = z[b, i]: z's slots moved to the places perm names."""
    out = np.empty_like(z)
    for b in range(z.shape[0]):
        out[b, perm[b]] = z[b]
    return out


def test_matching_recovers_a_known_permutation():
    z1, perm = _separated(), _permutations()
    z2 = _permute(z1 + 0.01, perm)
    for method in ("greedy", "argmin", "hungarian"):
        np.testing.assert_array_equal(np.asarray(match_slots(z1, z2, method=method)), perm)
    greedy = jax.jit(lambda a, b: match_slots(a, b, method="greedy"))
    np.testing.assert_array_equal(np.asarray(greedy(z1, z2)), perm)


def test_hungarian_is_optimal_where_greedy_is_not():
    # Greedy takes (0, 0) (cost 0.81) and is left with (1, 1) (cost 9): total 9.81; the
    # optimum (0 -> 1, 1 -> 0) costs 1 + 1.21 = 2.21.
    z1 = np.array([[[0.0], [2.0]]], np.float32)
    z2 = np.array([[[0.9], [-1.0]]], np.float32)
    np.testing.assert_array_equal(np.asarray(match_slots(z1, z2, method="greedy")), [[0, 1]])
    np.testing.assert_array_equal(np.asarray(match_slots(z1, z2, method="hungarian")), [[1, 0]])
    # Hungarian on random costs: a permutation, never worse than greedy.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, K, P)).astype(np.float32), rng.normal(size=(8, K, P))
    cost = np.asarray(matching_cost(a, b.astype(np.float32)))
    h = np.asarray(match_slots(a, b.astype(np.float32), method="hungarian"))
    g = np.asarray(match_slots(a, b.astype(np.float32), method="greedy"))
    for i in range(8):
        assert sorted(h[i]) == list(range(K)) and sorted(g[i]) == list(range(K))
        assert cost[i, np.arange(K), h[i]].sum() <= cost[i, np.arange(K), g[i]].sum() + 1e-5


def test_loss_is_zero_for_a_permutation_of_z1_plus_offsets():
    z1, perm = _separated(), _permutations()
    rng = np.random.default_rng(2)
    offsets = (0.5 * rng.normal(size=(B, K, P))).astype(np.float32)
    z2 = _permute(z1 + offsets, perm)
    for matching in ("greedy", "argmin"):
        loss = sparse_offset_loss(z1, z2, offsets=offsets, matching=matching)
        assert float(loss) < 1e-10
    hungarian = match_slots(z1 + offsets, z2, method="hungarian")
    assert float(sparse_offset_loss(z1, z2, offsets=offsets, permutation=hungarian)) < 1e-10
    # A wrong offset is penalised.
    assert float(sparse_offset_loss(z1, z2, offsets=offsets + 0.1)) == pytest.approx(0.01, 1e-4)


def test_candidate_offsets_pick_the_moved_slot_and_sign():
    z1, perm = _separated(), _permutations()
    candidates = signed_basis_offsets(P, 0.1)
    assert candidates.shape == (2 * P, P)
    moved = z1.copy()
    slots, dims = np.arange(B) % K, np.arange(B) % P
    signs = np.where(np.arange(B) % 2 == 0, 1.0, -1.0)
    moved[np.arange(B), slots, dims] += 0.1 * signs
    z2 = _permute(moved, perm)
    loss = jax.jit(lambda a, b: sparse_offset_loss(a, b, candidates=candidates))(z1, z2)
    assert float(loss) < 1e-10
    # No change at all costs δ² / (K·P) per scene (one slot must move by one candidate).
    unchanged = sparse_offset_loss(z1, _permute(z1, perm), candidates=candidates)
    assert float(unchanged) == pytest.approx(0.01 / (K * P), rel=1e-3)
    # Per-scene known offsets (B, 1, P): the true offset, slot unknown.
    true = np.zeros((B, 1, P), np.float32)
    true[np.arange(B), 0, dims] = 0.1 * signs
    assert float(sparse_offset_loss(z1, z2, candidates=true)) < 1e-10


def test_gradients_flow_to_both_latents():
    z1, perm = _separated(), _permutations()
    z2 = _permute(z1 + 0.3, perm)
    offsets = np.full((B, K, P), 0.2, np.float32)
    g1, g2 = jax.grad(lambda a, b: sparse_offset_loss(a, b, offsets=offsets), (0, 1))(z1, z2)
    assert np.all(np.isfinite(g1)) and np.abs(g1).sum() > 0 and np.abs(g2).sum() > 0
    cands = signed_basis_offsets(P)
    g = jax.grad(lambda a: sparse_offset_loss(a, z2, candidates=cands))(z1)
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    total = occrl_objective(2.0, 3.0, w_latent=0.5, w_recons=2.0)
    assert float(total) == pytest.approx(7.0)


def test_models_shapes_and_gradients():
    config = SlotAttentionAutoEncoderConfig.tiny(resolution=16, num_slots=3)
    images = jnp.linspace(-1, 1, 2 * 16 * 16 * 3).reshape(2, 16, 16, 3)

    # Built and differentiated in one jitted program ("rbg" keys: eager init is slow).
    @jax.jit
    def run():
        rngs = nnx.Rngs(jax.random.key(0, impl="rbg"))
        model = OCCRLModel(config, 2, head_hidden=8, rngs=rngs)
        flat = FlatEncoder(16, 3, 3, 2, widths=(4, 4), hidden=8, head_hidden=8, rngs=rngs)
        flat_ae = FlatEncoder(
            16, 3, 3, 2, widths=(4, 4), latent_size=24, decoder_widths=(4, 4), rngs=rngs
        )

        def loss(model):
            a, b = model.pair(images, images[::-1], key=jax.random.key(1, impl="rbg"))
            latent = sparse_offset_loss(a["z"], b["z"], candidates=signed_basis_offsets(2))
            return occrl_objective(latent, a["mse"] + b["mse"]), (a, b)

        grads, (a, b) = nnx.grad(loss, has_aux=True)(model)
        norms = jnp.stack([jnp.abs(g).sum() for g in jax.tree.leaves(nnx.state(grads))])
        f1, _ = flat.pair(images, images)
        return a, b, norms, f1, flat_ae(images)

    a, b, norms, f1, f2 = run()
    assert a["z"].shape == (2, 3, 2) and b["z"].shape == (2, 3, 2)
    assert a["masks"].shape == (2, 3, 16, 16, 1) and a["mse"].shape == ()
    assert np.all(np.isfinite(norms)) and float(norms.sum()) > 0
    assert f1["z"].shape == (2, 3, 2) and f1["latent"].shape == (2, 6)
    assert "mse" not in f1
    assert f2["latent"].shape == (2, 24) and f2["reconstruction"].shape == (2, 16, 16, 3)
    expected = np.mean((np.asarray(f2["reconstruction"]) - np.asarray(images)) ** 2)
    assert float(f2["mse"]) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: match_slots(np.zeros((2, 3)), np.zeros((2, 3))), "z1"),
        (lambda: match_slots(np.zeros((2, 3, 1)), np.zeros((2, 4, 1))), "z2"),
        (lambda: match_slots(np.zeros((1, 2, 1)), np.zeros((1, 2, 1)), method="lp"), "matching"),
        (lambda: sparse_offset_loss(np.zeros((1, 2, 1)), np.zeros((1, 2, 1))), "offsets"),
        (
            lambda: sparse_offset_loss(
                np.zeros((1, 2, 1)), np.zeros((1, 2, 1)), offsets=np.zeros((1, 2, 2))
            ),
            "offsets",
        ),
        (
            lambda: sparse_offset_loss(
                np.zeros((1, 2, 1)), np.zeros((1, 2, 1)), candidates=np.zeros((3, 2))
            ),
            "candidates",
        ),
        (
            lambda: sparse_offset_loss(
                np.zeros((1, 2, 1)),
                np.zeros((1, 2, 1)),
                offsets=np.zeros((1, 2, 1)),
                permutation=np.zeros((1, 3), np.int32),
            ),
            "permutation",
        ),
        (lambda: signed_basis_offsets(0), "num_latents"),
        (lambda: signed_basis_offsets(2, -0.1), "delta"),
        (lambda: occrl_objective(1.0, 1.0, w_recons=-1.0), "w_recons"),
        (lambda: OCCRLModel("tiny", 2, rngs=nnx.Rngs(0)), "config"),
        (lambda: FlatEncoder(15, 3, 3, 2, widths=(4, 4), rngs=nnx.Rngs(0)), "resolution"),
        (lambda: FlatEncoder(16, 3, 3, 2, latent_size=0, rngs=nnx.Rngs(0)), "latent_size"),
        (
            lambda: FlatEncoder(
                16, 3, 3, 2, decoder_widths=(4,), decoder_initial=2, rngs=nnx.Rngs(0)
            ),
            "widths",
        ),
        (lambda: SpatialBroadcastDecoder(4, 16, 3, initial=3, rngs=nnx.Rngs(0)), "initial"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
