"""Conditional ladder HVAE: pixel likelihood, KL, ELBO, SCM readings, exact round trips, sizes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import integrate, stats

from causalvision.nn.hvae import (
    HVAE,
    HVAEConfig,
    _conv3x3_space_to_depth,
    _conv_same,
    _gaussian_kl,
    _lecun_normal,
    _normals,
    _pointwise,
    _pointwise_groups,
    discretized_gaussian_log_likelihood,
)
from causalvision.nn.image_mechanism import ParentEncoding, from_pixels

MORPHO = ParentEncoding(
    [
        ("digit", "categorical", 10),
        ("thickness", "continuous", (2.5, 0.5)),
        ("intensity", "continuous", (191.0, 40.0)),
    ]
)
# Three resolutions (32, 8, 1), one block each: every code path of the default, compiled fast.
TINY = HVAEConfig(widths=(8, 16, 16), encoder="32b1d4,8b1d8,1b1", decoder="1b1,8b1,32b1", z_dim=4)

_loss = jax.jit(lambda model, x, context, key: model.loss(x, context, key))
_abduct = jax.jit(lambda model, x, context, key: model.abduct_latent_noise(x, context, key))
_decode = jax.jit(lambda model, noise, context: model.decode(noise, context))


def _images(key: jax.Array, num: int) -> jax.Array:
    """Random images on the 0-255 grid, float32 `(num, 32, 32, 1)`."""
    return jax.random.randint(key, (num, 32, 32, 1), 0, 256).astype(jnp.float32)


def _parents(key: jax.Array, num: int) -> dict[str, jax.Array]:
    k_digit, k_thick, k_int = jax.random.split(key, 3)
    return {
        "digit": jax.random.randint(k_digit, (num,), 0, 10),
        "thickness": jax.random.uniform(k_thick, (num,), minval=1.5, maxval=4.0),
        "intensity": jax.random.uniform(k_int, (num,), minval=80.0, maxval=250.0),
    }


@jax.jit
def _jitter(leaves: list[jax.Array], key: jax.Array, scale: float) -> list[jax.Array]:
    """leaves + scale * N(0, 1), drawn as one flat vector (one small program to compile)."""
    flat = jax.random.normal(key, (sum(leaf.size for leaf in leaves),), jnp.float32)
    out, start = [], 0
    for leaf in leaves:
        out.append(leaf + scale * flat[start : start + leaf.size].reshape(leaf.shape))
        start += leaf.size
    return out


def _perturbed(config: HVAEConfig, seed: int = 0, scale: float = 0.1) -> HVAE:
    """A model whose parameters are all jittered: at init the prior convs output exactly zero,
    which would make "the prior ignores the context" true for any model."""
    model = HVAE(config, rngs=nnx.Rngs(seed))
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    leaves = _jitter(leaves, jax.random.key(seed + 100), jnp.float32(scale))
    nnx.update(model, jax.tree.unflatten(treedef, leaves))
    return model


@jax.jit
def _prior_pass(model: HVAE, noise, context):
    """Decode `noise`, recording every layer's prior (loc, log-scale) and latent z."""

    def layer(block, h, chain, activation, gelu_context, context, eps):
        mu_p, logs_p, features = block.prior_params(chain, gelu_context)
        z = mu_p + jnp.exp(logs_p) * eps
        return z, features, (mu_p, logs_p, z)

    return model._run(None, context, layer, noise)


@jax.jit
def _posterior_mean_pass(model: HVAE, x, context):
    """The top-down pass with z_l = the posterior mean, recording the z's."""

    def layer(block, h, chain, activation, gelu_context, context, _):
        (_, _, features), (mu_q, _) = block.prior_posterior_params(
            chain, h, activation, gelu_context
        )
        return mu_q, features, mu_q

    return model._run(x, context, layer, [None] * len(model.dec_blocks))


# ---------------------------------------------------------------------------------------------
# Pixel likelihood and KL.

LEVELS = np.arange(256) / 127.5 - 1.0  # the 256-level grid of [-1, 1]


