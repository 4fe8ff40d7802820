"""Forms of convolutions, initialisers and noise draws that XLA:CPU runs or compiles faster.

Each function computes exactly its plain form (a SAME `nnx.Conv`, `jax.random.normal`,
`nnx.initializers.lecun_normal`); only the program XLA is given differs. The HVAE
(`causalvision.nn.hvae`) runs on them; the figures below were measured on its training step
with `benchmarks/deep_scm_throughput.py`.

Tried and dropped: `lax.scan` over identical blocks (XLA's CPU backend runs convolution weight
gradients inside loops several times slower, and compiles no faster) and running the prior's
and posterior's narrow 3x3 convolutions as one block-diagonal convolution (faster alone, no
faster in the whole step).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array

__all__ = [
    "conv3x3_space_to_depth",
    "conv_same",
    "conv_transpose_same",
    "fused_normals",
    "lecun_normal",
    "pointwise",
    "pointwise_groups",
    "spatial_conv",
]

_TRUNCATED_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


# ---------------------------------------------------------------------------------------------
# Kernel initialisation.


@functools.partial(jax.jit, static_argnums=1)
def _flat_truncated_normal(key: Array, size: int) -> Array:
    return jax.random.truncated_normal(key, -2.0, 2.0, (size,), jnp.float32)


@functools.partial(jax.jit, static_argnums=1)
def _shaped(flat: Array, shape: tuple[int, ...], std: Array) -> Array:
    return (flat[: math.prod(shape)] * std).reshape(shape)


def lecun_normal(scale: float) -> Callable[..., Array]:
    """`scale` x LeCun-normal (truncated), as `nnx.initializers.lecun_normal()` draws it.

    Built eagerly, every new kernel shape would compile its own threefry program (~0.4 s
    each on a small CPU). Drawing a flat vector of a power-of-two length and cutting it gives
    the same values (threefry is counter-based) and compiles once per length bucket.
    """

    def init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        size = 1 << max(math.prod(shape) - 1, 1).bit_length()
        std = scale * math.sqrt(1.0 / math.prod(shape[:-1])) / _TRUNCATED_STD
        return _shaped(_flat_truncated_normal(key, size), tuple(shape), jnp.float32(std))

    return init


# ---------------------------------------------------------------------------------------------
# 1x1 convolutions.


def pointwise(
    conv: nnx.Conv, parts: Sequence[Array], columns: tuple[int, int] | None = None
) -> Array:
    """A 1x1 `conv` of `concat(parts, -1)`: `(N, r, r, C_out)`.

    Parts are `(N, r, r, C_i)` maps or `(N, C_i)` vectors standing for maps constant over
    space (the parents): those enter as one `(N, C_i) @ (C_i, C_out)` product per sample,
    added to every pixel, not as broadcast maps concatenated to the activations.
    `columns=(a, b)` computes output channels a..b only.

    A matrix product over the channel axis, not a convolution: XLA's CPU convolution
    gradients transpose whole activations to batch-as-feature layouts, a dot's do not.
    """
    kernel = conv.kernel[...][0, 0]
    bias = conv.bias[...]
    if columns is not None:
        kernel, bias = kernel[:, columns[0] : columns[1]], bias[columns[0] : columns[1]]
    shift = bias[None, :]  # (1, C_out), or (N, C_out) with vector parts
    maps, map_rows, start = [], [], 0
    for part in parts:
        rows = kernel[start : start + part.shape[-1]]
        start += part.shape[-1]
        if part.ndim == 2:
            shift = shift + part @ rows
        else:
            maps.append(part)
            map_rows.append(rows)
    x = maps[0] if len(maps) == 1 else jnp.concatenate(maps, -1)
    rows = map_rows[0] if len(map_rows) == 1 else jnp.concatenate(map_rows, 0)
    y = (x.reshape(-1, x.shape[-1]) @ rows).reshape(*x.shape[:-1], rows.shape[-1])
    return y + shift[:, None, None, :]


def pointwise_groups(conv: nnx.Conv, parts: Sequence[Array], sizes: Sequence[int]) -> list[Array]:
    """`pointwise` cut into output-channel groups of `sizes`, each its own product.

    (The HVAE's prior and posterior outputs: mean, log-scale, features.) Slicing one product
    would cost the backward pass a padded sum of the groups' gradients, which XLA's CPU
    backend evaluates slowly.
    """
    bounds = [0, *itertools.accumulate(sizes)]
    return [pointwise(conv, parts, (a, b)) for a, b in itertools.pairwise(bounds)]


# ---------------------------------------------------------------------------------------------
# k x k convolutions.


def _canonical_conv(x: Array, kernel: Array, padding: Sequence[tuple[int, int]]) -> Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _same_padding(kernel: Array) -> list[tuple[int, int]]:
    return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel.shape[:2]]


@jax.custom_vjp
def conv_same(x: Array, kernel: Array) -> Array:
    """The SAME, stride-1 convolution `(N, H, W, C) x (kh, kw, C, D) -> (N, H, W, D)`.

    Its gradients are written as NHWC x HWIO convolutions too. XLA:CPU maps the layouts
    autodiff produces onto its fast kernels only at the top level of a program: inside a
    `lax.scan`, `fori_loop` or `cond` they ran 7-30x slower (gradient accumulation over
    micro-batches, or a switch between interventions, would pay that).
    """
    return _canonical_conv(x, kernel, _same_padding(kernel))


def _conv_same_forward(x: Array, kernel: Array) -> tuple[Array, tuple[Array, Array]]:
    return conv_same(x, kernel), (x, kernel)


def _conv_same_backward(residuals: tuple[Array, Array], dy: Array) -> tuple[Array, Array]:
    x, kernel = residuals
    padding = _same_padding(kernel)
    # dx: dy convolved with the kernel turned 180 degrees, input and output channels swapped.
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _canonical_conv(dy, flipped, [(hi, lo) for lo, hi in padding])
    # dkernel[u, v, c, d] = sum over n, h, w of x_padded[n, h + u, w + v, c] dy[n, h, w, d]: a
    # convolution with the channels c as its batch, the samples n as its input features and
    # dy's spatial extent as its window.
    dkernel = _canonical_conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), padding)
    return dx, dkernel.transpose(1, 2, 0, 3)


conv_same.defvjp(_conv_same_forward, _conv_same_backward)


def _space_to_depth_kernel_map() -> np.ndarray:
    """`(3 * 3 * 2 * 2 * 2 * 2, 3 * 3)` 0/1 matrix taking a 3x3 kernel's taps to the 2x2-block
    kernel's: row (y, x, a, b, i, j), column (u, v) is 1 where tap (u, v) of output sub-pixel
    (i, j) reads input sub-pixel (a, b) of the block at offset (y - 1, x - 1).
    """
    # taps[d, a, a_out, u]: along one axis, fine row 2Y + a_out + u - 1 is 2 (Y + d - 1) + a.
    taps = np.zeros((3, 2, 2, 3), np.float32)
    for d, a, a_out in itertools.product(range(3), range(2), range(2)):
        u = 2 * (d - 1) + a - a_out + 1
        if 0 <= u < 3:
            taps[d, a, a_out, u] = 1.0
    return np.einsum("yaiu,xbjv->yxabijuv", taps, taps).reshape(144, 9)


_S2D_KERNEL_MAP = _space_to_depth_kernel_map()


def conv3x3_space_to_depth(x: Array, kernel: Array) -> Array:
    """The SAME 3x3 convolution of `x (N, r, r, C)` by `kernel (3, 3, C, D)`, on 2x2 blocks.

    The same convolution is a 3x3 one over the `(N, r/2, r/2, 4C)` map of 2x2 blocks, with a
    `(3, 3, 4C, 4D)` kernel assembled from `kernel`: 4x the multiply-adds, but XLA's CPU
    convolutions over 4 channels run far below their rate over 16 (4-channel maps at 32x32
    run as 16-channel ones at 16x16).
    """
    n, r, _, c = x.shape
    out = kernel.shape[-1]
    blocks = x.reshape(n, r // 2, 2, r // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    # One product for the whole assembly: the step compiles fewer kernels than a 3-way einsum.
    block_kernel = (jnp.asarray(_S2D_KERNEL_MAP) @ kernel.reshape(9, c * out)).reshape(
        3, 3, 2, 2, 2, 2, c, out
    )
    block_kernel = block_kernel.transpose(0, 1, 2, 3, 6, 4, 5, 7).reshape(3, 3, 4 * c, 4 * out)
    y = conv_same(blocks.reshape(n, r // 2, r // 2, 4 * c), block_kernel)
    return y.reshape(n, r // 2, r // 2, 2, 2, out).transpose(0, 1, 3, 2, 4, 5).reshape(n, r, r, out)


def spatial_conv(conv: nnx.Conv, x: Array) -> Array:
    """`conv` (k x k, SAME) of an NHWC map `(N, r, r, C) -> (N, r, r, C_out)`.

    1x1 kernels run as `pointwise`, 3x3 kernels over at most 4 channels on even sides of 32
    or more as `conv3x3_space_to_depth`, the rest as `conv_same`.
    """
    if conv.kernel_size == (1, 1):
        return pointwise(conv, [x])
    kernel = conv.kernel[...]
    _, r, _, c = x.shape
    if kernel.shape[:2] == (3, 3) and c <= 4 and r >= 32 and r % 2 == 0:
        y = conv3x3_space_to_depth(x, kernel)
    else:
        y = conv_same(x, kernel)
    return y + conv.bias[...][None, None, None, :]


# ---------------------------------------------------------------------------------------------
# Noise.


def _subpixel_taps(size: int, stride: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Along one axis, a SAME transposed convolution (kernel `size`, `stride`) as `stride`
    convolutions of the undilated input, one per output phase.

    Output `stride * Y + a` is `Σ_j W[taps[j, a]] x[Y + lo + j]` over the `j` with
    `valid[j, a]`, where lax's SAME transposed padding puts `pad` zeros before the dilated
    input. Returns `(taps, valid, (-lo, hi))`, the last the input padding.
    """
    pad_len = size + stride - 2
    pad = size - 1 if stride > size - 1 else math.ceil(pad_len / 2)
    offsets = [
        (u - pad + a) // stride
        for a, u in itertools.product(range(stride), range(size))
        if (u - pad + a) % stride == 0
    ]
    lo, hi = min(offsets), max(offsets)
    taps = np.zeros((hi - lo + 1, stride), np.int32)
    valid = np.zeros((hi - lo + 1, stride), bool)
    for j, a in itertools.product(range(hi - lo + 1), range(stride)):
        u = stride * (lo + j) + pad - a
        if 0 <= u < size:
            taps[j, a], valid[j, a] = u, True
    return taps, valid, (-lo, hi)


def conv_transpose_same(conv: nnx.ConvTranspose, x: Array) -> Array:
    """`conv(x)` for a SAME `nnx.ConvTranspose` without dilation: `(N, h, w, C) ->
    (N, s h, s w, C_out)`, computed without dilating the input.

    Each of the s x s output phases is a stride-1 convolution of `x` by taps of the kernel;
    the phases run as one convolution with `s² C_out` outputs, interleaved afterwards.
    XLA:CPU's kernels do not handle the input dilation of `lax.conv_transpose`, which runs
    about 50x slower than this form.
    """
    dilation = conv.kernel_dilation
    if conv.padding != "SAME" or conv.transpose_kernel or dilation not in (None, 1, (1, 1)):
        raise ValueError(
            "conv: expected a SAME nnx.ConvTranspose without kernel dilation or "
            f"transpose_kernel, got padding={conv.padding!r}, kernel_dilation={dilation!r}, "
            f"transpose_kernel={conv.transpose_kernel!r}"
        )
    kernel = conv.kernel[...]
    kh, kw = kernel.shape[:2]
    strides = conv.strides or 1
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    cin, cout = kernel.shape[2:]
    taps_h, valid_h, pad_h = _subpixel_taps(kh, sh)
    taps_w, valid_w, pad_w = _subpixel_taps(kw, sw)
    # (Lh, Lw, sh, sw, C, D): kernel taps per input offset and output phase.
    phases = kernel[taps_h[:, None, :, None], taps_w[None, :, None, :]]
    valid = (valid_h[:, None, :, None] & valid_w[None, :, None, :])[..., None, None]
    phases = jnp.where(valid, phases, 0.0).astype(kernel.dtype)
    lh, lw = taps_h.shape[0], taps_w.shape[0]
    phases = phases.transpose(0, 1, 4, 2, 3, 5).reshape(lh, lw, cin, sh * sw * cout)
    same = (((lh - 1) // 2, lh - 1 - (lh - 1) // 2), ((lw - 1) // 2, lw - 1 - (lw - 1) // 2))
    if (pad_h, pad_w) == same:
        y = conv_same(x, phases)
    else:
        y = jax.lax.conv_general_dilated(
            x, phases, (1, 1), (pad_h, pad_w), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    n, h, w, _ = x.shape
    y = y.reshape(n, h, w, sh, sw, cout).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(n, h * sh, w * sw, cout)
    return y + conv.bias[...][None, None, None, :]


def _threefry2x32(k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """The Threefry-2x32 block cipher, 20 rounds (Salmon et al. 2011; jax.random's hash).

    Written out so that XLA fuses it into one elementwise loop: jax.random's CPU lowering
    rolls the rounds into a while loop that streams the counters through memory five times.
    """
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in ((13, 15, 26, 6), (17, 29, 16, 24))[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << r) | (x1 >> (32 - r)))
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


@functools.partial(jax.jit, static_argnums=1)
def fused_normals(key: Array, shapes: tuple[tuple[int, ...], ...]) -> list[Array]:
    """Standard normals of the given shapes, from one fused Threefry pass over counters.

    As `jax.random.normal` maps bits to normals (`sqrt(2) erfinv(u)`, u uniform on (-1, 1)),
    with the key's two words drawn by `jax.random.bits` (any key implementation works). One
    pass for all shapes (the HVAE's posterior noise of every layer), fused by XLA (see
    `_threefry2x32`).
    """
    sizes = [math.prod(s) for s in shapes]
    half = (sum(sizes) + 1) // 2
    k0, k1 = jax.random.bits(key, (2,), jnp.uint32)
    counter = jax.lax.iota(jnp.uint32, half)
    bits = jnp.concatenate(_threefry2x32(k0, k1, counter, jnp.zeros_like(counter)))
    one = jnp.uint32(0x3F800000)  # 1.0f: 23 random mantissa bits give a float in [1, 2)
    unit = jax.lax.bitcast_convert_type((bits >> 9) | one, jnp.float32) - jnp.float32(1.0)
    low = jnp.float32(np.nextafter(np.float32(-1.0), np.float32(0.0)))
    u = jnp.maximum(low, unit * jnp.float32(2.0) - jnp.float32(1.0))
    flat = jnp.float32(math.sqrt(2.0)) * jax.lax.erf_inv(u)
    offsets = [0, *itertools.accumulate(sizes)]
    return [flat[offsets[i] : offsets[i + 1]].reshape(s) for i, s in enumerate(shapes)]
