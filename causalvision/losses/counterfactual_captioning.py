"""Counterfactual captioning (See-or-Guess) and CF-VQA objectives (REFERENCE §5.1, §5.3).

Model-agnostic, jit-compatible functions for any autoregressive captioner that exposes
next-token log-probabilities, and for classification-style VQA heads.

Captions
--------
- A caption is token ids `tokens (B, T)` int with a padding mask `mask (B, T)` bool (True on
  real tokens). Position 0 is BOS: the caption fed is [BOS, w₁, …, w_n] (then padding).
- The captioner's log-probabilities `log_probs (B, T, V)` are teacher-forced:
  `log_probs[b, t]` is the distribution of `tokens[b, t + 1]` given `tokens[b, :t + 1]`.
  The last position predicts past the caption and is never read. Pass the caption positions
  only: drop any prefix the model prepends (e.g. BLIP-2's 32 query slots) so that index t of
  the log-probs is the position fed `tokens[:, t]`.
- `token_log_probs(log_probs, tokens)` `(B, T)` re-aligns them with the tokens:
  entry t is log p(tokens[t] | tokens[<t]), read at position t − 1 (entry 0, BOS, is 0).
- A caption's *positions* for the counterfactual averages mean_t are those that predict one
  of its real tokens: t with `mask[:, t + 1]` True, the positions a language-model loss
  scores. Prompt tokens marked False in the mask are thereby left out too.

Entity tokens
-------------
`entity_mask(tokens, entity_ids)` marks, in each factual caption S, the *first occurrence*
of the masked object's entity token sequence (e.g. the ids of "red circle" or of "circle"),
searching positions 1… (never BOS). With alternatives (plural or synonym forms, `(B, K, L)`
padded with −1) the earliest match of any wins, the longest at a tie. A caption without the
entity gets an all-False row; the losses skip it and average over the rows with at least one
entity token (and a counterfactual caption with at least one position); 0 if there is none.

Effects (e = e₁…e_m the entity tokens of row b, ℓ_t(e | I, S) = log_probs[b, t, e])
----------------------------------------------------------------------------------------
    L_TE  = −mean_b (1/m) Σ_j [ ℓ_{t_j}(e_j | I, S)     − mean_t ℓ_t(e_j | I*, S*) ]
    L_NDE = −mean_b (1/m) Σ_j [ mean_t ℓ_t(e_j | I, S*) − mean_t ℓ_t(e_j | I*, S*) ]

Two deliberate departures from the See-or-Guess code:

- t_j is the position that *predicts* e_j in S (the position before e_j's). The reference
  computes t_j = prompt_len + prefix_len − 1 + j without the 32-query offset, so it reads the
  entity inside the query prefix, a term unrelated to the entity's position.
- mean_t averages over the counterfactual caption's real positions only. The reference
  averages over every position, query slots and padding included, so its value depends on
  how much padding a batch happens to carry and on logits no token is ever scored with.

Minimising either loss raises the entity's probability given the real image and lowers it
given the image with the object masked: the caption names the object because it is seen.
`mix_with_language_model` gives the paper's α·L_LM + (1 − α)·L_effect.

CF-VQA
------
Branch logits `(B, A)`: Z_k (the VQA model), Z_q = MLP(sg q_emb), Z_v = MLP(sg v_emb) (the
caller stops the gradient into the embeddings). A branch without treatment is the learnable
scalar c broadcast (`counterfactual_branch`). `cfvqa_fusion` is h, `cfvqa_effects` gives
TE, NDE and TIE = TE − NDE (TIE answers at inference), `cfvqa_loss` trains the branches
and c.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.validation import check_real, preview

Array = jax.Array

__all__ = [
    "FUSIONS",
    "cfvqa_effects",
    "cfvqa_fusion",
    "cfvqa_loss",
    "counterfactual_branch",
    "entity_mask",
    "mix_with_language_model",
    "natural_direct_effect_loss",
    "token_log_probs",
    "total_effect_loss",
]


# -- checks at the boundary ---------------------------------------------------------------------


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(np.shape(value))


def _typed(value: Any, argument: str, ndim: int, what: str, kind: type, name: str) -> Array:
    """`value` as an array of `ndim` dimensions whose dtype is a `kind` (`name` in errors)."""
    array = jnp.asarray(value)
    if array.ndim != ndim or not jnp.issubdtype(array.dtype, kind):
        raise ValueError(
            f"{argument}: expected {name} array of shape {what}, got {array.dtype} {_shape(array)}"
        )
    return array


def _floats(value: Any, argument: str, ndim: int, what: str) -> Array:
    return _typed(value, argument, ndim, what, jnp.floating, "a floating-point")


def _ints(value: Any, argument: str, ndim: int, what: str) -> Array:
    return _typed(value, argument, ndim, what, jnp.integer, "an integer")


def _bools(value: Any, argument: str, shape: tuple[int, ...]) -> Array:
    array = jnp.asarray(value)
    if array.dtype != jnp.bool_ or array.shape != shape:
        raise ValueError(
            f"{argument}: expected a bool array of shape {shape}, got {array.dtype} {_shape(array)}"
        )
    return array


def _concrete(value: Array) -> np.ndarray | None:
    """The values, when they can be read (not under `jax.jit`)."""
    return None if isinstance(value, jax.core.Tracer) else np.asarray(value)


def _check_ids(ids: Array, size: int, argument: str) -> None:
    """Ids in [0, size): out of range, a gather would read a fill value (NaN), not raise."""
    values = _concrete(ids)
    if values is not None and values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(f"{argument}: expected ids in [0, {size}), got {preview(values)}")


def _caption_log_probs(value: Any, argument: str) -> Array:
    return _floats(value, argument, 3, "(B, T, V)")


def _tokens(value: Any, log_probs: Array, argument: str) -> Array:
    tokens = _ints(value, argument, 2, "(B, T)")
    if tokens.shape != log_probs.shape[:2]:
        raise ValueError(
            f"{argument}: expected the log-probs' (B, T) = {log_probs.shape[:2]}, got "
            f"{tokens.shape}"
        )
    _check_ids(tokens, log_probs.shape[2], argument)
    return tokens


# -- captions -----------------------------------------------------------------------------------


def token_log_probs(log_probs: Any, tokens: Any) -> Array:
    """log p(tokens[b, t] | tokens[b, <t]) `(B, T)`, aligned with the tokens.

    Args:
      log_probs: `(B, T, V)` teacher-forced: `log_probs[b, t]` predicts `tokens[b, t + 1]`.
      tokens: `(B, T)` ids, BOS first.

    Returns:
      `(B, T)` float: entry t is `log_probs[b, t − 1, tokens[b, t]]`; entry 0 (BOS, which
      nothing predicts) is 0.
    """
    log_probs = _caption_log_probs(log_probs, "log_probs")
    tokens = _tokens(tokens, log_probs, "tokens")
    return _token_log_probs(log_probs, tokens)


def _token_log_probs(log_probs: Array, tokens: Array) -> Array:
    read = jnp.take_along_axis(log_probs[:, :-1], tokens[:, 1:, None], axis=-1)[..., 0]
    return jnp.concatenate([jnp.zeros_like(log_probs[:, :1, 0]), read], axis=1)


def entity_mask(tokens: Any, entity_ids: Any, mask: Any = None) -> Array:
    """The first occurrence of an entity's token sequence in each caption, `(B, T)` bool.

    Args:
      tokens: `(B, T)` caption ids, BOS first (position 0 is never matched).
      entity_ids: the entity's ids, −1 as trailing padding: `(L,)` one sequence for every
        caption, `(B, L)` one per caption, or `(B, K, L)` K alternatives per caption
        (plural or synonym forms; an all −1 alternative never matches).
      mask: optional `(B, T)` bool, True on real tokens: a match must lie on real tokens.

    Returns:
      `(B, T)` bool, True on the tokens of the earliest match of any alternative (the
      longest alternative at a tie); an all-False row where no alternative occurs.
    """
    tokens = _ints(tokens, "tokens", 2, "(B, T)")
    batch, length = tokens.shape
    alternatives = jnp.asarray(entity_ids)
    if not jnp.issubdtype(alternatives.dtype, jnp.integer) or alternatives.ndim not in (1, 2, 3):
        raise ValueError(
            "entity_ids: expected an integer array of shape (L,), (B, L) or (B, K, L), got "
            f"{alternatives.dtype} {_shape(alternatives)}"
        )
    if alternatives.ndim == 1:
        alternatives = jnp.broadcast_to(alternatives[None], (batch, *alternatives.shape))
    if alternatives.ndim == 2:
        alternatives = alternatives[:, None, :]
    if alternatives.shape[0] != batch or alternatives.shape[2] < 1:
        raise ValueError(
            f"entity_ids: expected (L,), ({batch}, L) or ({batch}, K, L) with L >= 1, got "
            f"{_shape(entity_ids)}"
        )
    _check_entity_padding(alternatives)
    real = jnp.ones_like(tokens, bool) if mask is None else _bools(mask, "mask", tokens.shape)
    span = alternatives.shape[2]
    # windows[b, s, l] = tokens[b, s + l]; past the end a -1 that only padding matches.
    padded = jnp.pad(tokens.astype(jnp.int32), ((0, 0), (0, span)), constant_values=-1)
    padded_real = jnp.pad(real, ((0, 0), (0, span)), constant_values=False)
    index = jnp.arange(length)[:, None] + jnp.arange(span)[None, :]  # (T, L)
    windows, windows_real = padded[:, index], padded_real[:, index]  # (B, T, L)
    want = alternatives.astype(jnp.int32)[:, :, None, :]  # (B, K, 1, L)
    used = want >= 0
    hits = (windows[:, None] == want) & windows_real[:, None]
    sizes = jnp.sum(alternatives >= 0, axis=-1)  # (B, K)
    starts = jnp.arange(length) >= 1  # position 0 is BOS
    match = jnp.all(hits | ~used, axis=-1) & (sizes[:, :, None] > 0) & starts[None, None]
    anywhere = jnp.any(match, axis=1)  # (B, T)
    first = jnp.argmax(anywhere, axis=1)  # the first True (0 when none, masked below)
    at_first = jnp.take_along_axis(match, first[:, None, None], axis=2)[..., 0]  # (B, K)
    size = jnp.max(jnp.where(at_first, sizes, 0), axis=1)  # (B,)
    position = jnp.arange(length)[None, :]
    inside = (position >= first[:, None]) & (position < (first + size)[:, None])
    return inside & jnp.any(anywhere, axis=1)[:, None]


def _check_entity_padding(alternatives: Array) -> None:
    values = _concrete(alternatives)
    if values is None:
        return
    padding = values < 0
    # Padding only at the end: once an entry is padding, every later one is too.
    trailing = np.all(padding[..., 1:] >= padding[..., :-1])
    if values.size and (values.min() < -1 or not trailing):
        raise ValueError(
            f"entity_ids: expected ids >= 0 with -1 only as trailing padding, got {preview(values)}"
        )


def _positions(mask: Array) -> Array:
    """`(B, T)` bool: the positions that predict a real token (t with mask[:, t + 1])."""
    return jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)


def _mean_over_positions(log_probs: Array, mask: Array) -> tuple[Array, Array]:
    """mean_t log_probs[b, t, :] over the caption's positions `(B, V)`, and whether any."""
    positions = _positions(mask)
    count = jnp.sum(positions, axis=1)
    # where, not a product: an unread position may hold -inf, and 0 · -inf is NaN.
    total = jnp.sum(jnp.where(positions[..., None], log_probs, 0.0), axis=1)
    return total / jnp.maximum(count, 1).astype(jnp.float32)[:, None], count > 0