@pytest.mark.parametrize(
    ("loc", "log_scale"),
    [(0.0, -3.0), (0.3, -5.0), (-0.97, -2.0), (1.2, -1.0), (-0.5, 0.5), (0.999, -7.0)],
)
def test_discretized_gaussian_is_a_distribution_over_the_256_levels(loc, log_scale):
    x = jnp.asarray(LEVELS, jnp.float32)
    log_p = discretized_gaussian_log_likelihood(
        x, jnp.full_like(x, loc), jnp.full_like(x, log_scale)
    )
    assert log_p.dtype == jnp.float32
    assert abs(float(jnp.exp(log_p).sum()) - 1.0) < 1e-4

    # The binned Gaussian directly, in float64: bins of width 2/255 around each level, the
    # outermost bins extended to -inf and +inf.
    scale = np.exp(log_scale)
    upper = np.append(LEVELS[:-1] + 1 / 255, np.inf)
    lower = np.insert(LEVELS[1:] - 1 / 255, 0, -np.inf)
    p = stats.norm.cdf(upper, loc, scale) - stats.norm.cdf(lower, loc, scale)
    np.testing.assert_allclose(np.exp(np.asarray(log_p, np.float64)), p, atol=2e-6)
    # float32 CDF differences near 1 cancel: relative precision ~1e-7 / p in the upper tail.
    likely = p > 1e-4
    np.testing.assert_allclose(np.asarray(log_p)[likely], np.log(p[likely]), atol=1e-3)
    central = p > 1e-2
    np.testing.assert_allclose(np.asarray(log_p)[central], np.log(p[central]), atol=2e-5)


@pytest.mark.parametrize(
    ("mu_q", "logs_q", "mu_p", "logs_p"),
    [(0.0, 0.0, 0.0, 0.0), (0.5, -1.0, -0.3, 0.2), (-2.0, 0.7, 1.0, -0.5), (1.0, -2.0, 1.0, 1.0)],
)
def test_gaussian_kl_matches_numerical_integration(mu_q, logs_q, mu_p, logs_p):
    q = stats.norm(mu_q, np.exp(logs_q))
    p = stats.norm(mu_p, np.exp(logs_p))
    lo, hi = mu_q - 12 * np.exp(logs_q), mu_q + 12 * np.exp(logs_q)
    expected, _ = integrate.quad(lambda t: q.pdf(t) * (q.logpdf(t) - p.logpdf(t)), lo, hi)
    args = [jnp.float32(v) for v in (mu_q, logs_q, mu_p, logs_p)]
    assert float(_gaussian_kl(*args)) == pytest.approx(expected, abs=1e-5)


