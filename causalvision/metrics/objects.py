"""Object-centric metrics: FG-ARI and mean best overlap of segmentations (JAX, jit-compatible),
and the OC-CRL disentanglement scores of slot latents (numpy / scipy, not jit).

Segmentations (REFERENCE §6.4)
------------------------------
`fg_ari` scores a predicted partition of each image against the true one over the foreground
(true id 0 is background and is dropped when `ignore_background`), from the contingency table
n_ij built with one-hot einsums. With a_i, b_j its margins, n their total, and
R = Σ C(n_ij, 2), S_a = Σ C(a_i, 2), S_b = Σ C(b_j, 2), N₂ = C(n, 2):

    ARI = (R − S_a·S_b/N₂) / (½(S_a + S_b) − S_a·S_b/N₂)

computed in the algebraically equal pair-confusion form 2(R·Q − X·Y) / (S_a(N₂ − S_b) +
S_b(N₂ − S_a)), X = S_a − R, Y = S_b − R, Q = N₂ − S_a − S_b + R (pairs together in the
truth only, in the prediction only, in neither). The four pair counts are exact integers
(int32, C(m, 2) formed as (m/2)(m − 1) or m((m − 1)/2) so nothing overflows up to 65,536 scored
points per image; int64 under `jax_enable_x64`); only then are they converted to float. The
denominator is a sum of non-negative terms and bounds both products of the numerator, so the
result is within a few float32 ulps (~1e-6) of the exact value at any size up to that bound:
no cancellation of ~n² terms as in the textbook form (which is off by 4e-4 on a 128×128
object with one mismatched stray pixel in each partition, whose ARI is -6e-5). Beyond 65,536
points per image without x64 the pair counts are formed in float32 (relative error ~1e-7 of
n², so near-degenerate images lose digits: ~1e-6 on a 300×300 one); enable `jax_enable_x64`
for such inputs. Images of 2**24 points or more are refused (the float32 contingency counts
would no longer be exact).

The denominator is 0 exactly when both partitions are one cluster, or both are all
singletons (this includes n = 1). Two conventions, `degenerate=`:

- ``"savi"`` (google-research/slot-attention-video, savi/lib/metrics.py): 1.0 whenever the
  denominator is 0.
- ``"deepmind"`` (google-deepmind/multi_object_datasets, segmentation_metrics.py): 1.0 only
  when both partitions are a single cluster (n = 1 included). For all singletons (n ≥ 2) the
  reference divides 0 by 0 and returns NaN, so this returns NaN. Two differences from that
  code: it raises `ValueError` when the *shapes* have no more points than groups (we score
  every shape); and it tests "single cluster" on the argmax over all points, the ignored
  background rows included, so a one-object image whose background went to another slot gets
  NaN there; here the test is over the scored points, as its own comment intends.

An image with no scored point (no foreground) is NaN under both conventions. (SAVi's code
returns 1.0 there, since its denominator is 0: an empty image would count as a perfect
segmentation.) Average with `mean_fg_ari`, a NaN-mean that also returns how many images were
scored.

`mean_best_overlap` (mBO): for each true object present in the image, the best IoU between
its mask and any predicted mask (predicted masks cover every pixel, background included),
averaged over the image's objects; NaN where an image has none.

Both take true ids `(B, ...)` (e.g. `(B, H, W)` or `(B, N)`) in [0, num_true), and predictions
as integer ids of the same shape in [0, num_pred) or as probabilities / one-hot masks
`(B, ..., num_pred)` (argmax over the last axis). Outside `jit` the inputs are checked; under
`jit` only shapes are (an out-of-range id then simply falls out of the one-hot table).

Disentanglement (REFERENCE §6.3, numpy / scipy, not jit)
-------------------------------------------------------
`linear_r2` is the R² of a least-squares linear fit (with intercept) of each target on the
latents; `matched_r2` first matches slots to objects scene by scene (Hungarian, see its
docstring for the rule), then scores the matched pairs; `permutation_disentanglement` is the
mean |correlation| of latent dimensions and targets matched one-to-one.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.stats

from causalvision.validation import check_int, check_real, check_real_array, check_shape

__all__ = [
    "DEGENERATE_CONVENTIONS",
    "MatchedR2",
    "PermutationDisentanglement",
    "fg_ari",
    "linear_r2",
    "matched_r2",
    "mean_best_overlap",
    "mean_fg_ari",
    "permutation_disentanglement",
]

#: How FG-ARI scores an image whose foreground points are all singletons (`degenerate=`;
#: see the module docstring).
DEGENERATE_CONVENTIONS = ("savi", "deepmind")
# Pair counts are exact in int32 up to this many scored points per image: C(65536, 2) < 2**31.
_EXACT_INT32_POINTS = 65536
# Contingency counts are sums of 0/1 in float32: exact below 2**24.
_MAX_POINTS = 2**24


# ----------------------------------------------------------------------------- segmentations


def fg_ari(
    true_ids: Any,
    pred: Any,
    *,
    num_true: int,
    num_pred: int,
    degenerate: str = "savi",
    ignore_background: bool = True,
) -> jax.Array:
    """Adjusted Rand index of each image's predicted partition over its foreground `(B,)`.

    Args:
      true_ids: true object ids `(B, ...)`, integers in [0, num_true); 0 is background.
      pred: predicted ids of the same shape, integers in [0, num_pred); or probabilities /
        one-hot masks `(B, ..., num_pred)`, whose argmax over the last axis is taken.
      num_true: the number of true ids, background included.
      num_pred: the number of predicted ids (slots).
      degenerate: "savi" (1.0 whenever the denominator is 0) or "deepmind" (1.0 only when
        both partitions are one cluster; NaN for all singletons). See the module docstring.
      ignore_background: drop the points whose true id is 0 (FG-ARI); False scores all points.

    Returns:
      ARI per image `(B,)`, float32 (float64 under x64); NaN where an image has no scored
      point. Works under `jit` with the keyword arguments static.
    """
    degenerate = _check_convention(degenerate)
    true_ids, pred_ids, num_true, num_pred = _prepare(true_ids, pred, num_true, num_pred, "pred")
    return _fg_ari(
        true_ids,
        pred_ids,
        num_true=num_true,
        num_pred=num_pred,
        degenerate=degenerate,
        ignore_background=bool(ignore_background),
        exact=_exact_pairs(true_ids),
    )


def mean_fg_ari(
    true_ids: Any,
    pred: Any,
    *,
    num_true: int,
    num_pred: int,
    degenerate: str = "savi",
    ignore_background: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """FG-ARI averaged over the images that have a scored point, and how many those are.

    Same arguments as `fg_ari`. Returns `(mean, count)`: the NaN-mean of `fg_ari` (NaN when no
    image was scored) and the int32 number of images that entered it. Works under `jit`.
    """
    scores = fg_ari(
        true_ids,
        pred,
        num_true=num_true,
        num_pred=num_pred,
        degenerate=degenerate,
        ignore_background=ignore_background,
    )
    return _nanmean(scores)


def mean_best_overlap(
    true_ids: Any,
    pred_ids: Any,
    *,
    num_true: int,
    num_pred: int,
    ignore_background: bool = True,
) -> jax.Array:
    """Mean best overlap per image `(B,)`: each true object's best IoU over predicted masks,
    averaged over the objects present in the image.

    Args:
      true_ids: true object ids `(B, ...)` in [0, num_true); 0 is background.
      pred_ids: predicted ids of the same shape in [0, num_pred), or probabilities / one-hot
        masks `(B, ..., num_pred)` (argmax).
      num_true, num_pred: the numbers of true (background included) and predicted ids.
      ignore_background: do not score id 0 as an object (its pixels still count in the
        predicted masks' areas, so a slot that also covers background has a lower IoU).

    Returns:
      mBO per image `(B,)`; NaN where an image has no object. Works under `jit`.
    """
    true_ids, pred_ids, num_true, num_pred = _prepare(
        true_ids, pred_ids, num_true, num_pred, "pred_ids"
    )
    return _mean_best_overlap(
        true_ids,
        pred_ids,
        num_true=num_true,
        num_pred=num_pred,
        ignore_background=bool(ignore_background),
    )


# The checked inputs' computations, compiled once per shape (so eager calls are fast too).
@functools.partial(
    jax.jit, static_argnames=("num_true", "num_pred", "degenerate", "ignore_background", "exact")
)
def _fg_ari(true_ids, pred_ids, *, num_true, num_pred, degenerate, ignore_background, exact):
    counts = _contingency(true_ids, pred_ids, num_true, num_pred)
    if ignore_background:
        counts = counts[:, 1:, :]
    return _ari(counts, degenerate, exact=exact)


@functools.partial(jax.jit, static_argnames=("num_true", "num_pred", "ignore_background"))
def _mean_best_overlap(true_ids, pred_ids, *, num_true, num_pred, ignore_background):
    counts = _contingency(true_ids, pred_ids, num_true, num_pred).astype(_float_dtype())
    true_area = jnp.sum(counts, axis=2, keepdims=True)  # (B, T, 1)
    pred_area = jnp.sum(counts, axis=1, keepdims=True)  # (B, 1, K), over every point
    union = true_area + pred_area - counts
    iou = counts / jnp.where(union > 0, union, 1.0)
    best = jnp.max(iou, axis=2)  # (B, T)
    present = true_area[..., 0] > 0
    if ignore_background:
        best, present = best[:, 1:], present[:, 1:]
    return _masked_mean(best, present)


def _check_convention(degenerate: Any) -> str:
    if degenerate not in DEGENERATE_CONVENTIONS:
        raise ValueError(
            f"degenerate: expected one of {', '.join(map(repr, DEGENERATE_CONVENTIONS))}, "
            f"got {degenerate!r}"
        )
    return degenerate


def _prepare(
    true_ids: Any, pred: Any, num_true: Any, num_pred: Any, pred_name: str
) -> tuple[jax.Array, jax.Array, int, int]:
    """Checked true and predicted ids of one shape `(B, ...)` (argmax of probabilities)."""
    num_true = check_int(num_true, "num_true", 1)
    num_pred = check_int(num_pred, "num_pred", 1)
    true_ids, pred = jnp.asarray(true_ids), jnp.asarray(pred)
    if true_ids.ndim < 2 or not jnp.issubdtype(true_ids.dtype, jnp.integer):
        raise ValueError(
            "true_ids: expected integer ids of shape (B, ...) such as (B, H, W) or (B, N), "
            f"got dtype {true_ids.dtype} and shape {true_ids.shape}"
        )
    if math.prod(true_ids.shape[1:]) >= _MAX_POINTS:
        raise ValueError(
            f"true_ids: expected fewer than 2**24 points per image, got shape {true_ids.shape}"
        )
    if pred.ndim == true_ids.ndim + 1:
        if pred.shape != (*true_ids.shape, num_pred):
            raise ValueError(
                f"{pred_name}: expected probabilities of shape {(*true_ids.shape, num_pred)} "
                f"(true_ids' shape + num_pred), got {pred.shape}"
            )
        pred_ids = jnp.argmax(pred, axis=-1)
    elif pred.ndim == true_ids.ndim:
        if pred.shape != true_ids.shape:
            raise ValueError(
                f"{pred_name}: expected ids of true_ids' shape {true_ids.shape}, got {pred.shape}"
            )
        if not jnp.issubdtype(pred.dtype, jnp.integer):
            raise ValueError(
                f"{pred_name}: expected integer ids (or probabilities with a last axis of "
                f"num_pred), got dtype {pred.dtype}"
            )
        pred_ids = pred
        _check_ids(pred_ids, num_pred, pred_name, "num_pred")
    else:
        raise ValueError(
            f"{pred_name}: expected ids of shape {true_ids.shape} or probabilities of shape "
            f"{(*true_ids.shape, num_pred)}, got {pred.shape}"
        )
    _check_ids(true_ids, num_true, "true_ids", "num_true")
    return true_ids, pred_ids, num_true, num_pred


def _check_ids(ids: jax.Array, count: int, argument: str, count_name: str) -> None:
    if isinstance(ids, jax.core.Tracer):
        return
    values = np.asarray(ids)
    bad = (values < 0) | (values >= count)
    if bad.any():
        raise ValueError(
            f"{argument}: expected ids in [0, {count_name}={count}), got e.g. "
            f"{values[bad][:3].tolist()}"
        )


def _float_dtype() -> Any:
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _exact_pairs(true_ids: jax.Array) -> bool:
    return bool(jax.config.jax_enable_x64) or math.prod(true_ids.shape[1:]) <= _EXACT_INT32_POINTS


def _contingency(
    true_ids: jax.Array, pred_ids: jax.Array, num_true: int, num_pred: int
) -> jax.Array:
    """Counts `(B, num_true, num_pred)` of points with each (true, predicted) id, as ints."""
    batch = true_ids.shape[0]
    true_oh = jax.nn.one_hot(true_ids.reshape(batch, -1), num_true, dtype=jnp.float32)
    pred_oh = jax.nn.one_hot(pred_ids.reshape(batch, -1), num_pred, dtype=jnp.float32)
    # Sums of 0/1 products: exact in float32 below 2**24 points at full matmul precision.
    counts = jnp.einsum("bnt,bnk->btk", true_oh, pred_oh, precision=jax.lax.Precision.HIGHEST)
    return counts.astype(jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)


def _pairs(m: jax.Array) -> jax.Array:
    """C(m, 2) elementwise; exact for integers whenever C(m, 2) itself fits the dtype."""
    if jnp.issubdtype(m.dtype, jnp.integer):
        return jnp.where(m % 2 == 0, (m // 2) * (m - 1), m * ((m - 1) // 2))
    return m * (m - 1) / 2


def _ari(counts: jax.Array, degenerate: str, *, exact: bool) -> jax.Array:
    """ARI from contingency counts `(B, T, K)` of the scored points (module docstring)."""
    floating = _float_dtype()
    if not exact:
        counts = counts.astype(floating)
    true_sizes, pred_sizes = jnp.sum(counts, axis=2), jnp.sum(counts, axis=1)
    n = jnp.sum(true_sizes, axis=1)
    r = jnp.sum(_pairs(counts), axis=(1, 2))
    s_a, s_b = jnp.sum(_pairs(true_sizes), axis=1), jnp.sum(_pairs(pred_sizes), axis=1)
    n2 = _pairs(n)
    x, y, q = s_a - r, s_b - r, n2 - s_a - s_b + r
    f = lambda v: v.astype(floating)
    numerator = 2 * (f(r) * f(q) - f(x) * f(y))
    denominator = f(s_a) * f(n2 - s_b) + f(s_b) * f(n2 - s_a)
    single_cluster = (s_a == n2) & (s_b == n2)  # both one cluster (n <= 1 included)
    singletons = (s_a == 0) & (s_b == 0)  # both all singletons
    ari = numerator / jnp.where(single_cluster | singletons, 1, denominator)
    one, nan = jnp.ones_like(ari), jnp.full_like(ari, jnp.nan)
    if degenerate == "savi":
        ari = jnp.where(single_cluster | singletons, one, ari)
    else:
        ari = jnp.where(single_cluster, one, jnp.where(singletons, nan, ari))
    return jnp.where(n == 0, nan, ari)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `values` over `mask` along the last axis; NaN where the mask is empty."""
    count = jnp.sum(mask, axis=-1)
    total = jnp.sum(jnp.where(mask, values, 0), axis=-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1).astype(values.dtype), jnp.nan)