def _entity_loss(
    factual: Array, counterfactual: Array, entity: Array, has_positions: Array
) -> Array:
    """−mean over rows with entities of (1/m) Σ_j (factual − counterfactual)[b, p_j]."""
    entity = entity & (jnp.arange(entity.shape[1]) >= 1)[None, :]  # BOS is never an entity
    count = jnp.sum(entity, axis=1)
    gap = jnp.sum(jnp.where(entity, factual - counterfactual, 0.0), axis=1)
    rows = (count > 0) & has_positions
    per_row = jnp.where(rows, gap / jnp.maximum(count, 1).astype(jnp.float32), 0.0)
    return -jnp.sum(per_row) / jnp.maximum(jnp.sum(rows), 1).astype(jnp.float32)


def _effect_inputs(
    first: Any, second: Any, tokens: Any, entity: Any, counterfactual_mask: Any, names: tuple
) -> tuple[Array, Array, Array, Array, Array]:
    first = _caption_log_probs(first, names[0]).astype(jnp.float32)
    second = _caption_log_probs(second, names[1]).astype(jnp.float32)
    if second.shape[0] != first.shape[0] or second.shape[2] != first.shape[2]:
        raise ValueError(
            f"{names[1]}: expected {names[0]}'s batch and vocabulary (B={first.shape[0]}, "
            f"V={first.shape[2]}), got shape {second.shape}"
        )
    tokens = _ints(tokens, "tokens", 2, "(B, T)")
    if tokens.shape[0] != first.shape[0]:
        raise ValueError(f"tokens: expected {first.shape[0]} captions, got {tokens.shape}")
    _check_ids(tokens, first.shape[2], "tokens")
    entity = _bools(entity, "entity", tokens.shape)
    counterfactual_mask = _bools(counterfactual_mask, "counterfactual_mask", second.shape[:2])
    return first, second, tokens, entity, counterfactual_mask


