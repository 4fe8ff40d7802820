"""Counterfactual captioning and CF-VQA objectives against numpy written out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from causalvision.losses import (
    FUSIONS,
    cfvqa_effects,
    cfvqa_fusion,
    cfvqa_loss,
    counterfactual_branch,
    entity_mask,
    mix_with_language_model,
    natural_direct_effect_loss,
    token_log_probs,
    total_effect_loss,
)

# Toy vocabulary: 0 pad, 1 bos, 2 eos, 3 "a", 4 "red", 5 "circle".
V = 6
TOKENS = np.array(
    [
        [1, 3, 4, 5, 2],  # a red circle: entity "red circle" at 2, 3
        [1, 3, 5, 2, 0],  # a circle: entity "circle" at 2
        [1, 3, 2, 0, 0],  # a: no entity, the row is skipped
    ],
    np.int32,
)
ENTITY = np.array(
    [
        [False, False, True, True, False],
        [False, False, True, False, False],
        [False] * 5,
    ]
)
CF_TOKENS = np.array([[1, 3, 5, 2], [1, 3, 2, 0], [1, 3, 4, 2]], np.int32)
CF_MASK = CF_TOKENS != 0


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _table(seed, shape):
    return _log_softmax(np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


FACTUAL = _table(0, (3, 5, V))  # (I, S)
COUNTERFACTUAL = _table(1, (3, 4, V))  # (I*, S*)
MIXED = _table(2, (3, 4, V))  # (I, S*)


def _positions(mask):
    """Positions t of a caption that predict a real token (mask[t + 1])."""
    return [t for t in range(len(mask) - 1) if mask[t + 1]]


def _expected_te(factual, counterfactual, tokens, entity, cf_mask):
    rows = []
    for b in range(len(tokens)):
        entities = [p for p in range(1, tokens.shape[1]) if entity[b, p]]
        positions = _positions(cf_mask[b])
        if not entities or not positions:
            continue
        total = 0.0
        for p in entities:
            e = tokens[b, p]
            guessed = sum(float(counterfactual[b, t, e]) for t in positions) / len(positions)
            total += float(factual[b, p - 1, e]) - guessed
        rows.append(total / len(entities))
    return -sum(rows) / len(rows)


def _expected_nde(mixed, counterfactual, tokens, entity, cf_mask):
    rows = []
    for b in range(len(tokens)):
        entities = [p for p in range(1, tokens.shape[1]) if entity[b, p]]
        positions = _positions(cf_mask[b])
        if not entities or not positions:
            continue
        total = 0.0
        for p in entities:
            e = tokens[b, p]
            direct = sum(float(mixed[b, t, e]) for t in positions) / len(positions)
            guessed = sum(float(counterfactual[b, t, e]) for t in positions) / len(positions)
            total += direct - guessed
        rows.append(total / len(entities))
    return -sum(rows) / len(rows)


# -- token log-probs and entities ---------------------------------------------------------------


def test_token_log_probs_reads_the_predicting_position():
    got = np.asarray(token_log_probs(FACTUAL, TOKENS))
    expected = np.zeros(TOKENS.shape, np.float32)
    for b in range(3):
        for t in range(1, 5):
            expected[b, t] = FACTUAL[b, t - 1, TOKENS[b, t]]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("tokens", "entity_ids", "expected"),
    [
        ([1, 3, 4, 5, 3, 4, 5, 2], [4, 5], [0, 0, 1, 1, 0, 0, 0, 0]),  # first occurrence only
        ([1, 4, 3, 4, 5, 2], [4, 5], [0, 0, 0, 1, 1, 0]),  # a partial match is no match
        ([1, 3, 5, 2], [5], [0, 0, 1, 0]),  # one token
        ([1, 3, 3, 2], [5], [0, 0, 0, 0]),  # absent
        ([1, 3, 4, 5], [4, 5], [0, 0, 1, 1]),  # at the very end
        ([1, 3, 3, 4], [4, 5], [0, 0, 0, 0]),  # cut off by the end
        ([1, 3, 1, 2], [1], [0, 0, 1, 0]),  # position 0 (BOS) is never matched
        ([1, 3, 5, 2], [5, -1, -1], [0, 0, 1, 0]),  # trailing padding
    ],
)
def test_entity_mask_finds_the_first_occurrence(tokens, entity_ids, expected):
    got = entity_mask(np.array([tokens], np.int32), np.array(entity_ids, np.int32))
    np.testing.assert_array_equal(np.asarray(got), np.array([expected], bool))


def test_entity_mask_per_caption_and_alternatives():
    tokens = np.array([[1, 3, 5, 6, 2], [1, 7, 3, 5, 2], [1, 3, 2, 0, 0]], np.int32)
    # Row 0: "circle" and "circle s" both start at 2; the longer one wins the tie.
    # Row 1: "circles"(7) at 1 comes before "circle"(5) at 3. Row 2: neither occurs.
    alternatives = np.array(
        [[[5, -1], [5, 6], [-1, -1]], [[5, -1], [7, -1], [-1, -1]], [[5, -1], [7, -1], [-1, -1]]],
        np.int32,
    )
    expected = np.array(
        [[0, 0, 1, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]],
        bool,
    )
    np.testing.assert_array_equal(np.asarray(entity_mask(tokens, alternatives)), expected)
    np.testing.assert_array_equal(np.asarray(jax.jit(entity_mask)(tokens, alternatives)), expected)
    per_caption = np.array([[5, 6], [3, 5], [4, 5]], np.int32)
    np.testing.assert_array_equal(
        np.asarray(entity_mask(tokens, per_caption)),
        np.array([[0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]], bool),
    )


def test_entity_mask_matches_real_tokens_only():
    tokens = np.array([[1, 3, 0, 0]], np.int32)
    entity = np.array([0], np.int32)
    assert np.asarray(entity_mask(tokens, entity))[0, 2]
    assert not np.asarray(entity_mask(tokens, entity, tokens != 0)).any()


def test_entity_mask_reproduces_the_fixture():
    alternatives = np.array([[[4, 5], [5, -1]], [[4, 5], [5, -1]], [[4, 5], [5, -1]]], np.int32)
    np.testing.assert_array_equal(np.asarray(entity_mask(TOKENS, alternatives)), ENTITY)


# -- effects ------------------------------------------------------------------------------------


def test_total_effect_loss_against_numpy():
    expected = _expected_te(FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    got = total_effect_loss(FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    jitted = jax.jit(total_effect_loss)(FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    np.testing.assert_allclose(float(jitted), expected, rtol=1e-5)


def test_natural_direct_effect_loss_against_numpy():
    expected = _expected_nde(MIXED, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    got = natural_direct_effect_loss(MIXED, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    jitted = jax.jit(natural_direct_effect_loss)(MIXED, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    np.testing.assert_allclose(float(jitted), expected, rtol=1e-5)


def test_the_factual_entity_is_read_where_it_is_predicted():
    """Only the position before an entity token (the one predicting it) counts."""
    base = total_effect_loss(FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    at_entity = FACTUAL.copy()
    at_entity[1, 2, 5] -= 1.0  # row 1's entity "circle" sits at position 2
    same = total_effect_loss(at_entity, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    before = FACTUAL.copy()
    before[1, 1, 5] -= 1.0  # position 1 predicts it; 2 rows with entities, m = 1
    moved = total_effect_loss(before, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    np.testing.assert_allclose(float(same), float(base), rtol=1e-6)
    np.testing.assert_allclose(float(moved) - float(base), 0.5, rtol=1e-5)


def test_padding_in_the_counterfactual_caption_changes_nothing():
    extra = np.random.default_rng(3).normal(size=(3, 3, V)).astype(np.float32) * 50.0
    extra[0, 0, :] = -np.inf  # an unread position may hold anything
    padded_cf = np.concatenate([COUNTERFACTUAL, extra], axis=1)
    padded_mixed = np.concatenate([MIXED, extra[:, ::-1]], axis=1)
    padded_mask = np.concatenate([CF_MASK, np.zeros((3, 3), bool)], axis=1)
    te = total_effect_loss(FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    padded_te = total_effect_loss(FACTUAL, padded_cf, TOKENS, ENTITY, padded_mask)
    np.testing.assert_allclose(float(padded_te), float(te), rtol=1e-6)
    nde = natural_direct_effect_loss(MIXED, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK)
    padded_nde = natural_direct_effect_loss(padded_mixed, padded_cf, TOKENS, ENTITY, padded_mask)
    np.testing.assert_allclose(float(padded_nde), float(nde), rtol=1e-6)
    # Row 1's own padding position (t = 3 predicts nothing real) is not read either.
    changed = COUNTERFACTUAL.copy()
    changed[1, 2:] = 99.0
    np.testing.assert_allclose(
        float(total_effect_loss(FACTUAL, changed, TOKENS, ENTITY, CF_MASK)), float(te), rtol=1e-6
    )


def test_rows_without_entity_or_counterfactual_positions_are_skipped():
    no_entity = np.zeros_like(ENTITY)
    assert float(total_effect_loss(FACTUAL, COUNTERFACTUAL, TOKENS, no_entity, CF_MASK)) == 0.0
    empty = CF_MASK.copy()
    empty[0, 1:] = False  # row 0's counterfactual caption is BOS alone
    expected = _expected_te(FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY, empty)
    got = total_effect_loss(FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY, empty)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_total_effect_gradients_have_the_signs_of_the_formula():
    grad_f, grad_c = jax.grad(total_effect_loss, argnums=(0, 1))(
        FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK
    )
    expected_f = np.zeros_like(FACTUAL)
    expected_c = np.zeros_like(COUNTERFACTUAL)
    rows = [b for b in range(3) if ENTITY[b].any()]
    for b in rows:
        entities = [p for p in range(5) if ENTITY[b, p]]
        positions = _positions(CF_MASK[b])
        for p in entities:
            e = TOKENS[b, p]
            expected_f[b, p - 1, e] -= 1.0 / (len(entities) * len(rows))
            for t in positions:
                expected_c[b, t, e] += 1.0 / (len(entities) * len(rows) * len(positions))
    np.testing.assert_allclose(np.asarray(grad_f), expected_f, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad_c), expected_c, atol=1e-7)
    assert np.asarray(grad_f).min() < 0 and np.asarray(grad_f).max() == 0
    assert np.asarray(grad_c).max() > 0 and np.asarray(grad_c).min() == 0


def test_natural_direct_effect_gradients():
    grad_m, grad_c = jax.grad(natural_direct_effect_loss, argnums=(0, 1))(
        MIXED, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK
    )
    assert np.asarray(grad_m).max() == 0 and np.asarray(grad_m).min() < 0
    np.testing.assert_allclose(np.asarray(grad_c), -np.asarray(grad_m), atol=1e-7)


def test_mix_with_language_model():
    lm, effect = jnp.float32(2.0), jnp.float32(-3.0)
    np.testing.assert_allclose(float(mix_with_language_model(lm, effect)), 1.995, rtol=1e-6)
    assert float(mix_with_language_model(lm, effect, alpha=0.0)) == -3.0
    assert float(mix_with_language_model(lm, effect, alpha=1)) == 2.0


# -- CF-VQA -------------------------------------------------------------------------------------

Z_K, Z_Q, Z_V = (np.random.default_rng(s).normal(size=(4, 5)).astype(np.float32) for s in (4, 5, 6))
C = np.float32(0.3)
LABELS = np.array([0, 3, 4, 1], np.int32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _h(z_k, z_q, z_v, mode):
    if mode == "sum":
        return np.log(_sigmoid(z_k + z_q + z_v))
    if mode == "hm":
        z = _sigmoid(z_k) * _sigmoid(z_q) * _sigmoid(z_v)
        return np.log(z / (1.0 + z))
    return z_k * _sigmoid(z_q)


@pytest.mark.parametrize("mode", ["sum", "hm", "rubi"])
def test_fusion_against_numpy(mode):
    got = cfvqa_fusion(Z_K, Z_Q, Z_V, mode)
    np.testing.assert_allclose(np.asarray(got), _h(Z_K, Z_Q, Z_V, mode), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["sum", "hm", "rubi"])
def test_effects_against_numpy(mode):
    c = np.full_like(Z_K, C)
    factual, question_only, none = _h(Z_K, Z_Q, Z_V, mode), _h(c, Z_Q, c, mode), _h(c, c, c, mode)
    effects = cfvqa_effects(Z_K, Z_Q, Z_V, C, mode)
    np.testing.assert_allclose(np.asarray(effects["te"]), factual - none, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(effects["nde"]), question_only - none, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(effects["tie"]), np.asarray(effects["te"] - effects["nde"]), atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(effects["tie"]), factual - question_only, rtol=1e-5, atol=1e-5
    )


def test_counterfactual_branch_broadcasts_and_collects_its_gradient():
    branch = counterfactual_branch(C, Z_K)
    np.testing.assert_array_equal(np.asarray(branch), np.full((4, 5), C, np.float32))
    weights = jnp.asarray(Z_Q)
    grad = jax.grad(lambda c: jnp.sum(counterfactual_branch(c, Z_K) * weights))(jnp.float32(C))
    np.testing.assert_allclose(float(grad), float(Z_Q.sum()), rtol=1e-5)


def _ce(logits, labels):
    log_p = _log_softmax(logits.astype(np.float64))
    return -np.mean([log_p[i, label] for i, label in enumerate(labels)])


@pytest.mark.parametrize("mode", ["sum", "hm", "rubi"])
def test_cfvqa_loss_against_numpy(mode):
    c = np.full_like(Z_K, C)
    factual = _h(Z_K, Z_Q, Z_V, mode)
    p = np.exp(_log_softmax(factual))
    kl = -np.mean(np.sum(p * _log_softmax(_h(c, Z_Q, c, mode)), axis=1))
    expected = _ce(factual, LABELS) + _ce(Z_Q, LABELS) + _ce(Z_V, LABELS) + kl
    loss, parts = cfvqa_loss(Z_K, Z_Q, Z_V, C, LABELS, mode)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(parts["kl"]), kl, rtol=1e-5)
    soft = np.eye(5, dtype=np.float32)[LABELS]
    np.testing.assert_allclose(float(cfvqa_loss(Z_K, Z_Q, Z_V, C, soft, mode)[0]), float(loss))


def _cfvqa_parts(z_k, z_q, z_v, c, mode="sum"):
    return cfvqa_loss(z_k, z_q, z_v, c, LABELS, mode)[1]


@pytest.mark.parametrize("mode", ["sum", "hm", "rubi"])
def test_the_kl_term_trains_only_c(mode):
    args = (jnp.asarray(Z_K), jnp.asarray(Z_Q), jnp.asarray(Z_V), jnp.float32(C))
    grads = jax.grad(lambda *a: _cfvqa_parts(*a, mode)["kl"], argnums=(0, 1, 2, 3))(*args)
    for grad in grads[:3]:
        np.testing.assert_array_equal(np.asarray(grad), 0.0)
    assert abs(float(grads[3])) > 1e-4


def test_each_branch_is_trained_by_its_own_terms():
    """The total's gradient in each branch equals that of the terms written out alone."""
    args = (jnp.asarray(Z_K), jnp.asarray(Z_Q), jnp.asarray(Z_V), jnp.float32(C))
    labels = jnp.asarray(LABELS)

    def ce(logits):
        log_p = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))

    def fused_ce(z_k, z_q, z_v, c):
        return ce(jax.nn.log_sigmoid(z_k + z_q + z_v))

    def question_terms(z_k, z_q, z_v, c):
        return fused_ce(z_k, z_q, z_v, c) + ce(z_q)

    def visual_terms(z_k, z_q, z_v, c):
        return fused_ce(z_k, z_q, z_v, c) + ce(z_v)

    def total(*a):
        return cfvqa_loss(*a, LABELS, "sum")[0]

    got = jax.grad(total, argnums=(0, 1, 2, 3))(*args)
    np.testing.assert_allclose(np.asarray(got[0]), jax.grad(fused_ce)(*args), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(got[1]), jax.grad(question_terms, argnums=1)(*args), rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(got[2]), jax.grad(visual_terms, argnums=2)(*args), rtol=1e-5
    )
    kl_grad = jax.grad(lambda *a: _cfvqa_parts(*a)["kl"], argnums=3)(*args)
    np.testing.assert_allclose(float(got[3]), float(kl_grad), rtol=1e-5)


