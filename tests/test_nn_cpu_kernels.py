"""The XLA:CPU kernels compute what the plain formulations do, gradients included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.extend.random import threefry_2x32
from scipy import stats

from causalvision.nn.cpu_kernels import (
    _threefry2x32,
    conv3x3_space_to_depth,
    conv_same,
    fused_normals,
    lecun_normal,
    pointwise,
    pointwise_groups,
)


def test_pointwise_with_vector_parts_is_a_1x1_conv_of_the_broadcast_concatenation(key):
    k_a, k_b, k_c = jax.random.split(key, 3)
    a = jax.random.normal(k_a, (2, 5, 5, 3), jnp.float32)
    b = jax.random.normal(k_b, (2, 5, 5, 4), jnp.float32)
    context = jax.random.normal(k_c, (2, 6), jnp.float32)
    conv = nnx.Conv(13, 7, (1, 1), bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    context_map = jnp.broadcast_to(context[:, None, None, :], (2, 5, 5, 6))
    expected = conv(jnp.concatenate([a, context_map, b], -1))
    np.testing.assert_allclose(pointwise(conv, [a, context, b]), expected, atol=1e-5)


@pytest.mark.parametrize(("resolution", "channels", "out"), [(32, 4, 4), (32, 1, 3), (8, 2, 5)])
def test_space_to_depth_conv_is_the_plain_3x3_conv_and_so_is_its_gradient(
    key, resolution, channels, out
):
    k_x, k_w, k_dy = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (3, resolution, resolution, channels))
    kernel = jax.random.normal(k_w, (3, 3, channels, out))
    dy = jax.random.normal(k_dy, (3, resolution, resolution, out))
    plain, plain_vjp = jax.vjp(conv_same, x, kernel)
    blocks, blocks_vjp = jax.vjp(conv3x3_space_to_depth, x, kernel)
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
    got, got_vjp = jax.vjp(conv_same, x, kernel)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
    want_grads = want_vjp(dy)
    for got_grad, want_grad in zip(got_vjp(dy), want_grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, atol=1e-3, rtol=1e-5)

    def pullback(x, kernel, dy):
        return jax.vjp(conv_same, x, kernel)[1](dy)

    in_cond = jax.jit(lambda *a: jax.lax.cond(True, pullback, lambda *b: b[:2], *a))(x, kernel, dy)
    in_scan = jax.lax.scan(lambda c, _: (c, pullback(x, kernel, dy)), 0, None, length=2)[1]
    for got_grad, scanned, want_grad in zip(in_cond, in_scan, want_grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, atol=1e-3, rtol=1e-5)
        np.testing.assert_allclose(scanned[1], want_grad, atol=1e-3, rtol=1e-5)


def test_pointwise_groups_are_slices_of_the_whole_product(key):
    conv = nnx.Conv(6, 9, (1, 1), rngs=nnx.Rngs(0))
    k_m, k_v = jax.random.split(key)
    parts = [jax.random.normal(k_m, (2, 4, 4, 4)), jax.random.normal(k_v, (2, 2))]
    whole = pointwise(conv, parts)
    groups = pointwise_groups(conv, parts, (2, 3, 4))
    np.testing.assert_allclose(jnp.concatenate(groups, -1), whole, atol=1e-6)
    assert [g.shape[-1] for g in groups] == [2, 3, 4]


def test_kernel_init_draws_lecun_normal():
    key = jax.random.key(3)
    for shape in [(1, 1, 44, 4), (3, 3, 4, 4), (7, 7, 1, 16)]:
        expected = 0.5 * nnx.initializers.lecun_normal()(key, shape, jnp.float32)
        np.testing.assert_allclose(lecun_normal(0.5)(key, shape), expected, rtol=1e-6)


def test_fused_normals_are_jax_threefry_and_standard_normal(key):
    words = jnp.array([123, 456], jnp.uint32)
    counter = jnp.arange(10, dtype=jnp.uint32)
    zeros = jnp.zeros_like(counter)
    ours = jnp.concatenate(_threefry2x32(words[0], words[1], counter, zeros))
    np.testing.assert_array_equal(ours, threefry_2x32(words, jnp.concatenate([counter, zeros])))

    first, second = fused_normals(key, ((200, 50, 2), (100_001,)))
    assert first.shape == (200, 50, 2) and second.shape == (100_001,)
    assert first.dtype == second.dtype == jnp.float32
    flat = np.concatenate([np.ravel(first), np.ravel(second)]).astype(np.float64)
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    other = fused_normals(jax.random.key(1), ((200, 50, 2),))[0]
    assert float(jnp.corrcoef(jnp.ravel(first), jnp.ravel(other))[0, 1]) < 0.02