def total_effect_loss(
    factual_log_probs: Any,
    counterfactual_log_probs: Any,
    tokens: Any,
    entity: Any,
    counterfactual_mask: Any,
) -> Array:
    """L_TE = −mean_b (1/m) Σ_j [ℓ_{t_j}(e_j | I, S) − mean_t ℓ_t(e_j | I*, S*)].

    Args:
      factual_log_probs: `(B, T, V)` teacher-forced on the factual caption S with image I.
      counterfactual_log_probs: `(B, T*, V)` on the counterfactual caption S* with image I*.
      tokens: `(B, T)` the factual caption's ids (BOS first).
      entity: `(B, T)` bool, the entity tokens e_j in S (`entity_mask`).
      counterfactual_mask: `(B, T*)` bool, True on S*'s real tokens.

    Returns:
      the scalar loss, float32 (module docstring for t_j, mean_t and the rows averaged).
    """
    factual, counterfactual, tokens, entity, counterfactual_mask = _effect_inputs(
        factual_log_probs,
        counterfactual_log_probs,
        tokens,
        entity,
        counterfactual_mask,
        ("factual_log_probs", "counterfactual_log_probs"),
    )
    if factual.shape[1] != tokens.shape[1]:
        raise ValueError(
            f"tokens: expected factual_log_probs' (B, T) = {factual.shape[:2]}, got {tokens.shape}"
        )
    seen = _token_log_probs(factual, tokens)
    guessed, has_positions = _mean_over_positions(counterfactual, counterfactual_mask)
    guessed = jnp.take_along_axis(guessed, tokens, axis=1)  # (B, T): at each token's id
    return _entity_loss(seen, guessed, entity, has_positions)


