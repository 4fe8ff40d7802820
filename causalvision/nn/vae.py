"""A conditional VAE image model (deepscm's image mechanism, REFERENCE §2.1).

The encoder q(z | x, pa) is a stack of stride-2 4x4 convolutions; the flattened features,
concatenated with the parents, go through one hidden layer to the mean and log-std of a
diagonal Gaussian over z. The decoder p(x | z, pa) reads `concat(z, pa)` (deepscm's "Full"
variant conditions the decoder on the parents) through two fully connected layers to a
`(H / 2^k, W / 2^k, widths[-1])` map, then upsamples by 2 with 4x4 transposed convolutions
to per-pixel `loc` and `log_scale`. The pixel likelihood is the discretised Gaussian on
[-1, 1] shared with the HVAE.

For 32x32 Morpho images the defaults are deepscm's MNIST sizes: conv 64 -> conv 128 -> FC 100
(z in R^16); FC 1024 -> 8x8x128 -> ConvT 64 -> ConvT 2C. deepscm uses a fixed-variance
Gaussian and batch normalisation; here the decoder predicts a per-pixel scale and there is
no normalisation (no batch state, so abduction is a pure function).

As an SCM, the prior p(z) = N(0, I) ignores the parents, so the exogenous latent noise is z
itself: `abduct_latent_noise` is the posterior mean (or a draw) and `decode(z, pa*)` is the
counterfactual mean image.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from causalvision.nn.hvae import discretized_gaussian_log_likelihood
from causalvision.nn.image_mechanism import GaussianDecoderMechanism, ParentEncoding, check_context
from causalvision.scm import Mechanism
from causalvision.validation import check_int, check_real

Array = jax.Array

__all__ = ["VAE", "VAEConfig"]


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Sizes of a conditional VAE (defaults: deepscm's Morpho-MNIST VAE adapted to 32x32).

    `encoder_widths[k]` is the width of the k-th stride-2 conv; the decoder mirrors them
    (starting at `image_size / 2^len(encoder_widths)` with `encoder_widths[-1]` channels).

    `film` also conditions every decoder stage on the parents by FiLM (Perez et al. 2018):
    `h * (1 + γ(pa)) + β(pa)` per channel, output included, with γ and β zero at
    initialisation. A parent that scales the image (Morpho's intensity) is then one product
    away, where the input concatenation alone must learn it through every layer.
    """

    image_shape: tuple[int, int, int] = (32, 32, 1)
    context_dim: int = 12
    latent_dim: int = 16
    encoder_widths: tuple[int, ...] = (64, 128)
    encoder_hidden: int = 100
    decoder_hidden: int = 1024
    beta: float = 1.0
    min_log_scale: float = -7.0  # keeps the pixel likelihood finite on constant regions
    film: bool = False

    @classmethod
    def tiny(cls, image_shape: tuple[int, int, int], context_dim: int) -> VAEConfig:
        """A few thousand parameters, compiled in seconds (tests, smoke runs)."""
        return cls(
            image_shape=tuple(image_shape),
            context_dim=context_dim,
            latent_dim=4,
            encoder_widths=(8, 16),
            encoder_hidden=16,
            decoder_hidden=32,
        )


