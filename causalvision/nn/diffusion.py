"""Denoising diffusion (DDPM, Ho et al. 2020) with DDIM sampling and inversion (Song et al. 2021):
the image model of CausalDiffAE and Diff-SCM (REFERENCE §2.3, §2.4).

- `NoiseSchedule`: the betas β_t and ᾱ_t = Π_{s≤t} (1 − β_s) of T training steps (linear, or
  improved-DDPM's cosine); `q_sample` draws x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.
- `UNet`: the noise predictor ε_θ(x_t, t, z) of improved-diffusion, with a conditioning vector z
  added to the timestep embedding (`emb += Linear(z)`, as CausalDiffAE does).
- `ddpm_loss`: the ε-MSE, with classifier-free conditioning dropout.
- `ddim_sample`, `ddim_invert`: DDIM's deterministic (or, with η > 0, stochastic) sampler and
  its inversion, each one `jax.lax.scan` over the steps; `ddim_sample_unfused` is the same
  sampler as a Python loop over a jitted step.

The samplers and the loss take any callable `model(x, t, cond) -> ε` (duck typing): `x (B, ...)`,
`t (B,)` int32 training steps, `cond (B, ...)` or None. The UNet is one; a closed-form ε of
Gaussian data is another (the tests). "No conditioning" is the zero vector throughout: `cond=None`,
a dropped row (the UNet's `drop` mask, `ddpm_loss`'s dropout) and a row of zeros give the same ε.
Images are conventionally in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from causalvision.nn.cpu_kernels import lecun_normal, spatial_conv
from causalvision.validation import check_int, check_key, check_real

Array = jax.Array
Model = Callable[[Array, Array, Array | None], Array]

__all__ = [
    "NoiseSchedule",
    "UNet",
    "UNetConfig",
    "ddim_invert",
    "ddim_sample",
    "ddim_sample_unfused",
    "ddim_timesteps",
    "ddpm_loss",
    "q_sample",
    "timestep_embedding",
]


# -------------------------------------------------------------------------------------------------
# Noise schedules.


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """β_t and ᾱ_t = Π_{s≤t} (1 − β_s) for t = 0 … T − 1, float32 arrays `(T,)`.

    A pytree (both arrays are leaves), so it can be an argument of `jax.jit` / `nnx.jit`; T is
    its static shape. Build it with `linear`, `cosine` or `from_betas` (which validate).
    """

    betas: Array
    alphas_cumprod: Array

    @property
    def num_steps(self) -> int:
        """T, the number of training steps."""
        return int(np.shape(self.betas)[0])

    @classmethod
    def from_betas(cls, betas: Any) -> NoiseSchedule:
        """The schedule of `betas (T,)`, each in (0, 1); ᾱ is their cumulative product."""
        betas = np.asarray(betas, np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError(f"betas: expected a non-empty 1-D array, got shape {betas.shape}")
        if not np.all((betas > 0) & (betas < 1)):
            raise ValueError(
                f"betas: expected every beta in (0, 1), got min {betas.min()}, max {betas.max()}"
            )
        # The product in float64: float32 would drift over thousands of factors.
        alphas_cumprod = np.cumprod(1.0 - betas)
        return cls(
            betas=jnp.asarray(betas, jnp.float32),
            alphas_cumprod=jnp.asarray(alphas_cumprod, jnp.float32),
        )

    @classmethod
    def linear(
        cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> NoiseSchedule:
        """DDPM's schedule: β = linspace(beta_start, beta_end, num_steps)."""
        num_steps = check_int(num_steps, "num_steps", 1)
        beta_start = check_real(beta_start, "beta_start", 0.0, 1.0, open_low=True, open_high=True)
        beta_end = check_real(beta_end, "beta_end", 0.0, 1.0, open_low=True, open_high=True)
        return cls.from_betas(np.linspace(beta_start, beta_end, num_steps, dtype=np.float64))

    @classmethod
    def cosine(
        cls, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999
    ) -> NoiseSchedule:
        """Improved DDPM's schedule (Nichol & Dhariwal 2021): with f(u) = cos²((u + s) / (1 + s) ·
        π / 2), β_t = min(1 − f((t + 1) / T) / f(t / T), max_beta), so that ᾱ_t = f((t + 1) / T) /
        f(0) wherever no beta is clipped (at T = 1000 only the last one is).
        """
        num_steps = check_int(num_steps, "num_steps", 1)
        s = check_real(s, "s", 0.0)
        max_beta = check_real(max_beta, "max_beta", 0.0, 1.0, open_low=True, open_high=True)
        u = np.arange(num_steps + 1, dtype=np.float64) / num_steps
        f = np.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2
        return cls.from_betas(np.minimum(1.0 - f[1:] / f[:-1], max_beta))