def natural_direct_effect_loss(
    mixed_log_probs: Any,
    counterfactual_log_probs: Any,
    tokens: Any,
    entity: Any,
    counterfactual_mask: Any,
) -> Array:
    """L_NDE = −mean_b (1/m) Σ_j [mean_t ℓ_t(e_j | I, S*) − mean_t ℓ_t(e_j | I*, S*)].

    The mediator (the words before the entity) is held at S* in both worlds.

    Args:
      mixed_log_probs: `(B, T*, V)` teacher-forced on the counterfactual caption S* with the
        real image I.
      counterfactual_log_probs: `(B, T*, V)` on S* with the masked image I*.
      tokens: `(B, T)` the factual caption's ids (BOS first), where the entity is read.
      entity: `(B, T)` bool, the entity tokens e_j in S (`entity_mask`).
      counterfactual_mask: `(B, T*)` bool, True on S*'s real tokens.

    Returns:
      the scalar loss, float32.
    """
    mixed, counterfactual, tokens, entity, counterfactual_mask = _effect_inputs(
        mixed_log_probs,
        counterfactual_log_probs,
        tokens,
        entity,
        counterfactual_mask,
        ("mixed_log_probs", "counterfactual_log_probs"),
    )
    if mixed.shape[1] != counterfactual.shape[1]:
        raise ValueError(
            "counterfactual_log_probs: expected mixed_log_probs' shape (both read S*) "
            f"{mixed.shape}, got {counterfactual.shape}"
        )
    direct, has_positions = _mean_over_positions(mixed, counterfactual_mask)
    guessed, _ = _mean_over_positions(counterfactual, counterfactual_mask)
    direct = jnp.take_along_axis(direct, tokens, axis=1)
    guessed = jnp.take_along_axis(guessed, tokens, axis=1)
    return _entity_loss(direct, guessed, entity, has_positions)


