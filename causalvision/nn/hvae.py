"""A conditional hierarchical VAE (VDVAE-style ladder, as causal-gen's image mechanism).

The encoder is a pyramid of bottleneck residual blocks. The decoder runs top-down from a
learned 1x1 state; every decoder block at resolution r draws a latent z_l `(N, r, r, z_dim)`
from the prior `p(z_l | z_<l[, pa])` (or, in training, from the posterior
`q(z_l | z_<l, x, pa)`), and adds a projection of `concat(z_l, pa)` to its state. Parents are
broadcast to every resolution. The pixel likelihood is a discretised Gaussian on [-1, 1].

Two SCM readings (REFERENCE §2.2):
- `conditional_prior=False` (exogenous prior): p(z) ignores the parents, z is exogenous noise;
- `conditional_prior=True` (latent mediator): p(z_l | z_<l, pa), so the latents mediate part
  of a parent's effect and direct, indirect and total effects differ.

For `GaussianDecoderMechanism`, the exogenous latent noise of layer l is `ε_l = (z_l - μ_p) / σ_p`
under the prior: `decode(ε, pa*)` rebuilds `z_l = μ_p(z_<l, pa*) + σ_p(z_<l, pa*) ε_l`, the
abduction–action–prediction reading of the ladder as an SCM. (causal-gen instead standardises
by the posterior and mixes posterior and prior with a weight α; we keep the plain SCM reading.)

Architecture strings follow causal-gen: "32b3d2" = 3 blocks at resolution 32, then
downsample by 2; "1b4" = 4 blocks at resolution 1.

On a CPU it runs its convolutions, kernel initialisers and noise draws through
`causalvision.nn.cpu_kernels`: the same functions as the plain reading above, in forms
XLA:CPU runs or compiles faster.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from causalvision.nn.cpu_kernels import (
    fused_normals,
    lecun_normal,
    pointwise,
    pointwise_groups,
    spatial_conv,
)
from causalvision.nn.image_mechanism import GaussianDecoderMechanism, ParentEncoding, check_context
from causalvision.scm import Mechanism
from causalvision.validation import check_int

Array = jax.Array

__all__ = ["HVAE", "HVAEConfig", "discretized_gaussian_log_likelihood"]

_STAGE = re.compile(r"^(\d+)b(\d+)(?:d(\d+))?$")


@dataclasses.dataclass(frozen=True)
class HVAEConfig:
    """Sizes of a conditional HVAE (defaults: causal-gen's Morpho-MNIST config, ~2M params).

    `widths` maps resolutions, largest first, to channel widths: `widths[k]` is the width at
    the k-th distinct resolution of `encoder` (32, 16, 8, 4, 1 for the default).
    """

    image_shape: tuple[int, int, int] = (32, 32, 1)
    context_dim: int = 12
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    encoder: str = "32b3d2,16b3d2,8b3d2,4b3d4,1b4"
    decoder: str = "1b4,4b4,8b4,16b4,32b4"
    z_dim: int = 16
    bottleneck: int = 4
    conditional_prior: bool = True
    beta: float = 1.0
    min_log_scale: float = -7.0  # keeps the pixel likelihood finite on constant regions

    @classmethod
    def tiny(cls, image_shape: tuple[int, int, int], context_dim: int) -> HVAEConfig:
        """A two-layer ladder (32x32 and 1x1) that compiles in seconds: tests, smoke runs."""
        return cls(
            image_shape=tuple(image_shape),
            context_dim=context_dim,
            widths=(8, 16),
            encoder="32b1d32,1b1",
            decoder="1b1,32b1",
            z_dim=4,
        )


def _parse(spec: str, argument: str) -> list[tuple[int, int, int]]:
    """ "32b3d2,1b4" -> [(32, 3, 2), (1, 4, 1)]: (resolution, blocks, downsample factor)."""
    stages = []
    for part in spec.split(","):
        match = _STAGE.match(part.strip())
        if match is None:
            raise ValueError(f"{argument}: expected stages like '32b3d2' or '1b4', got {part!r}")
        resolution, blocks, down = (int(g) if g else 1 for g in match.groups())
        stages.append((resolution, blocks, down))
    return stages


# ---------------------------------------------------------------------------------------------
# Blocks.


def _conv(cin: int, cout: int, kernel: int, rngs: nnx.Rngs, *, scale: float = 1.0) -> nnx.Conv:
    """A SAME conv `(k, k, cin, cout)` + bias; `scale` shrinks the initial kernel (0: zeros)."""
    return nnx.Conv(
        cin, cout, (kernel, kernel), padding="SAME", kernel_init=lecun_normal(scale), rngs=rngs
    )


class Block(nnx.Module):
    """Bottleneck residual block: GELU, 1x1 -> 3x3 -> 3x3 -> 1x1 (3x3s become 1x1 below 3x3).

    A residual block whose width changes projects its input with a 1x1 conv; `down` average-
    pools the output. `out_scale` shrinks the last conv at init (deep-ladder stability).
    """

    def __init__(
        self,
        cin: int,
        mid: int,
        cout: int,
        resolution: int,
        *,
        residual: bool,
        down: int = 1,
        out_scale: float = 1.0,
        rngs: nnx.Rngs,
    ):
        k = 3 if resolution > 2 else 1  # a 3x3 kernel on a 1x1 or 2x2 map is mostly padding
        self.c1 = _conv(cin, mid, 1, rngs)
        self.c2 = _conv(mid, mid, k, rngs)
        self.c3 = _conv(mid, mid, k, rngs)
        self.c4 = _conv(mid, cout, 1, rngs, scale=out_scale)
        self.residual = residual
        self.down = down
        self.project = _conv(cin, cout, 1, rngs) if residual and cin != cout else None

    def head(self, parts: Sequence[Array]) -> Array:
        """c1 of the (already GELU'd) input parts: the bottleneck `(N, r, r, mid)`."""
        return pointwise(self.c1, parts)

    def tail(self, h: Array) -> Array:
        """c4 of GELU(h): the block's output before the residual."""
        return pointwise(self.c4, [jax.nn.gelu(h)])

    def tail_groups(self, h: Array, sizes: Sequence[int]) -> list[Array]:
        """`tail(h)` as output-channel groups of `sizes`."""
        return pointwise_groups(self.c4, [jax.nn.gelu(h)], sizes)

    def __call__(self, x: Array) -> Array:
        h = self.head([jax.nn.gelu(x)])
        h = spatial_conv(self.c2, jax.nn.gelu(h))
        h = spatial_conv(self.c3, jax.nn.gelu(h))
        h = self.tail(h)
        if self.residual:
            h = h + (pointwise(self.project, [x]) if self.project is not None else x)
        if self.down > 1:
            n, r, _, c = h.shape
            d = self.down
            h = h.reshape(n, r // d, d, r // d, d, c).mean(axis=(2, 4))
        return h


class DecoderBlock(nnx.Module):
    """One stochastic layer at one resolution (causal-gen's block without posterior correction).

    The prior reads the "prior chain" state (and the parents, with a conditional prior), not
    the posterior path, so decoding from the prior and decoding abducted noise agree.
    """

    def __init__(
        self, width: int, out_width: int, resolution: int, config: HVAEConfig, scale: float, rngs
    ):
        z, c, mid = config.z_dim, config.context_dim, max(width // config.bottleneck, 1)
        prior_in = width + (c if config.conditional_prior else 0)
        self.prior = Block(
            prior_in, mid, 2 * z + width, resolution, residual=False, out_scale=0.0, rngs=rngs
        )
        self.posterior = Block(2 * width + c, mid, 2 * z, resolution, residual=False, rngs=rngs)
        self.z_proj = _conv(z + c, width, 1, rngs, scale=scale)
        self.z_feat_proj = _conv(z + width, out_width, 1, rngs)
        self.res = Block(
            width, mid, out_width, resolution, residual=True, out_scale=scale, rngs=rngs
        )
        self.z_dim = z
        self.conditional_prior = config.conditional_prior

    def _prior_head(self, chain: Array, gelu_context: Array) -> Array:
        parts = [jax.nn.gelu(chain)] + ([gelu_context] if self.conditional_prior else [])
        return self.prior.head(parts)

    def prior_params(self, chain: Array, gelu_context: Array) -> tuple[Array, Array, Array]:
        """`(μ_p, log σ_p, features)` from the prior chain; `gelu_context` is GELU(pa) `(N, P)`."""
        h = self._prior_head(chain, gelu_context)
        h = spatial_conv(self.prior.c2, jax.nn.gelu(h))
        h = spatial_conv(self.prior.c3, jax.nn.gelu(h))
        z = self.z_dim
        return tuple(self.prior.tail_groups(h, (z, z, self.prior.c4.out_features - 2 * z)))

    def prior_posterior_params(
        self,
        chain: Array,
        h: Array,
        activation: Array,
        gelu_context: Array,
        gelu_prior_context: Array | None = None,
    ) -> tuple[tuple[Array, Array, Array], tuple[Array, Array]]:
        """`prior_params` and the posterior's `(μ_q, log σ_q)` given the encoder activation.

        `gelu_prior_context` replaces `gelu_context` in the prior (conditioning dropout).
        """
        b = self.posterior.head([jax.nn.gelu(h), gelu_context, jax.nn.gelu(activation)])
        b = spatial_conv(self.posterior.c2, jax.nn.gelu(b))
        b = spatial_conv(self.posterior.c3, jax.nn.gelu(b))
        mu_q, log_scale_q = self.posterior.tail_groups(b, (self.z_dim, self.z_dim))
        prior_context = gelu_context if gelu_prior_context is None else gelu_prior_context
        return self.prior_params(chain, prior_context), (mu_q, log_scale_q)

    def finish(self, h: Array, z: Array, features: Array, context: Array) -> tuple[Array, Array]:
        """The next deterministic state and the next prior-chain state."""
        h = self.res(h + features + pointwise(self.z_proj, [z, context]))
        chain = pointwise(self.z_feat_proj, [z, features])
        return h, chain


def _gaussian_kl(mu_q, logs_q, mu_p, logs_p) -> Array:
    """KL(N(mu_q, e^logs_q) || N(mu_p, e^logs_p)) elementwise (log-std parameterisation)."""
    return (
        logs_p
        - logs_q
        + 0.5 * (jnp.exp(2 * logs_q) + (mu_q - mu_p) ** 2) * jnp.exp(-2 * logs_p)
        - 0.5
    )


def discretized_gaussian_log_likelihood(x: Array, loc: Array, log_scale: Array) -> Array:
    """log P(x) per pixel for x on the 256-level grid of [-1, 1] under a binned Gaussian.

    The bins at -1 and 1 extend to -inf and +inf, so the levels' probabilities sum to 1.
    """
    inv_scale = jnp.exp(-log_scale)
    half_bin = jnp.float32(1.0 / 255.0)
    upper = jax.scipy.stats.norm.logcdf((x - loc + half_bin) * inv_scale)
    lower_tail = jax.scipy.stats.norm.logcdf(-(x - loc - half_bin) * inv_scale)  # log(1 - Φ)
    cdf_plus = jax.scipy.stats.norm.cdf((x - loc + half_bin) * inv_scale)
    cdf_minus = jax.scipy.stats.norm.cdf((x - loc - half_bin) * inv_scale)
    middle = jnp.log(jnp.maximum(cdf_plus - cdf_minus, 1e-12))
    return jnp.where(x < -0.999, upper, jnp.where(x > 0.999, lower_tail, middle))


# A decoder layer in one of three modes: `layer(block, h, chain, activation, gelu_context,
# context, x) -> (z, features, y)` with `x` this layer's input (noise or None) and `y` its
# output (KL, abducted noise or None).
Layer = Callable[..., tuple[Array, Array, Any]]


class HVAE(nnx.Module):
    """Conditional ladder HVAE over images in [-1, 1]: an `ImageModel` with a Gaussian decoder.

    Args:
      config: sizes (see `HVAEConfig`).
      rngs: parameter initialisation.
    """

    Config: ClassVar[type] = HVAEConfig

    def __init__(self, config: HVAEConfig = HVAEConfig(), *, rngs: nnx.Rngs):
        check_int(config.context_dim, "config.context_dim", 0)
        check_int(config.z_dim, "config.z_dim", 1)
        check_int(config.bottleneck, "config.bottleneck", 1)
        self.config = config
        self.image_shape = tuple(config.image_shape)
        height, width_px, channels = self.image_shape
        if height != width_px:
            raise ValueError(f"config.image_shape: expected square images, got {self.image_shape}")
        enc = _parse(config.encoder, "config.encoder")
        dec = _parse(config.decoder, "config.decoder")
        resolutions = [r for r, _, _ in enc]
        if len(resolutions) != len(config.widths):
            raise ValueError(
                f"config.widths: expected one width per encoder stage {resolutions}, "
                f"got {config.widths}"
            )
        if resolutions[0] != height:
            raise ValueError(
                f"config.encoder: must start at the image resolution {height}, got {resolutions[0]}"
            )
        width_at = dict(zip(resolutions, config.widths, strict=True))
        for r, _, _ in dec:
            if r not in width_at:
                raise ValueError(f"config.decoder: resolution {r} is not an encoder resolution")

        # Encoder: a 7x7 stem, then per stage residual blocks and a downsampling block.
        num_enc = sum(b + (d > 1) for _, b, d in enc)
        enc_scale = math.sqrt(1.0 / num_enc)
        self.stem = _conv(channels, config.widths[0], 7, rngs)
        enc_blocks = []
        for k, (resolution, blocks, down) in enumerate(enc):
            w = width_at[resolution]
            mid = max(w // config.bottleneck, 1)
            for _ in range(blocks):
                enc_blocks.append(
                    Block(w, mid, w, resolution, residual=True, out_scale=enc_scale, rngs=rngs)
                )
            if down > 1:
                out = config.widths[k + 1]
                enc_blocks.append(
                    Block(
                        w,
                        mid,
                        out,
                        resolution,
                        residual=True,
                        down=down,
                        out_scale=enc_scale,
                        rngs=rngs,
                    )
                )
        self.enc_blocks = nnx.List(enc_blocks)

        # Decoder: learned biases per resolution, then stochastic blocks, largest last.
        layers = [(r, width_at[r]) for r, blocks, _ in dec for _ in range(blocks)]
        dec_scale = math.sqrt(1.0 / len(layers))
        self.bias = nnx.Dict(
            {
                f"r{r}": nnx.Param(jnp.zeros((1, r, r, width_at[r]), jnp.float32))
                for r in sorted({r for r, _ in layers})
            }
        )
        dec_blocks = []
        for k, (resolution, w) in enumerate(layers):
            out_width = layers[min(k + 1, len(layers) - 1)][1]
            dec_blocks.append(DecoderBlock(w, out_width, resolution, config, dec_scale, rngs))
        self.dec_blocks = nnx.List(dec_blocks)
        self.resolutions = tuple(r for r, _ in layers)
        self.out_loc = _conv(layers[-1][1], channels, 1, rngs)
        self.out_log_scale = _conv(layers[-1][1], channels, 1, rngs)

    @property
    def context_dim(self) -> int:
        return self.config.context_dim

    @property
    def conditional_prior(self) -> bool:
        return self.config.conditional_prior

    def mechanism(self, encoding: ParentEncoding, pixel_noise: str = "abduct") -> Mechanism:
        """The image node's mechanism (see `GaussianDecoderMechanism` for `pixel_noise`)."""
        return GaussianDecoderMechanism(self, encoding, pixel_noise=pixel_noise)

    def _check(self, x: Array | None, context: Array) -> None:
        if x is not None and (x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape):
            shape = ", ".join(map(str, self.image_shape))
            raise ValueError(f"x: expected images (N, {shape}), got shape {x.shape}")
        check_context(context, self.context_dim, None if x is None else x.shape[0])

    # -- shared pieces ----------------------------------------------------------------------

    def _encode(self, x: Array) -> dict[int, Array]:
        """Encoder activations at every resolution (the last block's output there)."""
        h = spatial_conv(self.stem, x)
        activations = {}
        for block in self.enc_blocks:
            h = block(h)
            activations[h.shape[1]] = h
        return activations

    def _grow(self, h: Array, resolution: int) -> Array:
        """Upsample to `resolution` (nearest) and add that resolution's learned bias."""
        if h.shape[1] == resolution:
            return h
        factor = resolution // h.shape[1]
        h = jnp.repeat(jnp.repeat(h, factor, axis=1), factor, axis=2)
        return h + self.bias[f"r{resolution}"][...]

    def _top(self, num: int) -> Array:
        top = self.bias[f"r{self.resolutions[0]}"][...]
        return jnp.broadcast_to(top, (num, *top.shape[1:]))

    def _output(self, h: Array) -> tuple[Array, Array]:
        h = jax.nn.gelu(h)
        log_scale = jnp.maximum(
            pointwise(self.out_log_scale, [h]), jnp.float32(self.config.min_log_scale)
        )
        return pointwise(self.out_loc, [h]), log_scale

    def _run(
        self, x: Array | None, context: Array, layer: Layer, inputs: Sequence[Any]
    ) -> tuple[Array, Array, list[Any]]:
        """The top-down pass: `(loc, log_scale)` of the pixels and every layer's output.

        `layer(block, h, chain, activation, gelu_context, context, x) -> (z, features, y)`
        runs decoder layer l on its input `x = inputs[l]` and returns its output `y`.
        """
        activations = self._encode(x) if x is not None else None
        gelu_context = jax.nn.gelu(context)
        h = chain = self._top(context.shape[0])
        outputs = []
        for block, resolution, x_l in zip(self.dec_blocks, self.resolutions, inputs, strict=True):
            h, chain = self._grow(h, resolution), self._grow(chain, resolution)
            activation = activations[resolution] if activations is not None else None
            z, features, y = layer(block, h, chain, activation, gelu_context, context, x_l)
            h, chain = block.finish(h, z, features, context)
            outputs.append(y)
        return (*self._output(h), outputs)

    # -- training ---------------------------------------------------------------------------

    def loss(
        self, x: Array, context: Array, key: Array, *, prior_context: Array | None = None
    ) -> tuple[Array, dict[str, Array]]:
        """Negative ELBO in nats per pixel dimension, with its reconstruction and KL parts.

        Args:
          x: images `(N, H, W, C)` in [-1, 1] on the 256-level grid.
          context: parents `(N, P)`.
          key: for the posterior samples.
          prior_context: parents `(N, P)` the conditional prior reads instead of `context`
            (conditioning dropout: some parents zeroed); the posterior and the decoder's
            projections still read `context`.
        """
        self._check(x, context)
        if prior_context is not None:
            if not self.config.conditional_prior:
                raise ValueError("prior_context: this HVAE's prior does not read the parents")
            if prior_context.shape != context.shape:
                raise ValueError(
                    f"prior_context: expected shape {context.shape} like context, "
                    f"got {prior_context.shape}"
                )
        gelu_prior_context = None if prior_context is None else jax.nn.gelu(prior_context)

        def layer(block, h, chain, activation, gelu_context, context, noise):
            (mu_p, logs_p, features), (mu_q, logs_q) = block.prior_posterior_params(
                chain, h, activation, gelu_context, gelu_prior_context
            )
            kl = _gaussian_kl(mu_q, logs_q, mu_p, logs_p)
            return mu_q + jnp.exp(logs_q) * noise, features, kl.reshape(kl.shape[0], -1).sum(-1)

        noise = fused_normals(key, tuple(self.latent_shapes(x.shape[0])))
        loc, log_scale, kls = self._run(x, context, layer, noise)
        log_px = discretized_gaussian_log_likelihood(x, loc, log_scale)
        dims = jnp.float32(math.prod(self.image_shape))
        nll = -log_px.reshape(x.shape[0], -1).sum(-1) / dims
        kl = sum(kls) / dims
        loss = jnp.mean(nll + jnp.float32(self.config.beta) * kl)
        return loss, {"nll": jnp.mean(nll), "kl": jnp.mean(kl), "elbo": -jnp.mean(nll + kl)}

    # -- the GaussianDecoderModel protocol ---------------------------------------------------

    def latent_shapes(self, num: int) -> list[tuple[int, ...]]:
        return [(num, r, r, self.config.z_dim) for r in self.resolutions]

    def sample_latent_noise(self, key: Array, num: int) -> list[Array]:
        return fused_normals(key, tuple(self.latent_shapes(num)))

    def abduct_latent_noise(self, x: Array, context: Array, key: Array | None) -> list[Array]:
        """ε_l = (z_l - μ_p) / σ_p with z_l the posterior mean (or a draw, given `key`)."""

        def layer(block, h, chain, activation, gelu_context, context, noise):
            (mu_p, logs_p, features), (mu_q, logs_q) = block.prior_posterior_params(
                chain, h, activation, gelu_context
            )
            z = mu_q if noise is None else mu_q + jnp.exp(logs_q) * noise
            return z, features, (z - mu_p) * jnp.exp(-logs_p)

        self._check(x, context)
        shapes = self.latent_shapes(x.shape[0])
        inputs = [None] * len(shapes) if key is None else fused_normals(key, tuple(shapes))
        return self._run(x, context, layer, inputs)[2]

    def decode(self, noise: Sequence[Array], context: Array) -> tuple[Array, Array]:
        """`(loc, log_scale)` `(N, H, W, C)` of the pixels for latent noise and parents."""
        check_context(context, self.context_dim, noise[0].shape[0])

        def layer(block, h, chain, activation, gelu_context, context, eps):
            mu_p, logs_p, features = block.prior_params(chain, gelu_context)
            return mu_p + jnp.exp(logs_p) * eps, features, None

        loc, log_scale, _ = self._run(None, context, layer, list(noise))
        return loc, log_scale