def _check_schedule(schedule: Any) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(
            f"schedule: expected a NoiseSchedule (NoiseSchedule.linear() or .cosine()), got "
            f"{type(schedule).__name__}"
        )
    return schedule


def _check_images(x: Any, argument: str) -> Array:
    if np.ndim(x) < 2:
        raise ValueError(f"{argument}: expected a batch (B, ...), got shape {np.shape(x)}")
    return jnp.asarray(x, jnp.float32)


def _check_cond(cond: Any, batch: int) -> Array | None:
    if cond is None:
        return None
    shape = np.shape(cond)
    if len(shape) < 1 or shape[0] != batch:
        raise ValueError(f"cond: expected a batch of {batch} conditioning rows, got shape {shape}")
    return jnp.asarray(cond)


def _per_example(values: Array, ndim: int) -> Array:
    """`(B,)` values shaped `(B, 1, …, 1)` to broadcast against a `(B, ...)` batch of rank ndim."""
    return values.reshape(values.shape[0], *([1] * (ndim - 1)))


def q_sample(schedule: NoiseSchedule, x0: Array, t: Array, noise: Array) -> Array:
    """x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, `(B, ...)`, for steps `t (B,)` (ints in [0, T))."""
    schedule = _check_schedule(schedule)
    x0 = _check_images(x0, "x0")
    if np.shape(t) != x0.shape[:1]:
        raise ValueError(f"t: expected shape (B,) = {x0.shape[:1]}, got {np.shape(t)}")
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise ValueError(f"t: expected integer training steps, got dtype {t.dtype}")
    if np.shape(noise) != x0.shape:
        raise ValueError(f"noise: expected the shape of x0 {x0.shape}, got {np.shape(noise)}")
    a = _per_example(schedule.alphas_cumprod[t], x0.ndim)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * jnp.asarray(noise, jnp.float32)


# -------------------------------------------------------------------------------------------------
# The UNet.


