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

For `ImageMechanism`, the exogenous latent noise of layer l is `ε_l = (z_l - μ_p) / σ_p`
under the prior: `decode(ε, pa*)` rebuilds `z_l = μ_p(z_<l, pa*) + σ_p(z_<l, pa*) ε_l`, the
abduction–action–prediction reading of the ladder as an SCM. (causal-gen instead standardises
by the posterior and mixes posterior and prior with a weight α; we keep the plain SCM reading.)

Architecture strings follow causal-gen: "32b3d2" = 3 blocks at resolution 32, then
downsample by 2; "1b4" = 4 blocks at resolution 1.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

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


def _conv(cin: int, cout: int, kernel: int, rngs: nnx.Rngs, *, scale: float = 1.0) -> nnx.Conv:
    """A SAME conv; `scale` shrinks the initial kernel (0 gives a zero output at init)."""
    base = nnx.initializers.lecun_normal()
    init = (lambda key, shape, dtype: scale * base(key, shape, dtype)) if scale != 1.0 else base
    return nnx.Conv(cin, cout, (kernel, kernel), padding="SAME", kernel_init=init, rngs=rngs)


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

    def __call__(self, x: Array) -> Array:
        h = self.c1(jax.nn.gelu(x))
        h = self.c2(jax.nn.gelu(h))
        h = self.c3(jax.nn.gelu(h))
        h = self.c4(jax.nn.gelu(h))
        if self.residual:
            h = h + (self.project(x) if self.project is not None else x)
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

    def prior_params(self, chain: Array, context: Array) -> tuple[Array, Array, Array]:
        inputs = jnp.concatenate([chain, context], -1) if self.conditional_prior else chain
        out = self.prior(inputs)
        z = self.z_dim
        return out[..., :z], out[..., z : 2 * z], out[..., 2 * z :]

    def posterior_params(self, h: Array, activation: Array, context: Array) -> tuple[Array, Array]:
        out = self.posterior(jnp.concatenate([h, context, activation], -1))
        return out[..., : self.z_dim], out[..., self.z_dim :]

    def finish(
        self, h: Array, chain: Array, z: Array, features: Array, context: Array
    ) -> tuple[Array, Array]:
        """The next deterministic state and the next prior-chain state."""
        h = self.res(h + features + self.z_proj(jnp.concatenate([z, context], -1)))
        chain = self.z_feat_proj(jnp.concatenate([z, features], -1))
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


