"""Slot Attention: the iterations against numpy, equivariance, masking, implicit gradients, and
the autoencoder (shapes, mixture, training, jit, the sub-pixel transposed convolutions)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from causalvision.nn import (
    SlotAttention,
    SlotAttentionAutoEncoder,
    SlotAttentionAutoEncoderConfig,
    SoftPositionEmbedding,
)
from causalvision.nn.cpu_kernels import conv_transpose_same
from causalvision.scm import lenient_promotion

B, N, K, D, D_IN, T = 2, 5, 3, 4, 6, 2


def _perturbed(layer: nnx.Module, key: jax.Array) -> nnx.Module:
    """`layer` with every parameter moved off its constant initialisation (LayerNorm scales
    and biases, GRU biases), so the numpy reference reads each of them."""
    state = nnx.state(layer, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(key, len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    nnx.update(layer, jax.tree.unflatten(treedef, leaves))
    return layer


def _layer(seed: int = 0, **options) -> SlotAttention:
    # Built in one jitted program from "rbg" keys: eager threefry compiles once per shape.
    def build():
        key = jax.random.key(seed, impl="rbg")
        rngs = nnx.Rngs(jax.random.fold_in(key, 0))
        layer = SlotAttention(D_IN, K, D, num_iterations=T, mlp_hidden=8, rngs=rngs, **options)
        return _perturbed(layer, jax.random.fold_in(key, 1))

    return nnx.jit(build)()


@pytest.fixture(scope="module")
def gaussian() -> SlotAttention:
    return _layer(0)


@pytest.fixture(scope="module")
def learned() -> SlotAttention:
    return _layer(1, initializer="learned")


@pytest.fixture(scope="module")
def inputs() -> jax.Array:
    return jax.random.normal(jax.random.key(7), (B, N, D_IN))


@pytest.fixture(scope="module")
def slots0() -> jax.Array:
    return jax.random.normal(jax.random.key(8), (B, K, D))


_run = nnx.jit(
    lambda m, x, s0, mask: m(x, slots_init=s0, mask=mask, return_attention=True),
)
_run_learned = nnx.jit(lambda m, x, mask: m(x, mask=mask, return_attention=True))


# ---------------------------------------------------------------------------------------------
# The iterations, written out in numpy.


def _np(v) -> np.ndarray:
    return np.asarray(v[...], np.float64)


def _layer_norm(x, norm, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * _np(norm.scale) + _np(norm.bias)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_slot_attention(layer, inputs, slots, iterations, eps=1e-8):
    x = _layer_norm(np.asarray(inputs, np.float64), layer.norm_inputs)
    k, v = x @ _np(layer.project_k.kernel), x @ _np(layer.project_v.kernel)
    slots = np.asarray(slots, np.float64)
    for _ in range(iterations):
        prev = slots
        q = _layer_norm(slots, layer.norm_slots) @ _np(layer.project_q.kernel) / math.sqrt(D)
        logits = np.einsum("bnd,bkd->bnk", k, q)
        attention = np.exp(logits - logits.max(-1, keepdims=True))
        attention /= attention.sum(-1, keepdims=True)  # over slots
        weights = attention + eps
        weights /= weights.sum(1, keepdims=True)  # over inputs
        updates = np.einsum("bnk,bnd->bkd", weights, v)
        gi = updates @ _np(layer.gru.dense_i.kernel) + _np(layer.gru.dense_i.bias)
        gh = prev @ _np(layer.gru.dense_h.kernel)
        (ir, iz, in_), (hr, hz, hn) = np.split(gi, 3, -1), np.split(gh, 3, -1)
        r, z = _sigmoid(ir + hr), _sigmoid(iz + hz)
        slots = (1 - z) * np.tanh(in_ + r * hn) + z * prev
        h = _layer_norm(slots, layer.norm_mlp) @ _np(layer.mlp_in.kernel) + _np(layer.mlp_in.bias)
        slots = slots + np.maximum(h, 0) @ _np(layer.mlp_out.kernel) + _np(layer.mlp_out.bias)
    return slots, attention


def test_iterations_match_numpy(gaussian, inputs, slots0):
    slots, attention = _run(gaussian, inputs, slots0, None)
    want_slots, want_attention = _numpy_slot_attention(gaussian, inputs, slots0, T)
    np.testing.assert_allclose(slots, want_slots, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(attention, want_attention, atol=1e-5, rtol=1e-5)


def test_gaussian_initialiser_draws_mu_plus_sigma_noise(gaussian, inputs):
    key = jax.random.key(3)

    @nnx.jit
    def draws(m):
        s0 = m.initial_slots(B, key=key)
        return s0, m(inputs, key=key), m(inputs, slots_init=s0)

    got, from_key, from_draw = draws(gaussian)
    noise = jax.random.normal(key, (B, K, D))
    want = gaussian.slots_mu[...] + jnp.exp(gaussian.slots_log_sigma[...]) * noise
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert gaussian.slots_mu.shape == gaussian.slots_log_sigma.shape == (1, 1, D)
    np.testing.assert_allclose(from_key, from_draw, rtol=1e-6)  # the call starts from the draw


# ---------------------------------------------------------------------------------------------
# Symmetries and the attention's normalisations.


def test_permuting_given_initial_slots_permutes_outputs(gaussian, inputs, slots0):
    perm = np.array([2, 0, 1])
    slots, attention = _run(gaussian, inputs, slots0, None)
    slots_p, attention_p = _run(gaussian, inputs, slots0[:, perm], None)
    np.testing.assert_allclose(slots_p, slots[:, perm], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(attention_p, attention[:, :, perm], atol=1e-6)


def test_permuting_learned_initial_slots_permutes_outputs(learned, inputs):
    perm = np.array([1, 2, 0])
    slots, attention = _run_learned(learned, inputs, None)
    permuted = nnx.clone(learned)
    permuted.slot_embeddings.set_value(learned.slot_embeddings[...][perm])
    slots_p, attention_p = _run_learned(permuted, inputs, None)
    np.testing.assert_allclose(slots_p, slots[:, perm], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(attention_p, attention[:, :, perm], atol=1e-6)


def test_slots_are_invariant_to_permuting_the_inputs(gaussian, inputs, slots0):
    perm = np.array([3, 0, 4, 1, 2])
    slots, attention = _run(gaussian, inputs, slots0, None)
    slots_p, attention_p = _run(gaussian, inputs[:, perm], slots0, None)
    np.testing.assert_allclose(slots_p, slots, atol=1e-5)
    np.testing.assert_allclose(attention_p, attention[:, perm], atol=1e-6)


def test_attention_normalisations(gaussian, inputs, slots0):
    _, attention = _run(gaussian, inputs, slots0, None)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-6)  # each input shared out
    weights = (attention + 1e-8) / (attention + 1e-8).sum(1, keepdims=True)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)  # each slot a weighted mean
    assert bool(jnp.all(attention >= 0))


# ---------------------------------------------------------------------------------------------
# Masking.


MASK = np.array([[True, True, False, True, False], [True, False, False, False, False]])


def test_padded_inputs_do_not_affect_the_slots(gaussian, inputs, slots0):
    slots, attention = _run(gaussian, inputs, slots0, MASK)
    changed = jnp.where(
        MASK[:, :, None], inputs, 1e3 * jax.random.normal(jax.random.key(9), inputs.shape)
    )
    slots_c, attention_c = _run(gaussian, changed, slots0, MASK)
    np.testing.assert_array_equal(slots_c, slots)
    np.testing.assert_array_equal(attention_c, attention)
    np.testing.assert_array_equal(attention[~MASK], 0.0)
    np.testing.assert_allclose(attention.sum(-1)[MASK], 1.0, atol=1e-6)
    # The same slots as attending to the valid inputs alone.
    for b in range(B):
        alone, _ = _run(gaussian, inputs[b : b + 1, MASK[b]], slots0[b : b + 1], None)
        np.testing.assert_allclose(slots[b], alone[0], atol=1e-5)


def test_fully_padded_example_is_finite(gaussian, inputs, slots0):
    mask = MASK.copy()
    mask[1] = False
    nonfinite = inputs.at[1].set(jnp.nan)
    slots, attention = _run(gaussian, nonfinite, slots0, mask)
    assert bool(jnp.all(jnp.isfinite(slots))) and bool(jnp.all(jnp.isfinite(attention)))
    np.testing.assert_array_equal(attention[1], 0.0)

    def loss(m):
        return jnp.sum(m(nonfinite, slots_init=slots0, mask=mask) ** 2)

    grads = nnx.jit(nnx.grad(loss))(gaussian)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


# ---------------------------------------------------------------------------------------------
# Implicit differentiation.


@nnx.jit(static_argnames="iterations")
def _loss_and_grads(layer, inputs, slots0, weights, iterations=None):
    def loss(m):
        return jnp.sum(m(inputs, slots_init=slots0, num_iterations=iterations) * weights)

    value, grads = nnx.value_and_grad(loss)(layer)
    return value, jax.tree.leaves(nnx.state(grads, nnx.Param))


def test_implicit_grad_flows_through_the_last_iteration_only(inputs, slots0):
    full, implicit = _layer(5), _layer(5, implicit_grad=True)
    weights = jax.random.normal(jax.random.key(11), (B, K, D))
    value_full, g_full = _loss_and_grads(full, inputs, slots0, weights)
    value_implicit, g_implicit = _loss_and_grads(implicit, inputs, slots0, weights)
    assert float(value_implicit) == pytest.approx(float(value_full), rel=1e-6)  # same forward
    # One iteration, by the unrolled layer, from the stopped (T - 1)-iteration slots.
    before_last = nnx.jit(lambda m: m(inputs, slots_init=slots0, num_iterations=T - 1))(full)
    _, g_last = _loss_and_grads(full, inputs, before_last, weights, iterations=1)

    assert len(g_implicit) == len(g_last) == len(g_full)
    for got, want in zip(g_implicit, g_last, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    differs = [
        float(jnp.max(jnp.abs(a - b))) > 1e-3 for a, b in zip(g_full, g_implicit, strict=True)
    ]
    assert sum(differs) >= 5  # q, k, v, the GRU and the MLP all see the earlier iterations
    # The Gaussian initialiser's parameters (slots_mu, slots_log_sigma) get no gradient.
    names = [
        str(path) for path, _ in jax.tree_util.tree_leaves_with_path(nnx.state(implicit, nnx.Param))
    ]
    for name, g in zip(names, g_implicit, strict=True):
        if "slots_" in name:
            np.testing.assert_array_equal(g, 0.0)


def test_straight_through_init_trains_a_learned_initialiser(inputs):
    options = {"initializer": "learned", "implicit_grad": True}
    plain, straight = _layer(3, **options), _layer(3, **options, straight_through_init=True)
    weights = jax.random.normal(jax.random.key(12), (B, K, D))

    @nnx.jit
    def grads(m):
        g = nnx.grad(lambda m: jnp.sum(m(inputs) * weights))(m)
        return {str(p): x for p, x in jax.tree_util.tree_leaves_with_path(nnx.state(g, nnx.Param))}

    g_plain, g_straight = grads(plain), grads(straight)
    (init,) = [name for name in g_plain if "slot_embeddings" in name]
    np.testing.assert_array_equal(g_plain[init], 0.0)
    # The straight-through gradient of S₀ is that of the last iteration's input slots, summed
    # over the batch (S₀ is broadcast): one unrolled iteration's, from the T - 1 iteration slots.
    before_last = nnx.jit(lambda m: m(inputs, num_iterations=T - 1))(plain)
    last = nnx.jit(
        lambda m, s: jax.grad(
            lambda s: jnp.sum(m(inputs, slots_init=s, num_iterations=1) * weights)
        )(s)
    )
    unrolled = _layer(3, initializer="learned")  # the same parameters, no stop
    want = last(unrolled, before_last).sum(0)
    np.testing.assert_allclose(g_straight[init], want, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(want))) > 1e-3
    for name, g in g_plain.items():  # everything else: the plain implicit gradient
        if name != init:
            np.testing.assert_allclose(g_straight[name], g, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="straight_through_init"):
        SlotAttention(D_IN, K, D, straight_through_init=True, rngs=nnx.Rngs(0))


# ---------------------------------------------------------------------------------------------
# Position embedding.


def test_soft_position_embedding_adds_a_projected_grid():
    embed = SoftPositionEmbedding(5, (3, 4), rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    features = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    y = np.linspace(0, 1, 3)[:, None] * np.ones((1, 4))
    x = np.ones((3, 1)) * np.linspace(0, 1, 4)[None, :]
    grid = np.stack([y, x, 1 - y, 1 - x], -1)
    want = features + (grid @ _np(embed.dense.kernel) + _np(embed.dense.bias))[None]
    np.testing.assert_allclose(embed(features), want, atol=1e-6)
    with pytest.raises(ValueError, match="features"):
        embed(features[:, :2])


# ---------------------------------------------------------------------------------------------
# The autoencoder.


CONFIG = SlotAttentionAutoEncoderConfig.tiny(resolution=16, num_slots=3)


def _images(num: int, seed: int = 0) -> np.ndarray:
    """Squares of random colours on a grey background, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    images = np.full((num, 16, 16, 3), -0.5, np.float32)
    for image in images:
        for _ in range(2):
            top, left = rng.integers(0, 10, 2)
            image[top : top + 6, left : left + 6] = rng.uniform(-1, 1, 3)
    return images