def mix_with_language_model(lm_loss: Any, effect_loss: Any, alpha: float = 0.999) -> Array:
    """See-or-Guess's α·L_LM + (1 − α)·L_effect, in float32 (α in [0, 1]; scalars)."""
    alpha = check_real(alpha, "alpha", 0.0, 1.0)
    lm_loss, effect_loss = jnp.asarray(lm_loss), jnp.asarray(effect_loss)
    for name, value in (("lm_loss", lm_loss), ("effect_loss", effect_loss)):
        if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
            raise ValueError(
                f"{name}: expected a floating-point scalar, got {value.dtype} {value.shape}"
            )
    weight = jnp.float32(alpha)
    return weight * lm_loss.astype(jnp.float32) + (1 - weight) * effect_loss.astype(jnp.float32)


# -- CF-VQA -------------------------------------------------------------------------------------


def _sum(z_k: Array, z_q: Array, z_v: Array) -> Array:
    return jax.nn.log_sigmoid(z_k + z_q + z_v)


def _harmonic(z_k: Array, z_q: Array, z_v: Array) -> Array:
    # log(Z / (1 + Z)) with log Z = Σ log σ: exact where Z underflows (CF-VQA adds an ε).
    log_z = jax.nn.log_sigmoid(z_k) + jax.nn.log_sigmoid(z_q) + jax.nn.log_sigmoid(z_v)
    return log_z - jax.nn.softplus(log_z)


def _rubi(z_k: Array, z_q: Array, z_v: Array) -> Array:
    del z_v  # RUBi masks the answer logits with the question branch only
    return z_k * jax.nn.sigmoid(z_q)


_FUSION: dict[str, Callable[[Array, Array, Array], Array]] = {
    "sum": _sum,
    "hm": _harmonic,
    "rubi": _rubi,
}
#: The CF-VQA fusion modes of `cfvqa_fusion` (`mode=`).
FUSIONS = tuple(_FUSION)


def _fusion(mode: Any) -> Callable[[Array, Array, Array], Array]:
    if not isinstance(mode, str) or mode not in _FUSION:
        raise ValueError(f"mode: expected one of {FUSIONS}, got {mode!r}")
    return _FUSION[mode]


def _branches(z_k: Any, z_q: Any, z_v: Any) -> tuple[Array, Array, Array]:
    z_k = _floats(z_k, "z_k", 2, "(B, A)")
    z_q = _floats(z_q, "z_q", 2, "(B, A)")
    z_v = _floats(z_v, "z_v", 2, "(B, A)")
    for name, value in (("z_q", z_q), ("z_v", z_v)):
        if value.shape != z_k.shape or value.dtype != z_k.dtype:
            raise ValueError(
                f"{name}: expected z_k's {z_k.dtype} {z_k.shape}, got {value.dtype} {value.shape}"
            )
    return z_k, z_q, z_v


def _scalar(c: Any, like: Array) -> Array:
    c = jnp.asarray(c)
    if c.shape != () or not jnp.issubdtype(c.dtype, jnp.floating):
        raise ValueError(f"c: expected a floating-point scalar, got {c.dtype} {_shape(c)}")
    return c.astype(like.dtype)


def counterfactual_branch(c: Any, like: Any) -> Array:
    """The no-treatment branch c·1: the scalar `c` broadcast to `like`'s shape and dtype."""
    like = jnp.asarray(like)
    return jnp.broadcast_to(_scalar(c, like), like.shape)


def cfvqa_fusion(z_k: Any, z_q: Any, z_v: Any, mode: str = "sum") -> Array:
    """CF-VQA's fusion h(Z_k, Z_q, Z_v) `(B, A)`: fused answer logits.

    Args:
      z_k, z_q, z_v: `(B, A)` the VQA, question-only and vision-only branch logits (one of
        them `counterfactual_branch(c, ...)` in a counterfactual world).
      mode: "sum" log σ(Z_k + Z_q + Z_v); "hm" log(Z / (1 + Z)), Z = σ(Z_k)σ(Z_q)σ(Z_v);
        "rubi" Z_k·σ(Z_q) (Z_v unused).
    """
    fuse = _fusion(mode)
    return fuse(*_branches(z_k, z_q, z_v))