def test_gaussian_kl_of_a_distribution_with_itself_is_zero(key):
    mu, logs = jax.random.normal(key, (2, 100), jnp.float32)
    np.testing.assert_allclose(_gaussian_kl(mu, logs, mu, logs), 0.0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The CPU fast paths compute what the plain formulation does.


def test_pointwise_with_vector_parts_is_a_1x1_conv_of_the_broadcast_concatenation(key):
    k_a, k_b, k_c = jax.random.split(key, 3)
    a = jax.random.normal(k_a, (2, 5, 5, 3), jnp.float32)
    b = jax.random.normal(k_b, (2, 5, 5, 4), jnp.float32)
    context = jax.random.normal(k_c, (2, 6), jnp.float32)
    conv = nnx.Conv(13, 7, (1, 1), bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    context_map = jnp.broadcast_to(context[:, None, None, :], (2, 5, 5, 6))
    expected = conv(jnp.concatenate([a, context_map, b], -1))
    np.testing.assert_allclose(_pointwise(conv, [a, context, b]), expected, atol=1e-5)


@pytest.mark.parametrize(("resolution", "channels", "out"), [(32, 4, 4), (32, 1, 3), (8, 2, 5)])
def test_space_to_depth_conv_is_the_plain_3x3_conv_and_so_is_its_gradient(
    key, resolution, channels, out
):
    k_x, k_w, k_dy = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (3, resolution, resolution, channels))
    kernel = jax.random.normal(k_w, (3, 3, channels, out))
    dy = jax.random.normal(k_dy, (3, resolution, resolution, out))
    plain, plain_vjp = jax.vjp(_conv_same, x, kernel)
    blocks, blocks_vjp = jax.vjp(_conv3x3_space_to_depth, x, kernel)
    np.testing.assert_allclose(blocks, plain, atol=1e-4, rtol=1e-5)
    for got, want in zip(blocks_vjp(dy), plain_vjp(dy), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-5)
    # A brute-force pixel: SAME padding, output (1, 0) of the first image, first channel.
    padded = np.pad(np.asarray(x[0]), ((1, 1), (1, 1), (0, 0)))
    want = np.einsum("ijc,ijc->", padded[1:4, 0:3], np.asarray(kernel[..., 0]))
    np.testing.assert_allclose(blocks[0, 1, 0, 0], want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kernel_size", [3, 7, 2])
def test_conv_gradients_are_those_of_autodiff_also_inside_control_flow(key, kernel_size):
    k_x, k_w, k_dy = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (2, 9, 9, 3))
    kernel = jax.random.normal(k_w, (kernel_size, kernel_size, 3, 5))
    dy = jax.random.normal(k_dy, (2, 9, 9, 5))

    def reference(x, kernel):  # XLA's own SAME padding and autodiff's transposes
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    want, want_vjp = jax.vjp(reference, x, kernel)
    got, got_vjp = jax.vjp(_conv_same, x, kernel)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
    want_grads = want_vjp(dy)
    for got_grad, want_grad in zip(got_vjp(dy), want_grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, atol=1e-3, rtol=1e-5)

    def pullback(x, kernel, dy):
        return jax.vjp(_conv_same, x, kernel)[1](dy)

    in_cond = jax.jit(lambda *a: jax.lax.cond(True, pullback, lambda *b: b[:2], *a))(x, kernel, dy)
    in_scan = jax.lax.scan(lambda c, _: (c, pullback(x, kernel, dy)), 0, None, length=2)[1]
    for got_grad, scanned, want_grad in zip(in_cond, in_scan, want_grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, atol=1e-3, rtol=1e-5)
        np.testing.assert_allclose(scanned[1], want_grad, atol=1e-3, rtol=1e-5)


def test_pointwise_groups_are_slices_of_the_whole_product(key):
    conv = nnx.Conv(6, 9, (1, 1), rngs=nnx.Rngs(0))
    k_m, k_v = jax.random.split(key)
    parts = [jax.random.normal(k_m, (2, 4, 4, 4)), jax.random.normal(k_v, (2, 2))]
    whole = _pointwise(conv, parts)
    groups = _pointwise_groups(conv, parts, (2, 3, 4))
    np.testing.assert_allclose(jnp.concatenate(groups, -1), whole, atol=1e-6)
    assert [g.shape[-1] for g in groups] == [2, 3, 4]


def test_kernel_init_draws_lecun_normal():
    key = jax.random.key(3)
    for shape in [(1, 1, 44, 4), (3, 3, 4, 4), (7, 7, 1, 16)]:
        expected = 0.5 * nnx.initializers.lecun_normal()(key, shape, jnp.float32)
        np.testing.assert_allclose(_lecun_normal(0.5)(key, shape), expected, rtol=1e-6)


def test_normals_are_jax_threefry_and_standard_normal(key):
    from jax.extend.random import threefry_2x32

    from causalvision.nn.hvae import _threefry2x32

    words = jnp.array([123, 456], jnp.uint32)
    counter = jnp.arange(10, dtype=jnp.uint32)
    zeros = jnp.zeros_like(counter)
    ours = jnp.concatenate(_threefry2x32(words[0], words[1], counter, zeros))
    np.testing.assert_array_equal(ours, threefry_2x32(words, jnp.concatenate([counter, zeros])))

    first, second = _normals(key, ((200, 50, 2), (100_001,)))
    assert first.shape == (200, 50, 2) and second.shape == (100_001,)
    assert first.dtype == second.dtype == jnp.float32
    flat = np.concatenate([np.ravel(first), np.ravel(second)]).astype(np.float64)
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    other = _normals(jax.random.key(1), ((200, 50, 2),))[0]
    assert float(jnp.corrcoef(jnp.ravel(first), jnp.ravel(other))[0, 1]) < 0.02


# ---------------------------------------------------------------------------------------------
# The objective and the two SCM readings.


def test_loss_is_the_beta_weighted_negative_elbo(key):
    k_x, k_c, k_loss = jax.random.split(key, 3)
    x = from_pixels(_images(k_x, 4))
    context = MORPHO(_parents(k_c, 4))
    loss, parts = _loss(HVAE(TINY, rngs=nnx.Rngs(0)), x, context, k_loss)
    assert loss.shape == () and loss.dtype == jnp.float32
    assert all(bool(jnp.isfinite(v)) for v in (loss, *parts.values()))
    assert float(parts["kl"]) > 0
    np.testing.assert_allclose(parts["nll"] + parts["kl"], -parts["elbo"], rtol=1e-6)
    np.testing.assert_allclose(loss, -parts["elbo"], rtol=1e-6)

    # Same parameters (beta does not enter the initialisation), same key: only the KL weight moves.
    heavy = dataclasses.replace(TINY, beta=3.0)
    loss3, parts3 = _loss(HVAE(heavy, rngs=nnx.Rngs(0)), x, context, k_loss)
    for name in ("nll", "kl", "elbo"):
        np.testing.assert_allclose(parts3[name], parts[name], rtol=1e-6)
    np.testing.assert_allclose(loss3, parts["nll"] + 3.0 * parts["kl"], rtol=1e-5)


@pytest.mark.parametrize("conditional", [False, True])
def test_only_a_conditional_prior_reads_the_parents(key, conditional):
    config = dataclasses.replace(TINY, conditional_prior=conditional)
    model = _perturbed(config)
    k_noise, k_a, k_b = jax.random.split(key, 3)
    noise = model.sample_latent_noise(k_noise, 3)
    _, _, record_a = _prior_pass(model, noise, MORPHO(_parents(k_a, 3)))
    loc_b, _, record_b = _prior_pass(model, noise, MORPHO(_parents(k_b, 3)))
    assert bool(jnp.all(jnp.isfinite(loc_b)))
    gaps = [
        max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(ra, rb, strict=True))
        for ra, rb in zip(record_a, record_b, strict=True)
    ]
    if conditional:  # p(z_l | z_<l, pa): every layer's prior moves with the parents
        assert min(gaps) > 1e-3, gaps
    else:  # p(z_l | z_<l): the same noise gives the same latents whatever the parents
        assert max(gaps) == 0.0, gaps