@pytest.fixture(scope="module")
def autoencoder() -> SlotAttentionAutoEncoder:
    return nnx.jit(
        lambda: SlotAttentionAutoEncoder(CONFIG, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    )()


_forward = nnx.jit(lambda m, x, key: m(x, key=key))


def test_autoencoder_outputs(autoencoder):
    images = _images(4)
    out = _forward(autoencoder, images, jax.random.key(1))
    n = CONFIG.feature_resolution**2
    assert out["reconstruction"].shape == (4, 16, 16, 3)
    assert out["masks"].shape == (4, 3, 16, 16, 1)
    assert out["recons"].shape == (4, 3, 16, 16, 3)
    assert out["slots"].shape == (4, 3, CONFIG.slot_size)
    assert out["attention"].shape == (4, n, 3)
    np.testing.assert_allclose(out["masks"].sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        out["reconstruction"], (out["masks"] * out["recons"]).sum(1), atol=1e-6
    )


def _plain_decode(model, slots):
    """The decoder with `nnx.ConvTranspose`'s own (input-dilating) transposed convolutions."""
    r = CONFIG.decoder_initial
    h = jnp.broadcast_to(slots.reshape(6, 1, 1, -1), (6, r, r, CONFIG.slot_size))
    h = model.decoder.position(h)
    convs = list(model.decoder.convs)
    for conv in convs[:-1]:
        h = jax.nn.relu(conv(h))
    h = convs[-1](h).reshape(2, 3, 16, 16, 4)
    return h[..., :3], jax.nn.softmax(h[..., 3:], axis=1)


def test_decoder_matches_plain_transposed_convolutions(autoencoder):
    slots = np.random.default_rng(2).normal(size=(2, 3, CONFIG.slot_size)).astype(np.float32)
    got, (recons, masks) = nnx.jit(lambda m, s: (m.decode(s), _plain_decode(m, s)))(
        autoencoder, slots
    )
    np.testing.assert_allclose(got["recons"], recons, atol=1e-5)
    np.testing.assert_allclose(got["masks"], masks, atol=1e-5)


@pytest.mark.parametrize(("size", "stride"), [(4, 2), (5, 2), (4, 1), (2, 3)])
def test_conv_transpose_same_is_nnx_conv_transpose(size, stride):
    # (The decoder test covers 3x3 kernels with strides 2 and 1.)
    rngs = nnx.Rngs(jax.random.key(size, impl="rbg"))
    conv = nnx.ConvTranspose(3, 4, (size, size), strides=(stride, stride), rngs=rngs)
    x = np.random.default_rng(stride).normal(size=(2, 5, 5, 3)).astype(np.float32)
    both = nnx.jit(lambda c, x: (conv_transpose_same(c, x), c(x)))
    np.testing.assert_allclose(*both(conv, x), atol=1e-5)


def test_adam_steps_reduce_the_loss(autoencoder):
    model = nnx.clone(autoencoder)
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    images = jnp.asarray(_images(4, seed=1))

    @nnx.jit
    def step(model, optimizer, key):
        (loss, _), grads = nnx.value_and_grad(lambda m: m.loss(images, key), has_aux=True)(model)
        with lenient_promotion():  # optax mixes its int step counter with floats
            optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer, jax.random.key(i))) for i in range(15)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.7 * losses[0], losses