class HVAE(nnx.Module):
    """Conditional ladder HVAE over images in [-1, 1]; implements `LatentImageModel`.

    Args:
      config: sizes (see `HVAEConfig`).
      rngs: parameter initialisation.
    """

    def __init__(self, config: HVAEConfig = HVAEConfig(), *, rngs: nnx.Rngs):
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
        self.stem = nnx.Conv(channels, config.widths[0], (7, 7), padding="SAME", rngs=rngs)
        enc_blocks = []
        for k, (resolution, blocks, down) in enumerate(enc):
            w = width_at[resolution]
            mid = max(w // config.bottleneck, 1)
            for _ in range(blocks):
                enc_blocks.append(
                    Block(w, mid, w, resolution, residual=True, out_scale=enc_scale, rngs=rngs)
                )
            if down > 1:
                nxt = config.widths[k + 1]
                enc_blocks.append(
                    Block(
                        w,
                        mid,
                        nxt,
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

    # -- shared pieces ----------------------------------------------------------------------

    def _context_map(self, context: Array, resolution: int) -> Array:
        n, p = context.shape
        return jnp.broadcast_to(context[:, None, None, :], (n, resolution, resolution, p))

    def _encode(self, x: Array) -> dict[int, Array]:
        """Encoder activations at every resolution (the last block's output there)."""
        h = self.stem(x)
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
        log_scale = jnp.maximum(self.out_log_scale(h), jnp.float32(self.config.min_log_scale))
        return self.out_loc(h), log_scale

    # -- training ---------------------------------------------------------------------------

    def _run(self, x: Array | None, context: Array, step) -> tuple[Array, Array]:
        """The top-down pass; `step(block, h, chain, ctx, activation) -> (z, features)`."""
        activations = self._encode(x) if x is not None else None
        num = context.shape[0]
        h = chain = self._top(num)
        for block, resolution in zip(self.dec_blocks, self.resolutions, strict=True):
            h, chain = self._grow(h, resolution), self._grow(chain, resolution)
            ctx = self._context_map(context, resolution)
            activation = activations[resolution] if activations is not None else None
            z, features = step(block, h, chain, ctx, activation)
            h, chain = block.finish(h, chain, z, features, ctx)
        return self._output(h)

    def loss(self, x: Array, context: Array, key: Array) -> tuple[Array, dict[str, Array]]:
        """Negative ELBO in nats per pixel dimension, with its reconstruction and KL parts.

        Args:
          x: images `(N, H, W, C)` in [-1, 1] on the 256-level grid.
          context: parents `(N, P)`.
          key: for the posterior samples.
        """
        kls = []
        keys = iter(jax.random.split(key, len(self.dec_blocks)))

        def step(block, h, chain, ctx, activation):
            mu_p, logs_p, features = block.prior_params(chain, ctx)
            mu_q, logs_q = block.posterior_params(h, activation, ctx)
            noise = jax.random.normal(next(keys), mu_q.shape, jnp.float32)
            kl = _gaussian_kl(mu_q, logs_q, mu_p, logs_p)
            kls.append(kl.reshape(kl.shape[0], -1).sum(-1))
            return mu_q + jnp.exp(logs_q) * noise, features

        loc, log_scale = self._run(x, context, step)
        log_px = discretized_gaussian_log_likelihood(x, loc, log_scale)
        dims = jnp.float32(math.prod(self.image_shape))
        nll = -log_px.reshape(x.shape[0], -1).sum(-1) / dims
        kl = sum(kls) / dims
        loss = jnp.mean(nll + jnp.float32(self.config.beta) * kl)
        return loss, {"nll": jnp.mean(nll), "kl": jnp.mean(kl), "elbo": -jnp.mean(nll + kl)}

    # -- the LatentImageModel protocol ------------------------------------------------------

    def latent_shapes(self, num: int) -> list[tuple[int, ...]]:
        return [(num, r, r, self.config.z_dim) for r in self.resolutions]

    def sample_latent_noise(self, key: Array, num: int) -> list[Array]:
        shapes = self.latent_shapes(num)
        keys = jax.random.split(key, len(shapes))
        return [jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, shapes, strict=True)]

    def abduct_latent_noise(self, x: Array, context: Array, key: Array | None) -> list[Array]:
        """ε_l = (z_l - μ_p) / σ_p with z_l the posterior mean (or a draw, given `key`)."""
        noise = []
        keys = iter(jax.random.split(key, len(self.dec_blocks))) if key is not None else None

        def step(block, h, chain, ctx, activation):
            mu_p, logs_p, features = block.prior_params(chain, ctx)
            mu_q, logs_q = block.posterior_params(h, activation, ctx)
            z = mu_q
            if keys is not None:
                z = z + jnp.exp(logs_q) * jax.random.normal(next(keys), mu_q.shape, jnp.float32)
            noise.append((z - mu_p) * jnp.exp(-logs_p))
            return z, features

        self._run(x, context, step)
        return noise

    def decode(self, noise: Sequence[Array], context: Array) -> tuple[Array, Array]:
        """`(loc, log_scale)` `(N, H, W, C)` of the pixels for latent noise and parents."""
        layers = iter(noise)

        def step(block, h, chain, ctx, activation):
            mu_p, logs_p, features = block.prior_params(chain, ctx)
            return mu_p + jnp.exp(logs_p) * next(layers), features

        return self._run(None, context, step)
