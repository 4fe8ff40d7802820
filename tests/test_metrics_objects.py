"""Object-centric metrics against independent answers: FG-ARI against a plain numpy contingency
implementation, a brute-force pair count and values worked out by hand (both degenerate
conventions); mean best overlap by hand; linear and slot-matched R² and permutation
disentanglement on data whose answer is known."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from causalvision.metrics import (
    DEGENERATE_CONVENTIONS,
    fg_ari,
    linear_r2,
    matched_r2,
    mean_best_overlap,
    mean_fg_ari,
    permutation_disentanglement,
)

STATIC = ("num_true", "num_pred", "degenerate", "ignore_background")
ari_jit = jax.jit(fg_ari, static_argnames=STATIC)
SIZES = {"num_true": 3, "num_pred": 4}
mbo_jit = jax.jit(mean_best_overlap, static_argnames=("num_true", "num_pred", "ignore_background"))


# --------------------------------------------------------------------- independent references


def numpy_ari(true_ids, pred_ids, degenerate="savi"):
    """FG-ARI of one image from a contingency table (np.add.at) and exact math.comb counts."""
    keep = true_ids.ravel() > 0
    t, p = true_ids.ravel()[keep], pred_ids.ravel()[keep]
    n = t.size
    if n == 0:
        return np.nan
    table = np.zeros((t.max() + 1, p.max() + 1), dtype=np.int64)
    np.add.at(table, (t, p), 1)
    pairs = lambda counts: sum(math.comb(int(c), 2) for c in counts.ravel())
    r, s_a, s_b, n2 = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), math.comb(n, 2)
    single = s_a == n2 and s_b == n2
    singletons = s_a == 0 and s_b == 0
    if single or singletons:
        return 1.0 if degenerate == "savi" or single else np.nan
    expected = s_a * s_b / n2
    return (r - expected) / ((s_a + s_b) / 2 - expected)


def brute_force_ari(true_ids, pred_ids):
    """ARI by looking at every pair of foreground points."""
    t, p = true_ids.ravel(), pred_ids.ravel()
    points = np.flatnonzero(t > 0)
    both = same_true = same_pred = total = 0
    for i, j in itertools.combinations(points, 2):
        together_t, together_p = t[i] == t[j], p[i] == p[j]
        both += together_t and together_p
        same_true += together_t
        same_pred += together_p
        total += 1
    if total == 0:
        return np.nan  # no foreground
    expected = same_true * same_pred / total
    denominator = (same_true + same_pred) / 2 - expected
    return 1.0 if denominator == 0 else (both - expected) / denominator  # savi


def random_partitions(rng, num, shape):
    """Images with 0-4 objects on background and predictions with 1-5 slots; the few objects
    and slots make single clusters and empty foregrounds common enough to be exercised."""
    true_ids = np.zeros((num, *shape), dtype=np.int32)
    pred_ids = np.zeros((num, *shape), dtype=np.int32)
    for i in range(num):
        true_ids[i] = rng.integers(0, rng.integers(1, 6), size=shape)
        pred_ids[i] = rng.integers(0, rng.integers(1, 6), size=shape)
    return true_ids, pred_ids


# ------------------------------------------------------------------------------------ FG-ARI


@pytest.mark.parametrize("degenerate", DEGENERATE_CONVENTIONS)
def test_fg_ari_matches_a_numpy_contingency_implementation(degenerate):
    rng = np.random.default_rng(0)
    true_ids, pred_ids = random_partitions(rng, 200, (6, 7))
    got = np.asarray(ari_jit(true_ids, pred_ids, num_true=5, num_pred=5, degenerate=degenerate))
    want = np.array([numpy_ari(t, p, degenerate) for t, p in zip(true_ids, pred_ids, strict=True)])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.isnan(want).any() and (want == 1).any()  # the edge cases were exercised


def test_fg_ari_matches_brute_force_pair_counting_on_tiny_images():
    rng = np.random.default_rng(1)
    true_ids = rng.integers(0, 4, size=(30, 3, 4)).astype(np.int32)
    pred_ids = rng.integers(0, 3, size=(30, 3, 4)).astype(np.int32)
    got = np.asarray(ari_jit(true_ids, pred_ids, num_true=4, num_pred=3))
    want = [brute_force_ari(t, p) for t, p in zip(true_ids, pred_ids, strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_fg_ari_is_exact_on_large_near_degenerate_images():
    """128x128 images where the textbook float32 form cancels ~n² terms."""
    true_ids = np.ones((3, 128, 128), np.int32)
    pred_ids = np.zeros((3, 128, 128), np.int32)
    true_ids[0, 0, 0], pred_ids[0, 0, 1] = 2, 1  # two singletons, mismatched
    true_ids[1, :3], pred_ids[1, :3], pred_ids[1, 5, 5] = 2, 1, 1  # one stray pixel
    rng = np.random.default_rng(2)
    true_ids[2], pred_ids[2] = rng.integers(1, 3, (128, 128)), rng.integers(0, 2, (128, 128))
    got = np.asarray(ari_jit(true_ids, pred_ids, num_true=3, num_pred=2))
    want = [numpy_ari(t, p) for t, p in zip(true_ids, pred_ids, strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_fg_ari_hand_cases():
    # Row 0 is background; objects 1 and 2 have 4 pixels each.
    truth = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]], np.int32)
    relabelled = np.array([[3, 0, 1, 2], [2, 2, 2, 2], [0, 0, 0, 0]], np.int32)
    split = np.array([[0, 0, 0, 0], [3, 3, 3, 3], [1, 1, 2, 2]], np.int32)
    got = np.asarray(ari_jit(np.stack([truth] * 2), np.stack([relabelled, split]), **SIZES))
    # Identical up to relabelling (and whatever the background does): 1.
    # Object 2 split in halves: n_ij = [[4,0,0],[0,2,2]], n = 8:
    # R = 6+1+1 = 8, S_a = 6+6 = 12, S_b = 8, C(8,2) = 28, E = 12*8/28 = 24/7,
    # ARI = (8 - 24/7) / (10 - 24/7) = (32/7) / (46/7) = 16/23.
    np.testing.assert_allclose(got, [1.0, 16 / 23], atol=1e-6)


def test_background_pixels_do_not_change_fg_ari():
    rng = np.random.default_rng(3)
    true_ids, pred_ids = random_partitions(rng, 20, (6, 7))
    moved = np.where(true_ids == 0, rng.integers(0, 5, true_ids.shape), pred_ids).astype(np.int32)
    for degenerate in DEGENERATE_CONVENTIONS:
        a = ari_jit(true_ids, pred_ids, num_true=5, num_pred=5, degenerate=degenerate)
        b = ari_jit(true_ids, moved, num_true=5, num_pred=5, degenerate=degenerate)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fg_ari_degenerate_cases_under_each_convention():
    bg = np.zeros((2, 3), np.int32)
    one_object = bg.copy()
    one_object[0] = 1  # three foreground pixels of one object
    single_slot = np.full((2, 3), 2, np.int32)
    two_slots = np.array([[1, 2, 2], [0, 0, 0]], np.int32)
    singletons = np.array([[1, 2, 3], [0, 0, 0]], np.int32)  # each pixel its own object
    one_pixel = np.array([[1, 0, 0], [0, 0, 0]], np.int32)
    true_ids = np.stack([one_object, one_object, singletons, one_pixel, bg])
    pred_ids = np.stack([single_slot, two_slots, singletons, single_slot, two_slots])
    got = {
        d: np.asarray(ari_jit(true_ids, pred_ids, num_true=4, num_pred=4, degenerate=d))
        for d in DEGENERATE_CONVENTIONS
    }
    # One object as one slot: both partitions are one cluster, 1 under both conventions.
    # One object split in two: the truth is one cluster, so every prediction agrees with it
    # exactly as often as chance (R = S_b = E): ARI 0, no degeneracy (denominator ½(N₂ - S_b)).
    # All singletons in both: 0/0; savi says 1, deepmind's reference divides 0 by 0 (NaN).
    # One foreground pixel: a single cluster, 1 under both. No foreground: NaN under both.
    np.testing.assert_array_equal(got["savi"], [1.0, 0.0, 1.0, 1.0, np.nan])
    np.testing.assert_array_equal(got["deepmind"], [1.0, 0.0, np.nan, 1.0, np.nan])
    for degenerate in DEGENERATE_CONVENTIONS:
        mean, count = mean_fg_ari(true_ids, pred_ids, num_true=4, num_pred=4, degenerate=degenerate)
        scored = got[degenerate][~np.isnan(got[degenerate])]
        assert int(count) == scored.size
        np.testing.assert_allclose(float(mean), scored.mean(), atol=1e-6)
    mean, count = mean_fg_ari(bg[None], bg[None], num_true=4, num_pred=4)
    assert np.isnan(float(mean)) and int(count) == 0


def test_fg_ari_batched_jitted_per_image_and_probabilities_agree():
    rng = np.random.default_rng(4)
    true_ids, pred_ids = random_partitions(rng, 6, (5, 5))
    batched = np.asarray(ari_jit(true_ids, pred_ids, num_true=5, num_pred=5))
    eager = np.asarray(fg_ari(true_ids, pred_ids, num_true=5, num_pred=5))
    single = [
        float(fg_ari(t[None], p[None], num_true=5, num_pred=5)[0])
        for t, p in zip(true_ids, pred_ids, strict=True)
    ]
    np.testing.assert_array_equal(batched, eager)
    np.testing.assert_allclose(batched, single, atol=1e-7)
    # Probabilities whose argmax is pred_ids; flattened points (B, N) give the same answer.
    logits = rng.normal(size=(*pred_ids.shape, 5)) + 10 * np.eye(5)[pred_ids]
    probs = jax.nn.softmax(jnp.asarray(logits, jnp.float32))
    np.testing.assert_array_equal(
        np.asarray(ari_jit(true_ids, probs, num_true=5, num_pred=5)), batched
    )
    flat = ari_jit(true_ids.reshape(6, -1), pred_ids.reshape(6, -1), num_true=5, num_pred=5)
    np.testing.assert_array_equal(np.asarray(flat), batched)
    mean, count = jax.jit(mean_fg_ari, static_argnames=STATIC)(
        true_ids, pred_ids, num_true=5, num_pred=5
    )
    assert int(count) == np.sum(~np.isnan(batched))
    np.testing.assert_allclose(float(mean), np.nanmean(batched), atol=1e-6)


# ------------------------------------------------------------------------ mean best overlap


def test_mean_best_overlap_hand_cases():
    truth = np.array([[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 2, 2, 0, 0, 0, 0]], np.int32)
    pred = np.array([[0, 0, 1, 1, 1, 1, 0, 0], [2, 2, 0, 0, 1, 1, 1, 1]], np.int32)
    got = np.asarray(mbo_jit(truth, pred, num_true=3, num_pred=3))
    # Image 0: object {0..3}; slot 0 = {0,1,6,7} and slot 1 = {2..5} each overlap 2 of a
    # union of 6: IoU 1/3. Image 1: both objects exactly matched: 1.
    np.testing.assert_allclose(got, [1 / 3, 1.0], atol=1e-6)
    # Object 1 half covered by a slot that covers nothing else: IoU 2/4; object 2 perfect.
    truth = np.array([[1, 1, 1, 1, 2, 2, 0, 0]], np.int32)
    pred = np.array([[1, 1, 0, 0, 2, 2, 0, 0]], np.int32)
    np.testing.assert_allclose(
        np.asarray(mbo_jit(truth, pred, num_true=3, num_pred=3)), [(0.5 + 1.0) / 2]
    )
    empty = np.zeros((1, 8), np.int32)
    assert np.isnan(np.asarray(mean_best_overlap(empty, pred, num_true=3, num_pred=3))).all()
    # With the background scored as an object too: image 1 of the first case above.
    whole = mean_best_overlap(truth, truth, num_true=3, num_pred=3, ignore_background=False)
    np.testing.assert_allclose(np.asarray(whole), [1.0])


# ----------------------------------------------------------------------------- linear R²


def test_linear_r2():
    rng = np.random.default_rng(5)
    latents = rng.normal(size=(2000, 3))
    exact = latents @ rng.normal(size=(3, 2)) + np.array([1.0, -2.0])
    np.testing.assert_allclose(linear_r2(latents, exact), [1.0, 1.0], atol=1e-10)
    np.testing.assert_allclose(linear_r2(latents, exact, fit_fraction=0.5), 1.0, atol=1e-10)
    noise = rng.normal(size=(2000, 2))
    assert np.all(np.abs(linear_r2(latents, noise)) < 0.01)  # in-sample: about D/N = 0.0015
    assert np.all(np.abs(linear_r2(latents, noise, fit_fraction=0.5)) < 0.02)
    mixed = exact + noise
    design = np.concatenate([latents, np.ones((2000, 1))], axis=1)
    residual = mixed - design @ np.linalg.lstsq(design, mixed, rcond=None)[0]
    want = 1 - (residual**2).sum(0) / ((mixed - mixed.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(linear_r2(latents, mixed), want, rtol=1e-10)
    constant = np.ones((2000, 1))
    assert np.isnan(linear_r2(latents, constant)).all()


def scenes(rng, num=300, objects=4, slots=5, props=3, dim=6):
    """Slots = a random per-scene permutation of a linear map of the present objects'
    properties, the other slots one shared "empty" vector; masks where slot ↔ object."""
    targets = rng.normal(size=(num, objects, props))
    present = rng.random((num, objects)) < 0.7
    present[:, 0] = True
    mix, offset, empty = rng.normal(size=(props, dim)), rng.normal(size=dim), rng.normal(size=dim)
    latents = np.tile(3 * empty, (num, slots, 1))
    pixels = 4  # per object; one more block of 4 is background
    true_masks = np.zeros((num, objects, (objects + 1) * pixels))
    slot_logits = rng.normal(size=(num, slots, (objects + 1) * pixels))
    for i in range(num):
        order = rng.permutation(slots)
        for m in np.flatnonzero(present[i]):
            latents[i, order[m]] = targets[i, m] @ mix + offset
            true_masks[i, m, m * pixels : (m + 1) * pixels] = 1
            slot_logits[i, order[m], m * pixels : (m + 1) * pixels] += 10
    return latents, targets, present, slot_logits, true_masks


def test_matched_r2_recovers_a_permuted_linear_map_and_not_noise():
    rng = np.random.default_rng(6)
    latents, targets, present, slot_logits, true_masks = scenes(rng)
    probe = matched_r2(latents, targets, present)
    masked = matched_r2(latents, targets, present, slot_masks=slot_logits, true_masks=true_masks)
    assert probe.rule == "probe" and masked.rule == "masks"
    np.testing.assert_allclose(probe.r2, 1.0, atol=1e-8)
    np.testing.assert_allclose(masked.r2, 1.0, atol=1e-8)
    np.testing.assert_array_equal(probe.assignment, masked.assignment)
    assert np.all((masked.assignment >= 0) == present)
    held_out = matched_r2(latents, targets, present, fit_fraction=0.5)
    np.testing.assert_allclose(held_out.r2, 1.0, atol=1e-8)
    # Shuffled noise: near 0 with masks; probe matching picks the best-fitting permutation
    # of each scene, so it is optimistic (documented): low, but above 0.
    noise = rng.normal(size=latents.shape)
    noise_masks = rng.normal(size=slot_logits.shape)
    masked_noise = matched_r2(
        noise, targets, present, slot_masks=noise_masks, true_masks=true_masks
    )
    assert np.all(masked_noise.r2 < 0.05)
    assert np.all(matched_r2(noise, targets, present, fit_fraction=0.5).r2 < 0.45)


def test_permutation_disentanglement():
    rng = np.random.default_rng(7)
    targets = rng.normal(size=(500, 4))
    order = np.array([2, 0, 3, 1])
    latents = targets[:, order] * np.array([2.0, -0.5, 3.0, -1.0])
    result = permutation_disentanglement(latents, targets)
    assert result.score == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(result.target_index[np.argsort(result.latent_index)], order)
    monotone = np.exp(latents)  # Spearman sees through a monotone map, Pearson does not
    assert permutation_disentanglement(monotone, targets, method="spearman").score == 1.0
    assert permutation_disentanglement(monotone, targets).score < 0.99
    noise = permutation_disentanglement(rng.normal(size=(500, 4)), targets)
    assert noise.score < 0.2


# --------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_name_the_argument():
    t = np.ones((2, 4), np.int32)
    with pytest.raises(ValueError, match=r"^pred: expected ids"):
        fg_ari(t, np.ones((3, 4), np.int32), num_true=2, num_pred=2)
    with pytest.raises(ValueError, match=r"^pred: expected probabilities"):
        fg_ari(t, np.ones((2, 4, 3), np.float32), num_true=2, num_pred=2)
    with pytest.raises(ValueError, match=r"^pred: expected integer ids"):
        fg_ari(t, np.ones((2, 4), np.float32), num_true=2, num_pred=2)
    with pytest.raises(ValueError, match=r"^true_ids: expected ids in \[0, num_true=2\)"):
        fg_ari(t + 1, t, num_true=2, num_pred=2)
    with pytest.raises(ValueError, match=r"^pred: expected ids in \[0, num_pred=2\)"):
        fg_ari(t, -t, num_true=2, num_pred=2)
    with pytest.raises(ValueError, match=r"^pred_ids:"):
        mean_best_overlap(t, t[:1], num_true=2, num_pred=2)
    with pytest.raises(ValueError, match=r"^true_ids: expected integer"):
        fg_ari(t.astype(np.float32), t, num_true=2, num_pred=2)
    with pytest.raises(ValueError, match=r"^degenerate:"):
        fg_ari(t, t, num_true=2, num_pred=2, degenerate="sklearn")
    with pytest.raises(ValueError, match=r"^num_pred:"):
        fg_ari(t, t, num_true=2, num_pred=0)
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"^targets: expected 5 rows"):
        linear_r2(x, np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"^latents:"):
        linear_r2(np.full((5, 2), np.nan), np.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"^fit_fraction:"):
        linear_r2(x, np.zeros((5, 1)), fit_fraction=1.0)
    slots, objects = np.zeros((3, 2, 2)), np.zeros((3, 2, 1))
    with pytest.raises(ValueError, match=r"^present: expected shape"):
        matched_r2(slots, objects, np.ones((3, 3), bool))
    with pytest.raises(ValueError, match=r"^present: expected a bool"):
        matched_r2(slots, objects, np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"^object_targets: expected 3 rows"):
        matched_r2(slots, objects[:2], np.ones((2, 2), bool))
    with pytest.raises(ValueError, match=r"^slot_masks, true_masks:"):
        matched_r2(slots, objects, np.ones((3, 2), bool), slot_masks=np.zeros((3, 2, 4)))
    with pytest.raises(ValueError, match=r"^true_masks: expected shape"):
        matched_r2(
            slots,
            objects,
            np.ones((3, 2), bool),
            slot_masks=np.zeros((3, 2, 4)),
            true_masks=np.zeros((3, 2, 5)),
        )
    with pytest.raises(ValueError, match=r"^method:"):
        permutation_disentanglement(x, x, method="kendall")
