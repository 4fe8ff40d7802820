"""The captioner: teacher forcing against its KV-cached decoding, greedy and beam search
against brute force, the language-model loss by hand, and bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from causalvision.nn import Captioner

PAD, BOS, EOS = 0, 1, 2
VOCAB = 6  # pad, bos, eos and three words
NUM = 3


@pytest.fixture(scope="module")
def model():
    config = Captioner.Config.tiny((16, 16, 3), VOCAB)
    config = type(config)(**{**config.__dict__, "max_len": 5})
    return nnx.jit(lambda: Captioner(config, rngs=nnx.Rngs(0)))()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.integers(0, 256, (NUM, 16, 16, 3)), jnp.float32)


@pytest.fixture(scope="module")
def teacher(model):
    return jax.jit(lambda m, x, t: m.log_probs(x, t))


def _score(teacher, model, images, tokens):
    """Summed log-probability of each caption `(N, L)` (bos first) up to and including eos,
    by teacher forcing."""
    log_p = np.asarray(teacher(model, images, jnp.asarray(tokens)))
    scores = []
    for row, caption in zip(log_p, np.asarray(tokens), strict=True):
        total = 0.0
        for t in range(1, len(caption)):
            if caption[t] == PAD:
                break
            total += row[t - 1, caption[t]]
            if caption[t] == EOS:
                break
        scores.append(total)
    return np.asarray(scores)


def test_cached_greedy_decoding_agrees_with_teacher_forcing(model, images, teacher):
    tokens, score = jax.jit(lambda m, x: m.greedy(x))(model, images)
    tokens = np.asarray(tokens)
    assert tokens.shape == (NUM, 5) and (tokens[:, 0] == BOS).all()
    log_p = np.asarray(teacher(model, images, jnp.asarray(tokens)))
    for n in range(NUM):
        for t in range(1, 5):
            if (tokens[n, 1:t] == EOS).any():
                assert tokens[n, t] == PAD  # padding after eos
                continue
            allowed = log_p[n, t - 1].copy()
            allowed[[PAD, BOS]] = -np.inf
            assert tokens[n, t] == allowed.argmax()
    np.testing.assert_allclose(score, _score(teacher, model, images, tokens), atol=1e-4)


def _all_captions(length):
    """Every caption of `length` tokens (bos first) a decoder may emit: words, then eos or
    the end, then padding."""
    words = [EOS, 3, 4, 5]
    captions = set()
    for body in itertools.product(words, repeat=length - 1):
        caption = [BOS]
        for token in body:
            caption.append(token)
            if token == EOS:
                break
        captions.add(tuple(caption + [PAD] * (length - len(caption))))
    return np.asarray(sorted(captions))


def test_beam_search_finds_the_best_caption_when_the_beam_holds_every_prefix(
    model, images, teacher
):
    length = 4
    captions = _all_captions(length)
    best_scores = []
    for n in range(NUM):
        repeated = jnp.repeat(images[n : n + 1], len(captions), axis=0)
        scores = _score(teacher, model, repeated, captions)
        best_scores.append((captions[scores.argmax()], scores.max()))
    # 16 beams hold every two-token prefix (4 x 4), so the search is exhaustive.
    tokens, score = model.beam_search(images, beam_size=16, max_len=length)
    for n, (caption, best) in enumerate(best_scores):
        np.testing.assert_array_equal(tokens[n], caption)
        np.testing.assert_allclose(score[n], best, atol=1e-4)


def test_beam_one_is_greedy_and_wider_beams_score_no_worse(model, images):
    greedy, greedy_score = model.greedy(images)
    beam, beam_score = model.beam_search(images, beam_size=1)
    np.testing.assert_array_equal(beam, greedy)
    np.testing.assert_allclose(beam_score, greedy_score, atol=1e-5)
    _, wide_score = model.beam_search(images, beam_size=3)
    assert (np.asarray(wide_score) >= np.asarray(greedy_score) - 1e-5).all()


def test_the_language_model_loss_is_the_mean_nll_of_real_next_tokens(model, images, teacher):
    tokens = jnp.asarray([[BOS, 3, 4, EOS, PAD], [BOS, 5, EOS, PAD, PAD], [BOS, 3, 3, 3, EOS]])
    mask = tokens != PAD
    mask = mask.at[:, 0].set(True)
    # Loss and gradients in one compiled program (eager, the gradient alone took ~15 s).
    loss_and_grads = nnx.jit(
        nnx.value_and_grad(lambda m: m.loss(images, tokens, mask), has_aux=True)
    )
    (loss, metrics), grads = loss_and_grads(model)
    log_p = np.asarray(teacher(model, images, tokens))
    terms = [
        -log_p[n, t - 1, int(tokens[n, t])]
        for n in range(NUM)
        for t in range(1, 5)
        if bool(mask[n, t])
    ]
    np.testing.assert_allclose(loss, np.mean(terms), rtol=1e-5)
    np.testing.assert_allclose(metrics["nll"], loss)
    # Gradients reach every parameter group: encoder, decoder and output layer.
    for name in ("encoder_convs", "blocks", "to_logits", "token_embedding"):
        leaves = jax.tree.leaves(getattr(grads, name))
        assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0, name


def test_bad_input_is_refused(model, images):
    config = Captioner.Config.tiny()
    for fields, argument in (
        ({"width": 15}, "config.width"),
        ({"vocab_size": 3}, "config.vocab_size"),
        ({"eos_id": 1}, "config.pad_id, bos_id, eos_id"),
        ({"encoder_widths": ()}, "config.encoder_widths"),
        ({"max_len": 1}, "config.max_len"),
    ):
        with pytest.raises(ValueError, match=argument):
            Captioner(type(config)(**{**config.__dict__, **fields}), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"images: expected shape \(N, 16, 16, 3\)"):
        model.greedy(images[..., :1])
    with pytest.raises(ValueError, match="tokens: expected shape"):
        model.log_probs(images, jnp.zeros((NUM, 9), jnp.int32))
    with pytest.raises(ValueError, match="tokens: expected integer ids"):
        model.log_probs(images, jnp.zeros((NUM, 3), jnp.float32))
    with pytest.raises(ValueError, match="mask: expected"):
        model.loss(images, jnp.zeros((NUM, 3), jnp.int32), jnp.ones((NUM, 2), bool))
    with pytest.raises(ValueError, match="beam_size"):
        model.beam_search(images, beam_size=0)
    with pytest.raises(ValueError, match="max_len"):
        model.greedy(images, max_len=6)