def _nanmean(scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    scored = ~jnp.isnan(scores)
    return _masked_mean(scores, scored), jnp.sum(scored).astype(jnp.int32)


# --------------------------------------------------------------------------- disentanglement


class MatchedR2(NamedTuple):
    """What `matched_r2` returns."""

    r2: np.ndarray
    """R² per property `(P,)` over the matched (slot, object) pairs."""
    assignment: np.ndarray
    """The slot matched to each object `(N, M)`, -1 where the object is absent or unmatched."""
    rule: str
    """How slots were matched: "masks" or "probe"."""


class PermutationDisentanglement(NamedTuple):
    """What `permutation_disentanglement` returns."""

    score: float
    """Mean |correlation| of the matched (latent, target) pairs."""
    latent_index: np.ndarray
    """The matched latent dimensions `(min(D, P),)`."""
    target_index: np.ndarray
    """The target matched to each of them."""
    correlation: np.ndarray
    """|correlation| of every latent dimension with every target `(D, P)` (0 for a constant)."""


def linear_r2(
    latents: Any, targets: Any, *, fit_fraction: float | None = None, seed: int = 0
) -> np.ndarray:
    """R² of a least-squares linear fit with intercept of each target on the latents `(P,)`.

    Args:
      latents: `(N, D)`, finite.
      targets: `(N, P)`, finite.
      fit_fraction: None fits and scores on all N rows (in-sample R², optimistic when D is not
        small next to N); a fraction in (0, 1) fits on that share of the rows, drawn at random
        with `seed`, and scores on the rest.
      seed: the split's seed.

    Returns:
      1 − SSE/SST per target on the scored rows, SST about the scored rows' mean; NaN where a
      target is constant there. numpy (float64), not jit.
    """
    x, y = _rows(latents, "latents"), _rows(targets, "targets")
    _same_rows(y, x, "targets", "latents")
    fit, score = _split(len(x), fit_fraction, seed)
    return _r2(y[score], _predict(_fit(x[fit], y[fit]), x[score]))


def matched_r2(
    slot_latents: Any,
    object_targets: Any,
    present: Any,
    *,
    slot_masks: Any = None,
    true_masks: Any = None,
    rounds: int = 2,
    fit_fraction: float | None = None,
    seed: int = 0,
) -> MatchedR2:
    """R² per object property of a linear fit from each object's matched slot.

    Slots come in no order, so each scene's slots are first matched one-to-one to its present
    objects with the Hungarian algorithm, then `linear_r2` is computed over the matched pairs
    of all scenes. The matching rule:

    - **masks** (`slot_masks` and `true_masks` given): the cost is −IoU between each object's
      true mask and each slot's hard mask (the argmax over slots of the slot masks). It never
      reads the properties, so it cannot flatter the score.
    - **probe** (no masks): the cost is the squared error, in units of each property's spread,
      of a linear probe's prediction from the slot. The probe starts without any matching,
      from a regression of each scene's property *sums* on its slot sums and its number of
      objects (a permutation-free identity: Σ objects = W·Σ slots + per-scene terms, with
      unmatched slots taken to share one "empty" embedding whose contribution the object count
      and intercept absorb). Then `rounds` times: assign, refit the probe on the matched pairs
      (stopping early once the assignment no longer changes). This reads the targets to pick
      the pairs, so it is optimistic: among a scene's permutations it takes the one that fits
      best, and noise slots score above 0 (more so with more slots per object); report it
      next to a shuffled-slots baseline, or give masks.

    Args:
      slot_latents: `(N, K, D)`: N scenes, K slots of D dims.
      object_targets: `(N, M, P)`: M objects of P properties; absent ones are ignored.
      present: `(N, M)` bool: which objects exist. If a scene has more objects than slots,
        only K are matched (the rest are left out).
      slot_masks: optional `(N, K, ...)` slot (attention) masks, soft or hard.
      true_masks: optional `(N, M, ...)` true object masks (nonzero = inside), same spatial
        shape. Give both or neither.
      rounds: probe refits (>= 0); unused with masks.
      fit_fraction: None scores in-sample; a fraction in (0, 1) splits the *scenes* with
        `seed`: the probe and the final linear map are fitted on that share and the R² is
        taken on the matched pairs of the other scenes (matched with the probe so fitted).
      seed: the split's seed.

    Returns:
      `MatchedR2(r2 (P,), assignment (N, M), rule)`. numpy (float64), not jit.
    """
    slots = _real(slot_latents, "slot_latents", 3)
    targets = _real(object_targets, "object_targets", 3)
    num, num_slots, _ = slots.shape
    _same_rows(targets, slots, "object_targets", "slot_latents")
    present = np.asarray(present)
    if present.dtype != np.bool_:
        raise ValueError(f"present: expected a bool array, got dtype {present.dtype}")
    check_shape(present, targets.shape[:2], "present")
    rounds = check_int(rounds, "rounds", 0)
    fit, score = _split(num, fit_fraction, seed)
    if (slot_masks is None) != (true_masks is None):
        raise ValueError("slot_masks, true_masks: expected both or neither, got only one")
    if slot_masks is not None:
        cost = _mask_cost(slot_masks, true_masks, num_slots, targets.shape[:2])
        assignment = _assign(lambda i: cost[i], present, num_slots)
        rule = "masks"
    else:
        assignment = _probe_assignment(slots, targets, present, fit, rounds)
        rule = "probe"
    pairs_fit = _pairs_of(slots, targets, assignment, fit)
    pairs_score = _pairs_of(slots, targets, assignment, score)
    if len(pairs_fit[0]) < 1 or len(pairs_score[0]) < 2:
        raise ValueError("present: expected matched objects to fit and score, got too few")
    coef = _fit(*pairs_fit)
    return MatchedR2(_r2(pairs_score[1], _predict(coef, pairs_score[0])), assignment, rule)


def permutation_disentanglement(
    latents: Any, targets: Any, *, method: str = "pearson"
) -> PermutationDisentanglement:
    """OC-CRL's permutation disentanglement: latent dimensions matched one-to-one to targets
    (Hungarian, maximising the total |correlation|), and the mean |correlation| of the pairs.

    Args:
      latents: `(N, D)`, finite.
      targets: `(N, P)`, finite.
      method: "pearson", or "spearman" (Pearson of the ranks).

    Returns:
      `PermutationDisentanglement(score, latent_index, target_index, correlation)`; a
      permuted, rescaled (signs included) copy of the targets scores 1. A constant column
      correlates 0 with everything. numpy (float64), not jit.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method: expected 'pearson' or 'spearman', got {method!r}")
    x, y = _rows(latents, "latents"), _rows(targets, "targets")
    _same_rows(y, x, "targets", "latents")
    if len(x) < 2:
        raise ValueError(f"latents: expected at least 2 rows, got {len(x)}")
    if method == "spearman":
        x, y = scipy.stats.rankdata(x, axis=0), scipy.stats.rankdata(y, axis=0)
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    norms = np.outer(np.linalg.norm(xc, axis=0), np.linalg.norm(yc, axis=0))
    covariance = np.abs(xc.T @ yc)
    correlation = np.divide(covariance, norms, out=np.zeros_like(norms), where=norms > 0)
    correlation = np.minimum(correlation, 1.0)
    rows, cols = scipy.optimize.linear_sum_assignment(correlation, maximize=True)
    return PermutationDisentanglement(
        float(correlation[rows, cols].mean()), rows, cols, correlation
    )


def _real(value: Any, argument: str, ndim: int) -> np.ndarray:
    array = check_real_array(value, argument)
    if array.ndim != ndim:
        names = {2: "(N, D)", 3: "(N, K, D)"}[ndim]
        raise ValueError(f"{argument}: expected shape {names}, got {array.shape}")
    return array


def _rows(value: Any, argument: str) -> np.ndarray:
    return _real(value, argument, 2)


def _same_rows(a: np.ndarray, b: np.ndarray, argument: str, other: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{argument}: expected {b.shape[0]} rows like {other}, got shape {a.shape}"
        )


def _split(num: int, fit_fraction: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices fitted on and scored on: all rows twice, or a random split."""
    every = np.arange(num)
    if fit_fraction is None:
        return every, every
    fraction = check_real(fit_fraction, "fit_fraction", 0, 1, open_low=True, open_high=True)
    num_fit = round(num * fraction)
    if num_fit < 1 or num - num_fit < 2:
        raise ValueError(
            f"fit_fraction: expected a split of the {num} rows with >= 1 to fit and >= 2 "
            f"to score, got {fit_fraction!r}"
        )
    order = np.random.default_rng(check_int(seed, "seed")).permutation(num)
    return np.sort(order[:num_fit]), np.sort(order[num_fit:])


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares with intercept, on centred data: (weights (D, P), intercept (P,))."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    weights = np.linalg.lstsq(x - x_mean, y - y_mean, rcond=None)[0]
    return weights, y_mean - x_mean @ weights


def _predict(coef: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    weights, intercept = coef
    return x @ weights + intercept


def _r2(y: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    sst = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    sse = np.sum((y - prediction) ** 2, axis=0)
    ratio = np.divide(sse, sst, out=np.full_like(sst, np.nan), where=sst > 0)
    return 1.0 - ratio


def _assign(cost_of, present: np.ndarray, num_slots: int) -> np.ndarray:
    """Hungarian matching per scene: `cost_of(i)` is scene i's cost `(M, K)`."""
    assignment = np.full(present.shape, -1, dtype=np.int64)
    for i in range(present.shape[0]):
        objects = np.flatnonzero(present[i])
        if objects.size == 0:
            continue
        rows, cols = scipy.optimize.linear_sum_assignment(cost_of(i)[objects])
        assignment[i, objects[rows]] = cols
    return assignment


def _mask_cost(
    slot_masks: Any, true_masks: Any, num_slots: int, objects_shape: tuple[int, int]
) -> np.ndarray:
    """−IoU `(N, M, K)` between true masks and the slots' hard (argmax) masks."""
    slot_masks = check_real_array(_unbool(slot_masks), "slot_masks")
    true_masks = check_real_array(_unbool(true_masks), "true_masks")
    num, num_objects = objects_shape
    if slot_masks.ndim < 3 or slot_masks.shape[:2] != (num, num_slots):
        raise ValueError(
            f"slot_masks: expected shape ({num}, {num_slots}, ...) (scenes, slots, ...), "
            f"got {slot_masks.shape}"
        )
    if true_masks.shape != (num, num_objects, *slot_masks.shape[2:]):
        raise ValueError(
            f"true_masks: expected shape {(num, num_objects, *slot_masks.shape[2:])} "
            f"(scenes, objects, slot_masks' spatial shape), got {true_masks.shape}"
        )
    hard = np.argmax(slot_masks.reshape(num, num_slots, -1), axis=1)  # (N, S)
    slot_oh = (hard[:, None, :] == np.arange(num_slots)[None, :, None]).astype(np.float64)
    truth = (true_masks.reshape(num, num_objects, -1) != 0).astype(np.float64)
    overlap = np.einsum("nms,nks->nmk", truth, slot_oh)
    union = truth.sum(-1)[:, :, None] + slot_oh.sum(-1)[:, None, :] - overlap
    return -np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def _unbool(value: Any) -> Any:
    array = np.asarray(value)
    return array.astype(np.float64) if array.dtype == np.bool_ else value


def _pairs_of(
    slots: np.ndarray, targets: np.ndarray, assignment: np.ndarray, scenes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The matched (slot latent, object targets) pairs of some scenes."""
    sub = assignment[scenes]
    scene, obj = np.nonzero(sub >= 0)
    return slots[scenes[scene], sub[scene, obj]], targets[scenes[scene], obj]


def _probe_assignment(
    slots: np.ndarray, targets: np.ndarray, present: np.ndarray, fit: np.ndarray, rounds: int
) -> np.ndarray:
    num_slots = slots.shape[1]
    if not present[fit].any():
        raise ValueError("present: expected at least one object in the scenes fitted on")
    spread = targets[fit][present[fit]].std(axis=0)
    scale = np.where(spread > 0, spread, 1.0)
    weights, intercept = _sum_probe(slots[fit], targets[fit], present[fit])

    def assign(weights, intercept):
        predicted = (slots @ weights + intercept) / scale  # (N, K, P)
        truth = targets / scale  # (N, M, P)
        cost = np.sum((truth[:, :, None, :] - predicted[:, None, :, :]) ** 2, axis=-1)
        return _assign(lambda i: cost[i], present, num_slots)

    assignment = assign(weights, intercept)
    for _ in range(rounds):
        pairs = _pairs_of(slots, targets, assignment, fit)
        new = assign(*_fit(*pairs))
        if np.array_equal(new, assignment):
            break
        assignment = new
    return assignment


def _sum_probe(
    slots: np.ndarray, targets: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A probe (weights (D, P), intercept (P,)) from per-scene sums, without any matching.

    With y = W·s + c for each matched slot and a shared embedding e for the K − n unmatched
    ones, Σ_objects y = W·Σ_slots s + n (c + W·e) − K W·e: regressing the scene sums on
    [Σ slots, n] with an intercept gives W, and c = coef_n + intercept / K.
    """
    num_slots, dim = slots.shape[1:]
    count = present.sum(axis=1, keepdims=True).astype(np.float64)
    features = np.concatenate([slots.sum(axis=1), count], axis=1)
    sums = np.sum(np.where(present[..., None], targets, 0.0), axis=1)
    weights, intercept = _fit(features, sums)
    return weights[:dim], weights[dim] + intercept / num_slots
