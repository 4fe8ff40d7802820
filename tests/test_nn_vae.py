"""Conditional VAE image model: protocol shapes, ELBO, exact abduction, training, likelihood."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from causalvision.data import MorphoDigits
from causalvision.nn.hvae import discretized_gaussian_log_likelihood
from causalvision.nn.image_mechanism import ParentEncoding, from_pixels
from causalvision.nn.vae import VAE, VAEConfig
from causalvision.scm import lenient_promotion

MORPHO = ParentEncoding(
    [
        ("digit", "categorical", 10),
        ("thickness", "continuous", (2.5, 0.5)),
        ("intensity", "continuous", (191.0, 40.0)),
    ]
)
SMALL = VAEConfig(
    context_dim=12, latent_dim=8, encoder_widths=(8, 16), encoder_hidden=64, decoder_hidden=128
)

N = 8  # one batch size for every jitted call, so each compiles once

_loss = jax.jit(lambda model, x, context, key: model.loss(x, context, key))
_abduct = jax.jit(lambda model, x, context, key: model.abduct_latent_noise(x, context, key))
_decode = jax.jit(lambda model, noise, context: model.decode(noise, context))


def _images(key: jax.Array, num: int, shape=(32, 32, 1)) -> jax.Array:
    """Random images on the 0-255 grid, float32."""
    return jax.random.randint(key, (num, *shape), 0, 256).astype(jnp.float32)


def _parents(key: jax.Array, num: int) -> dict[str, jax.Array]:
    k_digit, k_thick, k_int = jax.random.split(key, 3)
    return {
        "digit": jax.random.randint(k_digit, (num,), 0, 10),
        "thickness": jax.random.uniform(k_thick, (num,), minval=1.5, maxval=4.0),
        "intensity": jax.random.uniform(k_int, (num,), minval=80.0, maxval=250.0),
    }


@pytest.fixture(scope="module")
def model() -> VAE:
    # A jitted init from an "rbg" key: compiling threefry for every parameter shape costs
    # about 6 s of CPU, rbg about 1.5 s.
    return nnx.jit(lambda: VAE(SMALL, rngs=nnx.Rngs(jax.random.key(0, impl="rbg"))))()


# ---------------------------------------------------------------------------------------------
# Protocol and objective.


def test_protocol_shapes(model, key):
    assert model.image_shape == (32, 32, 1)
    k_x, k_c, k_noise, k_post = jax.random.split(key, 4)
    x = from_pixels(_images(k_x, N))
    context = MORPHO(_parents(k_c, N))

    noise = model.sample_latent_noise(k_noise, 7)
    assert noise.shape == (7, 8) and noise.dtype == jnp.float32

    mean = _abduct(model, x, context, None)
    draw = _abduct(model, x, context, k_post)
    assert mean.shape == draw.shape == (N, 8)
    np.testing.assert_array_equal(mean, _abduct(model, x, context, None))  # deterministic
    assert float(jnp.max(jnp.abs(draw - mean))) > 1e-3

    loc, log_scale = _decode(model, mean, context)
    assert loc.shape == log_scale.shape == (N, 32, 32, 1)
    assert loc.dtype == log_scale.dtype == jnp.float32
    assert float(log_scale.min()) >= SMALL.min_log_scale


def _abstract_shapes(config: VAEConfig, num: int):
    """Parameter count and protocol output shapes, traced without computing anything."""
    model = nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0)))
    count = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    x = jax.ShapeDtypeStruct((num, *config.image_shape), jnp.float32)
    context = jax.ShapeDtypeStruct((num, config.context_dim), jnp.float32)
    latent = jax.eval_shape(lambda m, x, c: m.abduct_latent_noise(x, c), model, x, context)
    loc, log_scale = jax.eval_shape(lambda m, z, c: m.decode(z, c), model, latent, context)
    loss, _ = jax.eval_shape(lambda m, x, c: m.loss(x, c, jax.random.key(0)), model, x, context)
    return count, latent.shape, loc.shape, log_scale.shape, loss.shape


def test_default_config_and_other_shapes():
    # deepscm sizes: conv 64 -> conv 128 -> FC 100 (encoder), FC 1024 -> 8x8x128 (decoder).
    count, *shapes = _abstract_shapes(VAEConfig(), 3)
    assert count == 9_515_702
    assert shapes == [(3, 16), (3, 32, 32, 1), (3, 32, 32, 1), ()]
    rgb = VAEConfig(image_shape=(16, 16, 3), context_dim=0, latent_dim=4, encoder_widths=(8, 8, 8))
    _, *shapes = _abstract_shapes(rgb, 2)
    assert shapes == [(2, 4), (2, 16, 16, 3), (2, 16, 16, 3), ()]


def test_loss_is_the_negative_elbo_and_beta_weights_the_kl(model, key):
    k_x, k_c, k_z = jax.random.split(key, 3)
    x = from_pixels(_images(k_x, N))
    context = MORPHO(_parents(k_c, N))
    loss, metrics = _loss(model, x, context, k_z)
    assert set(metrics) == {"nll", "kl", "elbo"}
    assert all(np.isfinite(float(v)) for v in (loss, *metrics.values()))
    assert float(metrics["kl"]) > 0 and float(metrics["nll"]) > 0
    np.testing.assert_allclose(metrics["nll"] + metrics["kl"], -metrics["elbo"], rtol=1e-6)
    np.testing.assert_allclose(loss, -metrics["elbo"], rtol=1e-6)

    heavy = nnx.eval_shape(lambda: VAE(dataclasses.replace(SMALL, beta=3.0), rngs=nnx.Rngs(0)))
    nnx.update(heavy, nnx.state(model))  # the same parameters, beta = 3
    loss3, metrics3 = _loss(heavy, x, context, k_z)
    np.testing.assert_allclose(metrics3["elbo"], metrics["elbo"], rtol=1e-6)
    np.testing.assert_allclose(loss3, metrics["nll"] + 3.0 * metrics["kl"], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# As an SCM mechanism.


def test_image_mechanism_abduct_predict_reproduces_the_image(model, key):
    k_x, k_c, k_new = jax.random.split(key, 3)
    mechanism = model.mechanism(MORPHO)
    assert mechanism.parents == ("digit", "thickness", "intensity")
    images = _images(k_x, N)
    parents = _parents(k_c, N)

    noise = jax.jit(lambda m, v, p: m.abduct(v, p))(mechanism, images, parents)
    assert noise["latent"].shape == (N, 8) and noise["pixel"].shape == (N, 32, 32, 1)
    predict = jax.jit(lambda m, u, p: m.predict(u, p))
    again = predict(mechanism, noise, parents)
    assert float(jnp.max(jnp.abs(again - images))) < 1e-3

    other = predict(mechanism, noise, _parents(k_new, N))  # the decoder reads the parents
    assert float(jnp.max(jnp.abs(other - images))) > 1.0

    sample = jax.jit(lambda m, k, p: m.sample(k, p, N))(mechanism, jax.random.key(3), parents)
    assert sample.shape == (N, 32, 32, 1)
    assert float(sample.min()) >= 0.0 and float(sample.max()) <= 255.0


# ---------------------------------------------------------------------------------------------
# Training.


def test_adam_reduces_the_loss_on_morpho_digits(model):
    batch = MorphoDigits().sample(jax.random.key(0), 32)
    x = from_pixels(batch["image"])
    context = MORPHO(batch)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(4e-3)

    def objective(params, key):
        return nnx.merge(graphdef, params).loss(x, context, key)[0]

    @jax.jit
    def step(params, opt_state, key):
        grads = jax.grad(objective)(params, key)
        with lenient_promotion():  # optax mixes its int step counter with floats
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        return params, opt_state

    evaluate = jax.jit(objective)
    before = float(evaluate(params, jax.random.key(1)))
    with lenient_promotion():
        opt_state = tx.init(params)
    # A Python loop: XLA:CPU runs convolutions inside a `lax.scan` many times slower.
    for key in jax.random.split(jax.random.key(2), 80):
        params, opt_state = step(params, opt_state, key)
    after = float(evaluate(params, jax.random.key(1)))
    print(f"VAE loss {before:.3f} -> {after:.3f}")
    # Seen: 2.438 -> 1.246 nats per pixel dimension (80 steps of 32 images, lr 4e-3, CPU).
    assert np.isfinite(after)
    assert after < 0.6 * before, (before, after)


# ---------------------------------------------------------------------------------------------
# The shared discretised Gaussian likelihood.


@pytest.mark.parametrize(
    ("loc", "log_scale"),
    [(0.0, 0.0), (0.3, -2.0), (-0.95, -4.0), (0.5, -7.0), (1.0, -7.0), (2.0, -1.0), (-3.0, 1.0)],
)
def test_discretized_gaussian_sums_to_one_over_the_levels(loc, log_scale):
    levels = from_pixels(jnp.arange(256, dtype=jnp.float32))
    log_p = discretized_gaussian_log_likelihood(
        levels, jnp.full_like(levels, loc), jnp.full_like(levels, log_scale)
    )
    assert bool(jnp.all(log_p <= 1e-6))
    np.testing.assert_allclose(float(jnp.exp(log_p).sum()), 1.0, atol=1e-4)


def test_discretized_gaussian_matches_a_bin_probability():
    loc, scale = 0.1, 0.2
    x = from_pixels(jnp.array([140.0]))
    log_p = discretized_gaussian_log_likelihood(x, jnp.array([loc]), jnp.log(jnp.array([scale])))
    lo, hi = (float(x[0]) - 1 / 255 - loc) / scale, (float(x[0]) + 1 / 255 - loc) / scale
    expected = 0.5 * (math.erf(hi / math.sqrt(2)) - math.erf(lo / math.sqrt(2)))
    np.testing.assert_allclose(float(jnp.exp(log_p[0])), expected, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image_shape": (32, 16, 1)}, "config.image_shape"),
        ({"image_shape": (32, 32)}, "config.image_shape"),
        ({"image_shape": (32, 32, 0)}, "config.image_shape"),
        ({"image_shape": (30, 30, 1)}, "config.encoder_widths"),
        ({"encoder_widths": ()}, "config.encoder_widths"),
        ({"encoder_widths": (16, 0)}, "config.encoder_widths"),
        ({"latent_dim": 0}, "config.latent_dim"),
        ({"context_dim": -1}, "config.context_dim"),
        ({"encoder_hidden": 0}, "config.encoder_hidden"),
        ({"decoder_hidden": 2.5}, "config.decoder_hidden"),
        ({"beta": -1.0}, "config.beta"),
        ({"min_log_scale": float("nan")}, "config.min_log_scale"),
    ],
)
def test_bad_config_names_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        VAE(dataclasses.replace(SMALL, **change), rngs=nnx.Rngs(0))


def test_bad_inputs_name_the_argument(model, key):
    x = from_pixels(_images(key, 4))
    context = jnp.zeros((4, 12), jnp.float32)
    with pytest.raises(ValueError, match=r"x: expected images \(N, 32, 32, 1\)"):
        model.loss(x[:, :16], context, key)
    with pytest.raises(ValueError, match="context: expected the parents"):
        model.abduct_latent_noise(x, context[:, :5])
    with pytest.raises(ValueError, match="context: expected the parents"):
        model.loss(x, context[:3], key)
    with pytest.raises(ValueError, match=r"noise: expected latents \(N, 8\)"):
        model.decode(jnp.zeros((4, 3), jnp.float32), context)
    with pytest.raises(ValueError, match="context: expected the parents"):
        model.decode(jnp.zeros((2, 8), jnp.float32), context)


def _init(config: VAEConfig) -> VAE:
    return nnx.jit(lambda: VAE(config, rngs=nnx.Rngs(jax.random.key(0, impl="rbg"))))()


def test_film_starts_as_the_plain_decoder_and_scales_and_shifts_each_channel(model, key):
    """FiLM's γ and β start at zero (the same decoder as without it); with the output
    stage's γ, β set, loc and log-scale are the plain ones times (1 + γ) plus β."""
    film = _init(dataclasses.replace(SMALL, film=True))
    noise = jax.random.normal(key, (N, SMALL.latent_dim))
    context = MORPHO(_parents(jax.random.fold_in(key, 1), N))
    plain_loc, plain_log_scale = _decode(model, noise, context)
    loc, log_scale = _decode(film, noise, context)
    np.testing.assert_array_equal(np.asarray(loc), np.asarray(plain_loc))
    np.testing.assert_array_equal(np.asarray(log_scale), np.asarray(plain_log_scale))

    gamma, beta = jnp.asarray([0.5, -0.25]), jnp.asarray([0.1, 0.2])
    film.dec_film[-1].bias[...] = jnp.concatenate([gamma, beta])
    loc, log_scale = _decode(film, noise, context)
    np.testing.assert_allclose(loc, plain_loc * 1.5 + 0.1, rtol=1e-5, atol=1e-6)
    expected = jnp.maximum(plain_log_scale * 0.75 + 0.2, SMALL.min_log_scale)
    np.testing.assert_allclose(log_scale, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"config\.film"):
        VAE(dataclasses.replace(SMALL, context_dim=0, film=True), rngs=nnx.Rngs(0))