def timestep_embedding(t: Array, dim: int, max_period: float = 10000.0) -> Array:
    """Sinusoidal embedding `(B, dim)` of steps `t (B,)`: [cos(t ω_k), sin(t ω_k)] with
    ω_k = max_period^(−k / (dim // 2)), k < dim // 2 (improved-diffusion's; odd dim pads a 0).
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros_like(emb[:, :1])], axis=-1)
    return emb


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Sizes of the noise-predicting UNet.

    Level l (of `len(channel_mult)`) works at side resolution / 2^l with base_width ·
    channel_mult[l] channels and `num_res_blocks` residual blocks on the way down
    (`num_res_blocks` + 1 on the way up); a self-attention block follows each residual block
    at the feature-map sides listed in `attention_resolutions` (and always in the middle).
    `cond_size` is the width of the conditioning vector z (0: unconditional). Every width must
    be divisible by `num_groups` (GroupNorm) and by `num_heads` (attention). `zero_init`
    zeroes each block's last layer and the output convolution (improved-diffusion's choice:
    the untrained network predicts ε = 0); False draws them like the others, so that an
    untrained model's conditioning already shows (conformance tests of image mechanisms).

    Defaults: CausalDiffAE's MorphoMNIST decoder (width 128, multipliers (1, 2, 2), 3 residual
    blocks, attention at 16 and 8) on 32x32 images, MorphoMNIST padded by 2 as causal-gen does;
    improved-diffusion turns its attention sides into downsampling factors image_size // side,
    which at CausalDiffAE's 28x28 puts the attention at side 28 instead.
    """

    resolution: int = 32
    channels: int = 1
    base_width: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 3
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 1
    cond_size: int = 0
    num_groups: int = 32
    zero_init: bool = True

    @classmethod
    def tiny(cls, resolution: int = 8, channels: int = 1, cond_size: int = 3) -> UNetConfig:
        """Two levels of widths 2 and 4, one residual block each, two-head attention at the
        lower level, one GroupNorm group: about 3,000 parameters, compiled in seconds (tests,
        smoke runs)."""
        return cls(
            resolution=resolution,
            channels=channels,
            base_width=2,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(resolution // 2,),
            num_heads=2,
            cond_size=cond_size,
            num_groups=1,
        )

    @property
    def emb_size(self) -> int:
        """Width of the timestep (and conditioning) embedding: 4 · base_width."""
        return 4 * self.base_width


def _validate(config: UNetConfig) -> None:
    for name in ("resolution", "channels", "base_width", "num_res_blocks"):
        check_int(getattr(config, name), f"config.{name}", 1)
    check_int(config.num_heads, "config.num_heads", 1)
    check_int(config.num_groups, "config.num_groups", 1)
    check_int(config.cond_size, "config.cond_size", 0)
    mult = config.channel_mult
    if not (isinstance(mult, tuple | list) and len(mult) >= 1):
        raise ValueError(f"config.channel_mult: expected a non-empty tuple of ints, got {mult!r}")
    for m in mult:
        check_int(m, "config.channel_mult", 1)
    if not isinstance(config.attention_resolutions, tuple | list):
        raise ValueError(
            "config.attention_resolutions: expected a tuple of feature-map sides, got "
            f"{config.attention_resolutions!r}"
        )
    for side in config.attention_resolutions:
        check_int(side, "config.attention_resolutions", 1)
    if not isinstance(config.zero_init, bool):
        raise ValueError(f"config.zero_init: expected a bool, got {config.zero_init!r}")
    factor = 2 ** (len(mult) - 1)
    if config.resolution % factor:
        raise ValueError(
            f"config.resolution: {len(mult)} levels halve the side {len(mult) - 1} times, so it "
            f"must be divisible by {factor}, got {config.resolution}"
        )
    for width in (config.base_width * m for m in (1, *mult)):
        if width % config.num_groups:
            raise ValueError(
                f"config.num_groups: expected a divisor of every width (base_width · "
                f"channel_mult), got {config.num_groups} for width {width}"
            )
    for width in (config.base_width * m for m in mult):
        if width % config.num_heads:
            raise ValueError(
                f"config.num_heads: expected a divisor of every width, got {config.num_heads} "
                f"for width {width}"
            )


def _group_norm(features: int, groups: int, rngs: nnx.Rngs) -> nnx.GroupNorm:
    return nnx.GroupNorm(features, num_groups=groups, epsilon=1e-5, rngs=rngs)  # PyTorch's ε


def _kernel_init(zero: bool) -> Callable[..., Array]:
    # improved-diffusion zeroes each block's last layer, so that every block starts as the
    # identity and the untrained network predicts ε = 0. Otherwise LeCun normal, nnx's default,
    # in the form that compiles once per size bucket rather than per kernel shape (a UNet has
    # dozens of shapes; built eagerly, the default init compiles each).
    return nnx.initializers.zeros_init() if zero else lecun_normal(1.0)


def _linear(cin: int, cout: int, rngs: nnx.Rngs, *, zero: bool = False) -> nnx.Linear:
    return nnx.Linear(cin, cout, kernel_init=_kernel_init(zero), rngs=rngs)


def _conv(
    cin: int, cout: int, size: int, rngs: nnx.Rngs, *, zero: bool = False, **options: Any
) -> nnx.Conv:
    kernel = (size, size)
    return nnx.Conv(cin, cout, kernel, kernel_init=_kernel_init(zero), rngs=rngs, **options)


def _conv3x3(cin: int, cout: int, rngs: nnx.Rngs, *, zero: bool = False) -> nnx.Conv:
    return _conv(cin, cout, 3, rngs, zero=zero, padding="SAME")


class _ResBlock(nnx.Module):
    """h = conv(SiLU(GN(x))) + Linear(SiLU(emb)) (a per-channel shift, not scale-shift);
    out = skip(x) + conv(SiLU(GN(h))), the last conv zero-initialised, skip a 1x1 conv when
    the width changes."""

    def __init__(
        self, cin: int, cout: int, emb_size: int, groups: int, zero: bool, *, rngs: nnx.Rngs
    ):
        self.norm1 = _group_norm(cin, groups, rngs)
        self.conv1 = _conv3x3(cin, cout, rngs)
        self.emb = _linear(emb_size, cout, rngs)
        self.norm2 = _group_norm(cout, groups, rngs)
        self.conv2 = _conv3x3(cout, cout, rngs, zero=zero)
        self.skip = _conv(cin, cout, 1, rngs) if cin != cout else None

    def __call__(self, x: Array, emb: Array) -> Array:
        h = spatial_conv(self.conv1, jax.nn.silu(self.norm1(x)))
        h = h + self.emb(jax.nn.silu(emb))[:, None, None, :]
        h = spatial_conv(self.conv2, jax.nn.silu(self.norm2(h)))
        return (x if self.skip is None else spatial_conv(self.skip, x)) + h


class _AttentionBlock(nnx.Module):
    """Multi-head self-attention over the H·W positions: x + proj(attention(GN(x))), with
    `num_heads` heads of width C / num_heads and a zero-initialised output projection."""

    def __init__(self, features: int, num_heads: int, groups: int, zero: bool, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.norm = _group_norm(features, groups, rngs)
        self.qkv = _linear(features, 3 * features, rngs)
        self.proj = _linear(features, features, rngs, zero=zero)

    def __call__(self, x: Array, emb: Array) -> Array:
        b, h, w, c = x.shape
        d = c // self.num_heads
        qkv = self.qkv(self.norm(x).reshape(b, h * w, c)).reshape(b, h * w, 3, self.num_heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqnd,bknd->bnqk", q, k) / jnp.float32(math.sqrt(d))
        out = jnp.einsum("bnqk,bknd->bqnd", jax.nn.softmax(logits, axis=-1), v)
        return x + self.proj(out.reshape(b, h * w, c)).reshape(b, h, w, c)


class _Downsample(nnx.Module):
    """3x3 convolution with stride 2 (padding 1 on each side, as PyTorch's)."""

    def __init__(self, features: int, *, rngs: nnx.Rngs):
        self.conv = _conv(features, features, 3, rngs, strides=(2, 2), padding=((1, 1), (1, 1)))

    def __call__(self, x: Array, emb: Array) -> Array:
        return self.conv(x)


class _Upsample(nnx.Module):
    """Nearest-neighbour resize by 2, then a 3x3 convolution."""

    def __init__(self, features: int, *, rngs: nnx.Rngs):
        self.conv = _conv3x3(features, features, rngs)

    def __call__(self, x: Array, emb: Array) -> Array:
        b, h, w, c = x.shape
        x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
        return spatial_conv(self.conv, x.reshape(b, 2 * h, 2 * w, c))


class _Sequence(nnx.Module):
    """Layers applied in turn, each given the embedding (improved-diffusion's
    TimestepEmbedSequential)."""

    def __init__(self, layers: Sequence[nnx.Module]):
        self.layers = nnx.List(layers)

    def __call__(self, x: Array, emb: Array) -> Array:
        for layer in self.layers:
            x = layer(x, emb)
        return x


class UNet(nnx.Module):
    """ε_θ(x_t, t, z): the noise in images `(B, H, W, C)` at training steps t (improved-diffusion's
    UNet, Nichol & Dhariwal 2021, as CausalDiffAE configures it).

    The step enters as a sinusoidal embedding (width base_width) through Linear, SiLU, Linear to
    `emb (B, 4 base_width)`; a conditioning vector z `(B, cond_size)` adds Linear(z) to it. Every
    residual block adds Linear(SiLU(emb)) to its features after its first convolution (a shift
    per channel). The encoder's 3x3 input convolution and every block's output are kept and
    concatenated to the decoder's blocks in reverse order (the DDPM UNet's skips); a stride-2
    convolution halves the side between levels, nearest-neighbour resizing and a 3x3
    convolution double it. Output: GroupNorm, SiLU, a zero-initialised 3x3 convolution to C.

    Classifier-free guidance's "no conditioning" is the zero vector z = 0 (so Linear(z) leaves
    its bias): `cond=None`, rows dropped by `drop`, and zero rows give the same output.

    Args:
      config: sizes (see `UNetConfig`).
      rngs: parameter initialisation.
    """

    Config: ClassVar[type] = UNetConfig

    def __init__(self, config: UNetConfig = UNetConfig(), *, rngs: nnx.Rngs):
        _validate(config)
        self.config = c = config
        emb, groups = c.emb_size, c.num_groups
        self.time_in = _linear(c.base_width, emb, rngs)
        self.time_out = _linear(emb, emb, rngs)
        self.cond_embed = _linear(c.cond_size, emb, rngs) if c.cond_size else None
        self.conv_in = _conv3x3(c.channels, c.base_width, rngs)

        def block(cin: int, cout: int, side: int) -> list[nnx.Module]:
            layers: list[nnx.Module] = [_ResBlock(cin, cout, emb, groups, c.zero_init, rngs=rngs)]
            if side in c.attention_resolutions:
                layers.append(_AttentionBlock(cout, c.num_heads, groups, c.zero_init, rngs=rngs))
            return layers

        down, skips, ch, side = [], [c.base_width], c.base_width, c.resolution
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                down.append(_Sequence(block(ch, c.base_width * mult, side)))
                ch = c.base_width * mult
                skips.append(ch)
            if level < len(c.channel_mult) - 1:
                down.append(_Sequence([_Downsample(ch, rngs=rngs)]))
                skips.append(ch)
                side //= 2
        self.down = nnx.List(down)
        self.middle = _Sequence(
            [
                _ResBlock(ch, ch, emb, groups, c.zero_init, rngs=rngs),
                _AttentionBlock(ch, c.num_heads, groups, c.zero_init, rngs=rngs),
                _ResBlock(ch, ch, emb, groups, c.zero_init, rngs=rngs),
            ]
        )
        up = []
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                layers = block(ch + skips.pop(), c.base_width * mult, side)
                ch = c.base_width * mult
                if level > 0 and i == c.num_res_blocks:
                    layers.append(_Upsample(ch, rngs=rngs))
                    side *= 2
                up.append(_Sequence(layers))
        self.up = nnx.List(up)
        self.norm_out = _group_norm(ch, groups, rngs)
        self.conv_out = _conv3x3(ch, c.channels, rngs, zero=c.zero_init)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.config.resolution, self.config.resolution, self.config.channels)

    def embed(self, t: Array, cond: Array | None = None, drop: Array | None = None) -> Array:
        """The embedding `(B, 4 base_width)` of steps `t (B,)` and conditioning `cond`."""
        if np.ndim(t) != 1:
            raise ValueError(f"t: expected shape (B,), got {np.shape(t)}")
        batch, size = np.shape(t)[0], self.config.cond_size
        if size == 0 and (cond is not None or drop is not None):
            raise ValueError(
                "cond: this UNet is unconditional (config.cond_size = 0); pass cond=None and "
                "drop=None"
            )
        if cond is not None and np.shape(cond) != (batch, size):
            raise ValueError(
                f"cond: expected shape (B, cond_size) = {(batch, size)}, got {np.shape(cond)}"
            )
        if drop is not None and (np.shape(drop) != (batch,) or jnp.asarray(drop).dtype != bool):
            raise ValueError(
                f"drop: expected a bool array of shape (B,) = ({batch},) (True = no "
                f"conditioning), got {np.shape(drop)} {jnp.asarray(drop).dtype}"
            )
        emb = timestep_embedding(t, self.config.base_width)
        emb = self.time_out(jax.nn.silu(self.time_in(emb)))
        if size == 0:
            return emb
        z = (
            jnp.zeros((batch, size), jnp.float32)
            if cond is None
            else jnp.asarray(cond, jnp.float32)
        )
        if drop is not None:
            z = jnp.where(jnp.asarray(drop)[:, None], 0.0, z)
        return emb + self.cond_embed(z)

    def __call__(
        self, x: Array, t: Array, cond: Array | None = None, *, drop: Array | None = None
    ) -> Array:
        """ε̂ `(B, H, W, C)` for x_t `(B, H, W, C)`, steps `t (B,)` (int or float) and z
        `(B, cond_size)` (None: no conditioning; `drop (B,)` bool: no conditioning where True).
        """
        shape = tuple(np.shape(x))
        if len(shape) != 4 or shape[1:] != self.image_shape:
            raise ValueError(
                f"x: expected shape (B, {', '.join(map(str, self.image_shape))}), got {shape}"
            )
        if np.shape(t) != shape[:1]:
            raise ValueError(f"t: expected shape (B,) = {shape[:1]}, got {np.shape(t)}")
        emb = self.embed(t, cond, drop)
        h = spatial_conv(self.conv_in, jnp.asarray(x, jnp.float32))
        skips = [h]
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        h = self.middle(h, emb)
        for block in self.up:
            h = block(jnp.concatenate([h, skips.pop()], axis=-1), emb)
        return spatial_conv(self.conv_out, jax.nn.silu(self.norm_out(h)))


# -------------------------------------------------------------------------------------------------
# Training loss.


def ddpm_loss(
    model: Model,
    schedule: NoiseSchedule,
    x0: Array,
    cond: Array | None,
    key: Array,
    *,
    cond_drop_prob: float = 0.0,
) -> Array:
    """The ε-MSE `E ‖ε − ε_θ(x_t, t, z)‖²` (mean over every element), a scalar.

    t ~ U{0, …, T − 1} and ε ~ N(0, I) per example, x_t = `q_sample(schedule, x0, t, ε)`; with
    `cond_drop_prob` > 0 each example's conditioning row is replaced by zeros ("no
    conditioning") with that probability (classifier-free training). The key is split into
    (t, ε, dropout) keys. Pure and jittable; differentiate it with `nnx.grad` for a UNet.

    Args:
      model: `model(x, t, cond) -> ε̂`, e.g. a `UNet`.
      schedule: the noise schedule.
      x0: clean images `(B, ...)`.
      cond: conditioning `(B, ...)` or None.
      key: the draws of t, ε and the dropout.
      cond_drop_prob: probability of dropping an example's conditioning.
    """
    schedule = _check_schedule(schedule)
    x0 = _check_images(x0, "x0")
    cond = _check_cond(cond, x0.shape[0])
    key = check_key(key, "key")
    cond_drop_prob = check_real(cond_drop_prob, "cond_drop_prob", 0.0, 1.0)
    if cond_drop_prob > 0 and cond is None:
        raise ValueError("cond_drop_prob: dropping the conditioning needs cond, got cond=None")
    batch = x0.shape[0]
    key_t, key_noise, key_drop = jax.random.split(key, 3)
    t = jax.random.randint(key_t, (batch,), 0, schedule.num_steps, jnp.int32)
    noise = jax.random.normal(key_noise, x0.shape, jnp.float32)
    x_t = q_sample(schedule, x0, t, noise)
    if cond is not None and cond_drop_prob > 0:
        drop = jax.random.bernoulli(key_drop, cond_drop_prob, (batch,))
        cond = jnp.where(_per_example(drop, cond.ndim), jnp.zeros_like(cond), cond)
    return jnp.mean((model(x_t, t, cond) - noise) ** 2)


# -------------------------------------------------------------------------------------------------
# DDIM.


def ddim_timesteps(num_train_steps: int, num_steps: int) -> np.ndarray:
    """The increasing sub-sequence τ_0 < … < τ_{N−1} `(N,)` int32 of training steps DDIM visits.

    Rule (improved-diffusion's "ddimN" spacing): τ = range(0, T, s) for the smallest stride s
    that gives exactly N = num_steps steps, e.g. T = 1000: N = 50 → 0, 20, …, 980; N = 250 →
    0, 4, …, 996 (CausalDiffAE). When no integer stride gives N (e.g. N = 300), the fractional
    stride of improved-diffusion's plain "N" spacing: τ_i = round(i (T − 1) / (N − 1)),
    half to even.
    """
    total = check_int(num_train_steps, "num_train_steps", 1)
    num_steps = check_int(num_steps, "num_steps", 1, total)
    # The smallest stride first: len(range(0, T, s)) = ceil(T / s) decreases with s.
    for stride in range(1, total + 1):
        count = -(-total // stride)
        if count == num_steps:
            return np.arange(0, total, stride, dtype=np.int32)
        if count < num_steps:
            break
    return np.round(np.arange(num_steps) * ((total - 1) / (num_steps - 1))).astype(np.int32)


def _split_model(model: Any) -> tuple[Any, Any]:
    """(static, dynamic) parts of a model: an NNX module's graph definition and state (merged
    again inside `lax.scan` bodies and jitted steps, as NNX's transforms require), or any other
    callable and None."""
    if isinstance(model, nnx.Module):
        return nnx.split(model)
    if not callable(model):
        raise ValueError(
            f"model: expected a callable model(x, t, cond) -> eps, got {type(model).__name__}"
        )
    return model, None


def _eps(static: Any, dynamic: Any, x: Array, t: Array, cond: Array | None, g: float) -> Array:
    """ε̂ with classifier-free guidance: g ε(x, t, z) + (1 − g) ε(x, t, ∅) (CausalDiffAE's form);
    one pass when g = 1 (or there is no conditioning) and when g = 0."""
    model = static if dynamic is None else nnx.merge(static, dynamic)
    if cond is None or g == 1.0:
        return model(x, t, cond)
    if g == 0.0:
        return model(x, t, None)
    return g * model(x, t, cond) + (1.0 - g) * model(x, t, None)


def _ddim_update(
    x: Array,
    eps: Array,
    a: Array,
    a_next: Array,
    *,
    eta: float = 0.0,
    noise: Array | None = None,
    clip_x0: bool = False,
) -> Array:
    """One DDIM move from ᾱ = a to ᾱ = a_next (Song et al. 2021, eq. 12):
    x̂0 = (x − √(1 − a) ε) / √a, x' = √a_next x̂0 + √(1 − a_next − σ²) ε + σ z with
    σ = η √((1 − a_next) / (1 − a)) √(1 − a / a_next). `clip_x0` clips x̂0 to [-1, 1] and
    recomputes ε from it (improved-diffusion's clip_denoised)."""
    x0 = (x - jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(a)
    if clip_x0:
        x0 = jnp.clip(x0, -1.0, 1.0)
        eps = (x - jnp.sqrt(a) * x0) / jnp.sqrt(1.0 - a)
    if eta == 0.0:
        return jnp.sqrt(a_next) * x0 + jnp.sqrt(1.0 - a_next) * eps
    sigma = eta * jnp.sqrt((1.0 - a_next) / (1.0 - a) * (1.0 - a / a_next))
    direction = jnp.sqrt(jnp.maximum(1.0 - a_next - sigma**2, 0.0)) * eps
    return jnp.sqrt(a_next) * x0 + direction + sigma * noise


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Plan:
    """A sampling run's steps in the order they run: model steps `t (n,)`, ᾱ before and after
    each `(n,)`, and one noise key per step (or None)."""

    t: Array
    a: Array
    a_next: Array
    keys: Array | None


def _levels(schedule: NoiseSchedule, timesteps: np.ndarray) -> Array:
    """ᾱ at the N + 1 levels of the DDIM chain `(N + 1,)`: 1 (clean) and ᾱ_{τ_0}, …, ᾱ_{τ_{N−1}}."""
    return jnp.concatenate([jnp.ones((1,), jnp.float32), schedule.alphas_cumprod[timesteps]])


def _sampling_plan(
    schedule: NoiseSchedule,
    cond: Array | None,
    num_steps: int,
    guidance_scale: float,
    eta: float,
    key: Array | None,
    start_step: int | None,
    clip_x0: bool,
) -> _Plan:
    schedule = _check_schedule(schedule)
    timesteps = ddim_timesteps(schedule.num_steps, num_steps)
    start = num_steps - 1 if start_step is None else start_step
    start = check_int(start, "start_step", 0, num_steps - 1)
    g = check_real(guidance_scale, "guidance_scale")
    if g != 1.0 and cond is None:
        raise ValueError(
            f"guidance_scale: classifier-free guidance (g = {g}) mixes the conditional and "
            "unconditional predictions and needs cond, got cond=None"
        )
    eta = check_real(eta, "eta", 0.0)
    if eta > 0:
        if key is None:
            raise ValueError("key: eta > 0 draws fresh noise at every step; pass key=")
        key = check_key(key, "key")
    if not isinstance(clip_x0, bool):
        raise ValueError(f"clip_x0: expected a bool, got {clip_x0!r}")
    # Step i (i = start … 0) moves from level i + 1 (ᾱ_{τ_i}) to level i, querying the model at τ_i.
    order = np.arange(start, -1, -1)
    levels = _levels(schedule, timesteps)
    keys = jax.random.split(key, order.size) if eta > 0 else None
    return _Plan(jnp.asarray(timesteps[order]), levels[order + 1], levels[order], keys)


def ddim_sample(
    model: Model,
    schedule: NoiseSchedule,
    x_T: Array,
    cond: Array | None,
    *,
    num_steps: int = 50,
    guidance_scale: float = 1.0,
    eta: float = 0.0,
    key: Array | None = None,
    start_step: int | None = None,
    clip_x0: bool = False,
) -> Array:
    """DDIM sampling (Song et al. 2021): x at step τ_{start_step} to x_0, `(B, ...)`.

    The chain visits τ = `ddim_timesteps(T, num_steps)` downwards and ends at ᾱ = 1 (x_0):
    step i queries ε̂(x, τ_i) and moves from ᾱ_{τ_i} to ᾱ_{τ_{i−1}} (to 1 for i = 0) by
    `x' = √ᾱ' x̂0 + √(1 − ᾱ' − σ²) ε̂ + σ z`, x̂0 = (x − √(1 − ᾱ) ε̂) / √ᾱ, σ = η · DDIM's
    σ. All steps run as one `jax.lax.scan`; an NNX module is split and merged inside its body.
    Works under `nnx.jit` / `jax.jit` (`num_steps`, `guidance_scale`, `eta`, `start_step` and
    `clip_x0` are static Python values).

    Args:
      model: `model(x, t, cond) -> ε̂` (a `UNet` or any callable; `cond=None` means "no
        conditioning").
      schedule: the training noise schedule (T steps).
      x_T: the starting point `(B, ...)`: noise N(0, I) for a sample, or x at step
        τ_{start_step} (e.g. `ddim_invert`'s output, or `q_sample` of an image at that step for
        CausalDiffAE's re-noising abduction).
      cond: conditioning `(B, ...)`, or None.
      num_steps: N ≤ T, the length of the DDIM sub-sequence.
      guidance_scale: g: ε̂ = g ε(x, t, cond) + (1 − g) ε(x, t, None); 1 is plain conditional
        sampling (one model pass per step), 0 unconditional. g ≠ 1 needs cond.
      eta: η ≥ 0: 0 is deterministic DDIM, 1 DDPM-like ancestral noise. η > 0 needs `key`;
        step i (in run order) draws z from `jax.random.split(key, steps)[i]`.
      key: the noise for η > 0.
      start_step: the DDIM index (0 … N − 1) of x_T; default N − 1 (the full chain).
      clip_x0: clip the predicted x̂0 to [-1, 1] (and recompute ε̂ from it).

    Returns:
      x_0 `(B, ...)`.
    """
    x = _check_images(x_T, "x_T")
    cond = _check_cond(cond, x.shape[0])
    plan = _sampling_plan(schedule, cond, num_steps, guidance_scale, eta, key, start_step, clip_x0)
    static, dynamic = _split_model(model)
    g, eta = float(guidance_scale), float(eta)
    batch = x.shape[0]

    def body(x: Array, step: tuple[Array, Array, Array, Array | None]) -> tuple[Array, None]:
        t, a, a_next, step_key = step
        eps = _eps(static, dynamic, x, jnp.full((batch,), t, jnp.int32), cond, g)
        noise = None if step_key is None else jax.random.normal(step_key, x.shape, x.dtype)
        return _ddim_update(x, eps, a, a_next, eta=eta, noise=noise, clip_x0=clip_x0), None

    x, _ = jax.lax.scan(body, x, (plan.t, plan.a, plan.a_next, plan.keys))
    return x


@functools.partial(jax.jit, static_argnames=("static", "guidance_scale", "eta", "clip_x0"))
def _ddim_step(
    static: Any,
    dynamic: Any,
    x: Array,
    i: Array,
    plan: _Plan,
    cond: Array | None,
    *,
    guidance_scale: float,
    eta: float,
    clip_x0: bool,
) -> Array:
    """Step `i` of `plan`, the index traced: one program for every step."""
    t = jnp.full((x.shape[0],), plan.t[i], jnp.int32)
    eps = _eps(static, dynamic, x, t, cond, guidance_scale)
    noise = None if plan.keys is None else jax.random.normal(plan.keys[i], x.shape, x.dtype)
    return _ddim_update(x, eps, plan.a[i], plan.a_next[i], eta=eta, noise=noise, clip_x0=clip_x0)


def ddim_sample_unfused(
    model: Model,
    schedule: NoiseSchedule,
    x_T: Array,
    cond: Array | None,
    *,
    num_steps: int = 50,
    guidance_scale: float = 1.0,
    eta: float = 0.0,
    key: Array | None = None,
    start_step: int | None = None,
    clip_x0: bool = False,
) -> Array:
    """`ddim_sample` as a Python loop over one jitted DDIM step (same arguments, same result,
    same noise draws): a reference for timing the fused sampler and a second implementation.
    A callable that is not an NNX module is a static argument of the step, so it must be
    hashable (functions and lambdas are)."""
    x = _check_images(x_T, "x_T")
    cond = _check_cond(cond, x.shape[0])
    plan = _sampling_plan(schedule, cond, num_steps, guidance_scale, eta, key, start_step, clip_x0)
    static, dynamic = _split_model(model)
    for i in range(plan.t.shape[0]):
        x = _ddim_step(
            static,
            dynamic,
            x,
            np.int32(i),
            plan,
            cond,
            guidance_scale=float(guidance_scale),
            eta=float(eta),
            clip_x0=clip_x0,
        )
    return x


def ddim_invert(
    model: Model,
    schedule: NoiseSchedule,
    x0: Array,
    cond: Array | None,
    *,
    num_steps: int = 50,
    end_step: int | None = None,
) -> Array:
    """Deterministic DDIM inversion: x_0 to x at step τ_{end_step} `(B, ...)`, the mirror of
    `ddim_sample` (η = 0), so that `ddim_sample(..., ddim_invert(..., x0, cond), cond,
    start_step=end_step)` ≈ x0 (Diff-SCM's abduction).

    Step i (i = 0 … end_step) moves from level i to level i + 1 of the sampler's chain (ᾱ from
    ᾱ_{τ_{i−1}}, or 1 for x_0, to ᾱ_{τ_i}) with the DDIM update, querying the model at the
    current x but at the step it moves to, ε̂(x, τ_i) (diffusers' DDIMInverseScheduler;
    improved-diffusion's `ddim_reverse_sample` queries τ_{i−1}). The sampler's step i queries
    τ_i too, so the two differ only in the x they read: with an exact Gaussian noise model
    this halves the round trip's error, and with a network whose ε̂ changes quickly with t (an
    untrained one) it removes the mismatch that does not shrink with more steps. Inverting
    the whole chain amplifies any mismatch (x_T keeps x0 at scale √ᾱ_T); a partial chain
    (`end_step`) is better conditioned. One `jax.lax.scan`; jittable (`num_steps`,
    `end_step` static).

    Args:
      model: `model(x, t, cond) -> ε̂`.
      schedule: the training noise schedule.
      x0: clean images `(B, ...)`.
      cond: conditioning `(B, ...)`, or None.
      num_steps: N, the length of the DDIM sub-sequence (as in `ddim_sample`).
      end_step: the DDIM index (0 … N − 1) to stop at; default N − 1 (Diff-SCM stops at 75%).
    """
    schedule = _check_schedule(schedule)
    x = _check_images(x0, "x0")
    cond = _check_cond(cond, x.shape[0])
    timesteps = ddim_timesteps(schedule.num_steps, num_steps)
    end = num_steps - 1 if end_step is None else end_step
    end = check_int(end, "end_step", 0, num_steps - 1)
    order = np.arange(end + 1)
    levels = _levels(schedule, timesteps)
    t = jnp.asarray(timesteps[order])
    static, dynamic = _split_model(model)
    batch = x.shape[0]

    def body(x: Array, step: tuple[Array, Array, Array]) -> tuple[Array, None]:
        t, a, a_next = step
        eps = _eps(static, dynamic, x, jnp.full((batch,), t, jnp.int32), cond, 1.0)
        return _ddim_update(x, eps, a, a_next), None

    x, _ = jax.lax.scan(body, x, (t, levels[order], levels[order + 1]))
    return x