def cfvqa_effects(z_k: Any, z_q: Any, z_v: Any, c: Any, mode: str = "sum") -> dict[str, Array]:
    """TE, NDE and TIE `(B, A)` of the question and image on the answer logits.

    With Z_{q,v,k} = h(Z_k, Z_q, Z_v) the factual world, Z_{q,v*,k*} = h(c, Z_q, c) the
    question alone and Z_{q*,v*,k*} = h(c, c, c) no treatment:
    TE = Z_{q,v,k} − Z_{q*,v*,k*}, NDE = Z_{q,v*,k*} − Z_{q*,v*,k*}, TIE = TE − NDE. The
    answer at inference is argmax TIE (the question's language prior removed).

    Args:
      z_k, z_q, z_v: `(B, A)` branch logits; c: the learnable scalar; mode: as `cfvqa_fusion`.

    Returns:
      {"te", "nde", "tie"}, each `(B, A)`.
    """
    fuse = _fusion(mode)
    z_k, z_q, z_v = _branches(z_k, z_q, z_v)
    none = jnp.broadcast_to(_scalar(c, z_k), z_k.shape)
    factual = fuse(z_k, z_q, z_v)
    question_only = fuse(none, z_q, none)
    untreated = fuse(none, none, none)
    total = factual - untreated
    direct = question_only - untreated
    return {"te": total, "nde": direct, "tie": total - direct}


def _cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean over the batch of −log softmax(logits) at the labels (ids or soft targets)."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))
    return -jnp.mean(jnp.sum(labels * log_p, axis=-1))


def _labels(labels: Any, like: Array) -> Array:
    labels = jnp.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.integer) and labels.shape == like.shape[:1]:
        _check_ids(labels, like.shape[1], "labels")
        return labels.astype(jnp.int32)
    if jnp.issubdtype(labels.dtype, jnp.floating) and labels.shape == like.shape:
        return labels.astype(like.dtype)
    raise ValueError(
        f"labels: expected integer answer ids {like.shape[:1]} or soft targets {like.shape}, "
        f"got {labels.dtype} {_shape(labels)}"
    )


def cfvqa_loss(
    z_k: Any, z_q: Any, z_v: Any, c: Any, labels: Any, mode: str = "sum"
) -> tuple[Array, dict[str, Array]]:
    """CF-VQA's training loss and its parts:

        CE(Z_{q,v,k}) + CE(Z_q) + CE(Z_v) − mean_b Σ_a sg(p_a) · log softmax(h(c, sg Z_q, c))_a

    with p = softmax Z_{q,v,k} and sg the stop-gradient.

    Every input of the last (KL-like) term but c is stopped, so it trains c only: it makes
    the question-only world's answer distribution match the factual one.

    Args:
      z_k, z_q, z_v: `(B, A)` branch logits; c: the learnable scalar; mode: as `cfvqa_fusion`.
      labels: `(B,)` integer answer ids, or `(B, A)` soft targets (rows summing to 1):
        CE is −Σ_a target_a · log softmax, averaged over the batch.

    Returns:
      (loss, {"fused_ce", "question_ce", "visual_ce", "kl"}), scalars.
    """
    fuse = _fusion(mode)
    z_k, z_q, z_v = _branches(z_k, z_q, z_v)
    labels = _labels(labels, z_k)
    none = jnp.broadcast_to(_scalar(c, z_k), z_k.shape)
    factual = fuse(z_k, z_q, z_v)
    question_only = fuse(none, jax.lax.stop_gradient(z_q), none)
    target = jax.lax.stop_gradient(jax.nn.softmax(factual, axis=-1))
    kl = -jnp.mean(jnp.sum(target * jax.nn.log_softmax(question_only, axis=-1), axis=-1))
    parts = {
        "fused_ce": _cross_entropy(factual, labels),
        "question_ce": _cross_entropy(z_q, labels),
        "visual_ce": _cross_entropy(z_v, labels),
        "kl": kl,
    }
    return parts["fused_ce"] + parts["question_ce"] + parts["visual_ce"] + kl, parts