def test_cfvqa_loss_is_jit_compatible():
    loss = jax.jit(cfvqa_loss, static_argnames="mode")(Z_K, Z_Q, Z_V, C, LABELS, mode="hm")[0]
    np.testing.assert_allclose(float(loss), float(cfvqa_loss(Z_K, Z_Q, Z_V, C, LABELS, "hm")[0]))
    assert FUSIONS == ("sum", "hm", "rubi")


# -- misuse -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: entity_mask(TOKENS, np.array([4.0, 5.0])), "entity_ids"),
        (lambda: entity_mask(TOKENS, np.array([4, -1, 5], np.int32)), "entity_ids"),
        (lambda: entity_mask(TOKENS, np.array([4, -2], np.int32)), "entity_ids"),
        (lambda: entity_mask(TOKENS, np.zeros((2, 2), np.int32)), "entity_ids"),
        (lambda: entity_mask(TOKENS.astype(np.float32), np.array([4], np.int32)), "tokens"),
        (lambda: entity_mask(TOKENS, np.array([4], np.int32), TOKENS[:, :3] != 0), "mask"),
        (lambda: token_log_probs(FACTUAL, TOKENS[:, :4]), "tokens"),
        (lambda: token_log_probs(FACTUAL[0], TOKENS), "log_probs"),
        (lambda: token_log_probs(FACTUAL, TOKENS + 3), "tokens"),
        (
            lambda: total_effect_loss(FACTUAL, COUNTERFACTUAL[..., :5], TOKENS, ENTITY, CF_MASK),
            "counterfactual_log_probs",
        ),
        (
            lambda: total_effect_loss(FACTUAL[:, :4], COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK),
            "tokens",
        ),
        (
            lambda: total_effect_loss(FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY.astype(int), CF_MASK),
            "entity",
        ),
        (
            lambda: total_effect_loss(FACTUAL, COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK[:, :3]),
            "counterfactual_mask",
        ),
        (
            lambda: natural_direct_effect_loss(
                MIXED[:, :3], COUNTERFACTUAL, TOKENS, ENTITY, CF_MASK
            ),
            "counterfactual_log_probs",
        ),
        (lambda: mix_with_language_model(1.0, 2.0, alpha=1.5), "alpha"),
        (lambda: mix_with_language_model(1.0, 2.0, alpha=-0.1), "alpha"),
        (lambda: mix_with_language_model(1.0, 2.0, alpha=float("nan")), "alpha"),
        (lambda: mix_with_language_model(np.ones(2, np.float32), 2.0), "lm_loss"),
        (lambda: cfvqa_fusion(Z_K, Z_Q, Z_V, "product"), "mode"),
        (lambda: cfvqa_fusion(Z_K, Z_Q[:, :4], Z_V), "z_q"),
        (lambda: cfvqa_fusion(Z_K, Z_Q, Z_V.astype(np.float16)), "z_v"),
        (lambda: cfvqa_effects(Z_K, Z_Q, Z_V, np.ones(2, np.float32)), "c"),
        (lambda: counterfactual_branch(np.int32(1), Z_K), "c"),
        (lambda: cfvqa_loss(Z_K, Z_Q, Z_V, C, LABELS[:3]), "labels"),
        (lambda: cfvqa_loss(Z_K, Z_Q, Z_V, C, LABELS + 2), "labels"),
        (lambda: cfvqa_loss(Z_K, Z_Q, Z_V, C, LABELS, mode="RUBi"), "mode"),
    ],
)
def test_misuse_raises_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        call()