_loss_with_prior_context = jax.jit(
    lambda model, x, context, key, prior: model.loss(x, context, key, prior_context=prior)
)


def test_prior_context_replaces_the_parents_in_the_prior_only(key):
    model = _perturbed(TINY)
    k_x, k_c, k_loss = jax.random.split(key, 3)
    x, context = from_pixels(_images(k_x, 4)), MORPHO(_parents(k_c, 4))
    loss, parts = _loss(model, x, context, k_loss)
    same, same_parts = _loss_with_prior_context(model, x, context, k_loss, context)
    assert float(same) == float(loss)
    assert {k: float(v) for k, v in same_parts.items()} == {k: float(v) for k, v in parts.items()}

    no_digit = context.at[:, :10].set(0.0)  # MORPHO puts the digit's one-hot first
    dropped, dropped_parts = _loss_with_prior_context(model, x, context, k_loss, no_digit)
    assert abs(float(dropped_parts["kl"]) - float(parts["kl"])) > 1e-4
    np.testing.assert_allclose(
        dropped_parts["nll"] + dropped_parts["kl"], -dropped_parts["elbo"], rtol=1e-6
    )
    # ...and it is the loss of a model whose prior sees `no_digit` and everything else
    # `context`: the posterior head reads the parents too, so swapping both must differ.
    swapped, _ = _loss(model, x, no_digit, k_loss)
    assert abs(float(swapped) - float(dropped)) > 1e-5

    with pytest.raises(ValueError, match="prior_context: expected shape"):
        model.loss(x, context, k_loss, prior_context=context[:, :5])
    exogenous = HVAE(dataclasses.replace(TINY, conditional_prior=False), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="prior_context: this HVAE's prior does not read"):
        exogenous.loss(x, context, k_loss, prior_context=context)


# ---------------------------------------------------------------------------------------------
# The LatentImageModel protocol.