# ---------------------------------------------------------------------------------------------
# Misuse.


def test_bad_inputs_raise(gaussian, inputs, slots0):
    with pytest.raises(ValueError, match="inputs"):
        gaussian(inputs[..., :3], slots_init=slots0)
    with pytest.raises(ValueError, match="key"):
        gaussian(inputs)
    with pytest.raises(ValueError, match="key"):
        gaussian(inputs, key=3)
    with pytest.raises(ValueError, match="mask"):
        gaussian(inputs, slots_init=slots0, mask=MASK[:, :3])
    with pytest.raises(ValueError, match="mask"):
        gaussian(inputs, slots_init=slots0, mask=MASK.astype(np.float32))
    with pytest.raises(ValueError, match="slots_init"):
        gaussian(inputs, slots_init=slots0[:, :2])
    with pytest.raises(ValueError, match="num_iterations"):
        gaussian(inputs, slots_init=slots0, num_iterations=0)


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"num_slots": 0}, "num_slots"),
        ({"slot_size": 0}, "slot_size"),
        ({"in_features": 0}, "in_features"),
        ({"num_iterations": 0}, "num_iterations"),
        ({"initializer": "uniform"}, "initializer"),
        ({"epsilon": -1.0}, "epsilon"),
    ],
)
def test_bad_layer_settings_raise(options, argument):
    settings = {"in_features": D_IN, "num_slots": K, "slot_size": D, **options}
    with pytest.raises(ValueError, match=argument):
        SlotAttention(**settings, rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    ("changes", "argument"),
    [
        ({"decoder_initial": 3}, "config.decoder_initial"),
        ({"decoder_widths": (8,)}, "config.decoder_widths"),
        ({"encoder_strides": (2,)}, "config.encoder_strides"),
        ({"encoder_strides": (3, 1)}, "config.encoder_strides"),
        ({"num_slots": 0}, "config.num_slots"),
    ],
)
def test_bad_autoencoder_config_raises(changes, argument):
    with pytest.raises(ValueError, match=argument):
        SlotAttentionAutoEncoder(dataclasses.replace(CONFIG, **changes), rngs=nnx.Rngs(0))


def test_autoencoder_refuses_wrong_images(autoencoder):
    with pytest.raises(ValueError, match="images"):
        autoencoder(jnp.zeros((2, 8, 8, 3)), key=jax.random.key(0))