def _is_count(value, minimum: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _validate(config: VAEConfig) -> None:
    shape = config.image_shape
    if not (isinstance(shape, tuple | list) and len(shape) == 3 and all(map(_is_count, shape))):
        raise ValueError(
            f"config.image_shape: expected (height, width, channels) positive ints, got {shape!r}"
        )
    if shape[0] != shape[1]:
        raise ValueError(f"config.image_shape: expected square images, got {tuple(shape)}")
    widths = config.encoder_widths
    if not (isinstance(widths, tuple | list) and len(widths) >= 1 and all(map(_is_count, widths))):
        raise ValueError(
            f"config.encoder_widths: expected a non-empty tuple of positive ints, got {widths!r}"
        )
    factor = 2 ** len(widths)
    if shape[0] % factor:
        raise ValueError(
            f"config.encoder_widths: {len(widths)} stride-2 stages need an image size divisible "
            f"by {factor}, got {shape[0]}"
        )
    check_int(config.context_dim, "config.context_dim", 0)
    if config.film and not config.context_dim:
        raise ValueError("config.film: FiLM conditions on the parents; context_dim is 0")
    for name in ("latent_dim", "encoder_hidden", "decoder_hidden"):
        check_int(getattr(config, name), f"config.{name}", 1)
    check_real(config.beta, "config.beta", 0.0)
    check_real(config.min_log_scale, "config.min_log_scale")


def _gaussian_kl_standard(mu: Array, log_std: Array) -> Array:
    """KL(N(mu, e^{2 log_std}) || N(0, 1)) elementwise."""
    return 0.5 * (jnp.exp(2 * log_std) + mu**2 - 1.0) - log_std


class VAE(nnx.Module):
    """Conditional convolutional VAE over images in [-1, 1]: an `ImageModel` with a Gaussian
    decoder and an exogenous prior N(0, I).

    Args:
      config: sizes (see `VAEConfig`).
      rngs: parameter initialisation.

    Example:
      >>> import jax
      >>> from flax import nnx
      >>> from causalvision.nn import VAE, ParentEncoding, VAEConfig
      >>> from causalvision.scm import SCM, Categorical
      >>> vae = VAE(VAEConfig.tiny((8, 8, 1), context_dim=2), rngs=nnx.Rngs(0))  # untrained
      >>> encoding = ParentEncoding([("label", "categorical", 2)])  # one-hot: 2 columns
      >>> scm = SCM({"label": Categorical([], [0.5, 0.5]), "image": vae.mechanism(encoding)})
      >>> batch = scm.sample(jax.random.key(0), 4)
      >>> batch["image"].shape
      (4, 8, 8, 1)
      >>> same = scm.counterfactual(batch, do={"label": batch["label"]})  # a null intervention
      >>> round(float(abs(same["image"] - batch["image"]).max()), 2)  # gives the image back
      0.0
    """

    Config: ClassVar[type] = VAEConfig
    conditional_prior = False  # p(z) = N(0, I) ignores the parents

    def __init__(self, config: VAEConfig = VAEConfig(), *, rngs: nnx.Rngs):
        _validate(config)
        self.config = config
        self.image_shape = tuple(int(s) for s in config.image_shape)
        size, _, channels = self.image_shape
        widths = tuple(config.encoder_widths)
        self.base = size // 2 ** len(widths)
        features = self.base * self.base * widths[-1]

        convs = []
        cin = channels
        for w in widths:
            convs.append(nnx.Conv(cin, w, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs))
            cin = w
        self.enc_convs = nnx.List(convs)
        self.enc_hidden = nnx.Linear(
            features + config.context_dim, config.encoder_hidden, rngs=rngs
        )
        self.enc_out = nnx.Linear(config.encoder_hidden, 2 * config.latent_dim, rngs=rngs)

        self.dec_hidden = nnx.Linear(
            config.latent_dim + config.context_dim, config.decoder_hidden, rngs=rngs
        )
        self.dec_features = nnx.Linear(config.decoder_hidden, features, rngs=rngs)
        outs = [*reversed(widths[:-1]), 2 * channels]  # e.g. 128 -> 64 -> 2C
        deconvs = []
        cin = widths[-1]
        for w in outs:
            deconvs.append(
                nnx.ConvTranspose(cin, w, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs)
            )
            cin = w
        self.dec_convs = nnx.List(deconvs)
        if config.film:
            zeros = nnx.initializers.zeros_init()
            self.dec_film = nnx.List(
                [
                    nnx.Linear(config.context_dim, 2 * w, kernel_init=zeros, rngs=rngs)
                    for w in (widths[-1], *outs)
                ]
            )

    @property
    def context_dim(self) -> int:
        return self.config.context_dim

    def mechanism(self, encoding: ParentEncoding, pixel_noise: str = "abduct") -> Mechanism:
        """The image node's mechanism (see `GaussianDecoderMechanism` for `pixel_noise`)."""
        return GaussianDecoderMechanism(self, encoding, pixel_noise=pixel_noise)

    # -- boundary checks (static shapes, so free under jit) -----------------------------------

    def _check(self, x: Array | None, context: Array, latent: Array | None = None) -> None:
        n = None
        if x is not None:
            if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
                raise ValueError(
                    f"x: expected images (N, {', '.join(map(str, self.image_shape))}), "
                    f"got shape {x.shape}"
                )
            n = x.shape[0]
        if latent is not None:
            if latent.ndim != 2 or latent.shape[1] != self.config.latent_dim:
                raise ValueError(
                    f"noise: expected latents (N, {self.config.latent_dim}), got shape "
                    f"{latent.shape}"
                )
            n = latent.shape[0]
        check_context(context, self.config.context_dim, n)

    # -- networks -------------------------------------------------------------------------------

    def _posterior(self, x: Array, context: Array) -> tuple[Array, Array]:
        """Mean and log-std of q(z | x, pa), each `(N, latent_dim)`."""
        h = x
        for conv in self.enc_convs:
            h = jax.nn.gelu(conv(h))
        h = jnp.concatenate([h.reshape(h.shape[0], -1), context.astype(h.dtype)], -1)
        out = self.enc_out(jax.nn.gelu(self.enc_hidden(h)))
        d = self.config.latent_dim
        return out[:, :d], out[:, d:]

    def _decode(self, z: Array, context: Array) -> tuple[Array, Array]:
        h = jnp.concatenate([z, context.astype(z.dtype)], -1)
        h = jax.nn.gelu(self.dec_hidden(h))
        h = jax.nn.gelu(self.dec_features(h))
        h = h.reshape(h.shape[0], self.base, self.base, -1)
        h = self._film(0, h, context)
        for k, deconv in enumerate(self.dec_convs):
            if k:
                h = jax.nn.gelu(h)
            h = self._film(k + 1, deconv(h), context)
        c = self.image_shape[2]
        log_scale = jnp.maximum(h[..., c:], jnp.float32(self.config.min_log_scale))
        return h[..., :c], log_scale

    def _film(self, stage: int, h: Array, context: Array) -> Array:
        """`h (N, H, W, C) * (1 + γ) + β` with `(γ, β)` read from the parents (if `film`)."""
        if not self.config.film:
            return h
        gamma, beta = jnp.split(self.dec_film[stage](context.astype(h.dtype)), 2, axis=-1)
        return h * (1 + gamma[:, None, None, :]) + beta[:, None, None, :]

    # -- training ---------------------------------------------------------------------------

    def loss(
        self, x: Array, context: Array, key: Array, *, prior_context: Array | None = None
    ) -> tuple[Array, dict[str, Array]]:
        """Negative ELBO in nats per pixel dimension, with its reconstruction and KL parts.

        Args:
          x: images `(N, H, W, C)` in [-1, 1] on the 256-level grid.
          context: parents `(N, P)`.
          key: for the posterior sample (one per image).
          prior_context: refused: the prior N(0, I) reads no parents.

        Returns:
          `(loss, {"nll", "kl", "elbo"})`: loss is `mean(nll + beta * kl)`; `elbo` is
          `-mean(nll + kl)` whatever beta.
        """
        if prior_context is not None:
            raise ValueError("prior_context: this VAE's prior N(0, I) does not read the parents")
        self._check(x, context)
        mu, log_std = self._posterior(x, context)
        z = mu + jnp.exp(log_std) * jax.random.normal(key, mu.shape, mu.dtype)
        loc, log_scale = self._decode(z, context)
        log_px = discretized_gaussian_log_likelihood(x, loc, log_scale)
        dims = jnp.float32(math.prod(self.image_shape))
        nll = -log_px.reshape(x.shape[0], -1).sum(-1) / dims
        kl = _gaussian_kl_standard(mu, log_std).sum(-1) / dims
        loss = jnp.mean(nll + jnp.float32(self.config.beta) * kl)
        return loss, {"nll": jnp.mean(nll), "kl": jnp.mean(kl), "elbo": -jnp.mean(nll + kl)}

    # -- the GaussianDecoderModel protocol ---------------------------------------------------

    def sample_latent_noise(self, key: Array, num: int) -> Array:
        """Prior draws z ~ N(0, I), `(num, latent_dim)`."""
        return jax.random.normal(key, (num, self.config.latent_dim), jnp.float32)

    def abduct_latent_noise(self, x: Array, context: Array, key: Array | None = None) -> Array:
        """z for observed images: the posterior mean, or a reparameterised draw given `key`.

        The prior is N(0, I) and ignores the parents, so the exogenous noise is z itself.
        """
        self._check(x, context)
        mu, log_std = self._posterior(x, context)
        if key is None:
            return mu
        return mu + jnp.exp(log_std) * jax.random.normal(key, mu.shape, mu.dtype)

    def decode(self, noise: Array, context: Array) -> tuple[Array, Array]:
        """`(loc, log_scale)`, each `(N, H, W, C)`, of the pixels for latents and parents."""
        self._check(None, context, noise)
        return self._decode(noise, context)