def test_latent_noise_shapes(key):
    model = HVAE(TINY, rngs=nnx.Rngs(0))
    assert model.image_shape == (32, 32, 1)
    assert model.latent_shapes(5) == [(5, 1, 1, 4), (5, 8, 8, 4), (5, 32, 32, 4)]
    noise = model.sample_latent_noise(key, 5)
    assert [n.shape for n in noise] == model.latent_shapes(5)
    assert all(n.dtype == jnp.float32 for n in noise)


def test_abducted_noise_redecodes_to_the_posterior_mean_latents(key):
    model = _perturbed(TINY)
    k_x, k_c, k_post = jax.random.split(key, 3)
    x = from_pixels(_images(k_x, 3))
    context = MORPHO(_parents(k_c, 3))

    noise = _abduct(model, x, context, None)
    assert [n.shape for n in noise] == model.latent_shapes(3)
    np.testing.assert_array_equal(noise[-1], _abduct(model, x, context, None)[-1])
    draw = _abduct(model, x, context, k_post)
    assert float(jnp.max(jnp.abs(draw[-1] - noise[-1]))) > 1e-3

    loc_q, log_scale_q, z_q = _posterior_mean_pass(model, x, context)
    loc, log_scale, record = _prior_pass(model, noise, context)
    for mean, (_, _, z) in zip(z_q, record, strict=True):
        np.testing.assert_allclose(z, mean, atol=1e-5)
    np.testing.assert_allclose(loc, loc_q, atol=1e-5)
    np.testing.assert_allclose(log_scale, log_scale_q, atol=1e-5)
    decoded = _decode(model, noise, context)
    np.testing.assert_allclose(decoded[0], loc_q, atol=1e-5)
    assert float(decoded[1].min()) >= TINY.min_log_scale


def test_image_mechanism_null_intervention_reproduces_the_image(key):
    mechanism = _perturbed(TINY).mechanism(MORPHO)
    k_x, k_c, k_cf = jax.random.split(key, 3)
    images, parents = _images(k_x, 4), _parents(k_c, 4)
    noise = jax.jit(lambda m, v, p: m.abduct(v, p))(mechanism, images, parents)
    predict = jax.jit(lambda m, u, p: m.predict(u, p))
    same = predict(mechanism, noise, parents)
    assert float(jnp.max(jnp.abs(same - images))) < 1e-3
    other = predict(mechanism, noise, _parents(k_cf, 4))
    assert other.shape == images.shape and float(jnp.max(jnp.abs(other - images))) > 1.0


# ---------------------------------------------------------------------------------------------
# Sizes and configuration errors.


def test_default_config_matches_causal_gens_morpho_model():
    # Built for real: under jax/nnx.eval_shape every traced `rngs.params()` makes flax compare
    # shardings, which walks the whole traced program (quadratic, slower than building).
    model = HVAE(HVAEConfig(), rngs=nnx.Rngs(0))
    count = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    # causal-gen's Morpho HVAE (REFERENCE §2.2 estimates ~2.05M) instantiates with 2,047,074
    # parameters: exactly ours plus 262,144 = 4 blocks x 2 convs x 8 off-centre taps x 64 x 64,
    # the 3x3 kernels of its encoder blocks at resolution 1, whose off-centre taps only ever
    # see zero padding. We use 1x1 kernels there, so the models compute the same function.
    assert count == 1_784_930
    assert len(model.dec_blocks) == 20
    assert model.latent_shapes(2)[0] == (2, 1, 1, 16)
    assert model.latent_shapes(2)[-1] == (2, 32, 32, 16)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"encoder": "32b3x2,1b1"}, "config.encoder"),
        ({"decoder": "1b1,32"}, "config.decoder"),
        ({"decoder": "1b1,16b1"}, "config.decoder"),  # 16 is no encoder resolution
        ({"encoder": "16b1d16,1b1", "widths": (8, 16)}, "config.encoder"),  # not the image size
        ({"widths": (8, 16)}, "config.widths"),  # TINY's encoder has three stages
        ({"image_shape": (32, 16, 1)}, "config.image_shape"),
    ],
)
def test_config_errors_name_the_field(changes, field):
    config = dataclasses.replace(TINY, **changes)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        nnx.eval_shape(lambda: HVAE(config, rngs=nnx.Rngs(0)))
