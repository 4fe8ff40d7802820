"""A diffusion autoencoder as an image mechanism of a deep SCM (CausalDiffAE, Diff-SCM;
REFERENCE §2.3, §2.4).

`DiffusionAutoEncoder` is an `ImageModel`, a peer of the VAE and HVAE: an encoder gives each
image a semantic latent z `(L,)` (Gaussian posterior, KL to N(0, I)), and a `UNet` noise
predictor ε_θ(x_t, t, [pa; z]) is trained with DDPM's ε-MSE on the parents' context vector
and z, with classifier-free dropout of both.

As a structural equation (`DiffusionMechanism`) the image's exogenous noise is
`{"latent": z, "x": x_s, "pixel": r}`: the semantic latent, the image's state x_s at DDIM step
s of the chain, and the residual r that the model's round trip leaves. The equation is

    image = to_pixels(DDIM(x_s, s → 0; cond = [pa; z]) + r)

- abduction "invert" (Diff-SCM): z = the encoder's posterior mean, x_s = DDIM inversion of the
  image under its own parents (deterministic, so exact abduction);
- abduction "renoise" (CausalDiffAE's script): x_s = q_sample of the image at step s with
  fresh noise from the caller's key (stochastic);
- `strength` in (0, 1] sets s: the fraction of the DDIM chain that is inverted (or noised)
  and denoised again. Smaller values keep more of the factual image; 1 is the whole chain;
- `pixel_noise="abduct"` keeps r = x − DDIM(x_s; [pa; z]) so that intervening on nothing
  returns the image exactly (the counterfactual's consistency); "none" sets r = 0.

Sampling (`sample_noise`) draws z and x_T from N(0, I) and needs the whole chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from causalvision.nn.cpu_kernels import lecun_normal
from causalvision.nn.diffusion import (
    NoiseSchedule,
    UNet,
    UNetConfig,
    ddim_invert,
    ddim_sample,
    ddim_timesteps,
    ddpm_loss,
    q_sample,
)
from causalvision.nn.image_mechanism import (
    ParentEncoding,
    check_context,
    from_pixels,
    to_pixels,
)
from causalvision.scm.mechanisms import Mechanism, mechanism_dataclass
from causalvision.validation import check_int, check_key, check_real

Array = jax.Array

__all__ = ["DiffusionAutoEncoder", "DiffusionAutoEncoderConfig", "DiffusionMechanism"]

SCHEDULES = ("cosine", "linear")
ABDUCTIONS = ("invert", "renoise")
PIXEL_NOISE = ("abduct", "none")


@dataclasses.dataclass(frozen=True)
class DiffusionAutoEncoderConfig:
    """Sizes and training settings of a diffusion autoencoder.

    The encoder is `len(encoder_widths)` 3x3 stride-2 convolutions (LeakyReLU 0.2), flattened
    to the latent's mean and log-variance `(L,)` each. The UNet (`UNetConfig`'s fields of the
    same names) reads cond = [context `(P,)`; z `(L,)`]. Training: `schedule` over
    `num_train_steps`, conditioning dropped with `cond_drop_prob`, loss ε-MSE + `kl_weight` ·
    KL(q(z | x) ‖ N(0, I)) (the KL summed over z, averaged over the batch). The counterfactual
    procedure's defaults (`DiffusionMechanism`'s `num_steps`, `abduction`, `strength`,
    `guidance_scale`) are `ddim_steps`, `abduction`, `strength` and `guidance_scale`, so a
    run's config states how its counterfactuals are made; `mechanism(...)` options override
    them.

    Defaults: Morpho digits (32x32x1), CausalDiffAE's encoder widths and a 64-wide UNet.
    """

    image_shape: tuple[int, int, int] = (32, 32, 1)
    context_dim: int = 0
    latent_size: int = 16
    encoder_widths: tuple[int, ...] = (16, 32, 64, 128)
    base_width: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (8,)
    num_heads: int = 1
    num_groups: int = 32
    zero_init: bool = True
    schedule: str = "cosine"
    num_train_steps: int = 1000
    cond_drop_prob: float = 0.1
    kl_weight: float = 1e-3
    ddim_steps: int = 50
    abduction: str = "invert"
    strength: float = 1.0
    guidance_scale: float = 1.0

    @classmethod
    def tiny(
        cls, image_shape: tuple[int, int, int] = (16, 16, 1), context_dim: int = 0
    ) -> DiffusionAutoEncoderConfig:
        """A few thousand parameters, compiled in seconds (tests, smoke runs). Its UNet is not
        zero-initialised, so an untrained model's parents already change its images."""
        return cls(
            image_shape=tuple(image_shape),
            context_dim=context_dim,
            latent_size=4,
            encoder_widths=(4, 8),
            base_width=4,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(image_shape[0] // 2,),
            num_groups=1,
            zero_init=False,
            num_train_steps=100,
            ddim_steps=10,
        )

    def unet_config(self) -> UNetConfig:
        height, _, channels = self.image_shape
        return UNetConfig(
            resolution=height,
            channels=channels,
            base_width=self.base_width,
            channel_mult=tuple(self.channel_mult),
            num_res_blocks=self.num_res_blocks,
            attention_resolutions=tuple(self.attention_resolutions),
            num_heads=self.num_heads,
            cond_size=self.context_dim + self.latent_size,
            num_groups=self.num_groups,
            zero_init=self.zero_init,
        )

    def noise_schedule(self) -> NoiseSchedule:
        """The training schedule (built on call: numpy, a few microseconds)."""
        build = NoiseSchedule.cosine if self.schedule == "cosine" else NoiseSchedule.linear
        return build(self.num_train_steps)


def _validate(config: DiffusionAutoEncoderConfig) -> None:
    shape = config.image_shape
    if not (isinstance(shape, tuple | list) and len(shape) == 3):
        raise ValueError(f"config.image_shape: expected (H, W, C), got {shape!r}")
    for side in shape:
        check_int(side, "config.image_shape", 1)
    if shape[0] != shape[1]:
        raise ValueError(f"config.image_shape: the UNet needs square images, got {shape!r}")
    check_int(config.context_dim, "config.context_dim", 0)
    check_int(config.latent_size, "config.latent_size", 1)
    widths = config.encoder_widths
    if not (isinstance(widths, tuple | list) and len(widths) >= 1):
        raise ValueError(f"config.encoder_widths: expected a non-empty tuple, got {widths!r}")
    for width in widths:
        check_int(width, "config.encoder_widths", 1)
    if shape[0] % 2 ** len(widths):
        raise ValueError(
            f"config.encoder_widths: {len(widths)} stride-2 layers need a side divisible by "
            f"{2 ** len(widths)}, got {shape[0]}"
        )
    if config.schedule not in SCHEDULES:
        raise ValueError(f"config.schedule: expected one of {SCHEDULES}, got {config.schedule!r}")
    check_int(config.num_train_steps, "config.num_train_steps", 2)
    check_real(config.cond_drop_prob, "config.cond_drop_prob", 0.0, 1.0)
    check_real(config.kl_weight, "config.kl_weight", 0.0)
    check_int(config.ddim_steps, "config.ddim_steps", 1, config.num_train_steps)
    if config.abduction not in ABDUCTIONS:
        raise ValueError(
            f"config.abduction: expected one of {ABDUCTIONS}, got {config.abduction!r}"
        )
    check_real(config.strength, "config.strength", 0.0, 1.0, open_low=True)
    check_real(config.guidance_scale, "config.guidance_scale")


class DiffusionAutoEncoder(nnx.Module):
    """A diffusion autoencoder image model: encoder → z, UNet ε_θ(x_t, t, [pa; z]).

    Args:
      config: sizes and training settings (`DiffusionAutoEncoderConfig`).
      rngs: parameter initialisation.

    Example:
      model = DiffusionAutoEncoder(DiffusionAutoEncoder.Config(context_dim=3), rngs=nnx.Rngs(0))
      loss, metrics = model.loss(x, context, key)      # x (N, 32, 32, 1) in [-1, 1]
      scm = SCM({..., "image": model.mechanism(encoding, num_steps=50)})
    """

    Config: ClassVar[type] = DiffusionAutoEncoderConfig
    conditional_prior: ClassVar[bool] = False

    def __init__(
        self,
        config: DiffusionAutoEncoderConfig = DiffusionAutoEncoderConfig(),
        *,
        rngs: nnx.Rngs,
    ):
        _validate(config)
        self.config = config
        height, _, channels = config.image_shape
        convs, cin = [], channels
        for out in config.encoder_widths:
            convs.append(
                nnx.Conv(
                    cin,
                    out,
                    (3, 3),
                    strides=(2, 2),
                    padding="SAME",
                    kernel_init=lecun_normal(1.0),
                    rngs=rngs,
                )
            )
            cin = out
        self.encoder_convs = nnx.List(convs)
        cells = (height // 2 ** len(config.encoder_widths)) ** 2 * cin
        self.to_latent = nnx.Linear(
            cells, 2 * config.latent_size, kernel_init=lecun_normal(1.0), rngs=rngs
        )
        self.unet = UNet(config.unet_config(), rngs=rngs)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.config.image_shape)

    @property
    def context_dim(self) -> int:
        return self.config.context_dim

    def _check_images(self, x: Array, argument: str = "x") -> Array:
        shape = tuple(np.shape(x))
        if len(shape) != 4 or shape[1:] != self.image_shape:
            raise ValueError(
                f"{argument}: expected shape (N, {', '.join(map(str, self.image_shape))}), "
                f"got {shape}"
            )
        return jnp.asarray(x, jnp.float32)

    def encode(self, x: Array) -> tuple[Array, Array]:
        """q(z | x): mean and log-variance `(N, L)` each, for images `(N, H, W, C)` in [-1, 1]."""
        h = self._check_images(x)
        for conv in self.encoder_convs:
            h = jax.nn.leaky_relu(conv(h), 0.2)
        stats = self.to_latent(h.reshape(h.shape[0], -1))
        return stats[:, : self.config.latent_size], stats[:, self.config.latent_size :]

    def conditioning(self, context: Array, latent: Array) -> Array:
        """The UNet's cond `(N, P + L)`: the parents' context and the semantic latent."""
        return jnp.concatenate([jnp.asarray(context, jnp.float32), latent], axis=-1)

    def loss(
        self, x: Array, context: Array, key: Array, *, prior_context: Array | None = None
    ) -> tuple[Array, dict[str, Array]]:
        """ε-MSE + kl_weight · KL for images `x (N, H, W, C)` in [-1, 1] and context `(N, P)`."""
        if prior_context is not None:
            raise ValueError(
                "prior_context: the diffusion autoencoder's latent prior N(0, I) does not read "
                "the parents; leave prior_context=None (its conditioning dropout is "
                "config.cond_drop_prob)"
            )
        x = self._check_images(x)
        check_context(context, self.context_dim, x.shape[0])
        key = check_key(key, "key")
        key_latent, key_diffusion = jax.random.split(key)
        mean, log_var = self.encode(x)
        latent = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key_latent, mean.shape)
        eps_mse = ddpm_loss(
            self.unet,
            self.config.noise_schedule(),
            x,
            self.conditioning(context, latent),
            key_diffusion,
            cond_drop_prob=self.config.cond_drop_prob,
        )
        kl = jnp.mean(0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - log_var - 1.0, axis=-1))
        total = eps_mse + jnp.float32(self.config.kl_weight) * kl
        return total, {"eps_mse": eps_mse, "kl": kl}

    def mechanism(self, encoding: ParentEncoding, **options: Any) -> DiffusionMechanism:
        """The image node's structural equation (options: see `DiffusionMechanism`; defaults
        from the config)."""
        c = self.config
        defaults = {
            "num_steps": c.ddim_steps,
            "abduction": c.abduction,
            "strength": c.strength,
            "guidance_scale": c.guidance_scale,
        }
        return DiffusionMechanism(model=self, encoding=encoding, **{**defaults, **options})


@mechanism_dataclass
class DiffusionMechanism(Mechanism):
    """An image node `(N, H, W, C)` in [0, 255] driven by a `DiffusionAutoEncoder`.

    Args:
      model: the diffusion autoencoder.
      encoding: `ParentEncoding` of the node's parents (its names are the parents).
      parents: filled from `encoding`.
      abduction: "invert" (deterministic DDIM inversion; exact abduction) or "renoise"
        (x_s = q_sample with fresh noise from the key; stochastic).
      num_steps: the DDIM chain's length N (≤ the model's training steps).
      strength: the fraction of the chain inverted (or noised) and denoised again, in (0, 1]:
        s = max(round(strength · N), 1) − 1 is the DDIM index of x_s.
      guidance_scale: classifier-free guidance g at decoding: g ε(pa, z) + (1 − g) ε(∅).
      pixel_noise: "abduct" keeps the round trip's residual, so null interventions return the
        image exactly; "none" decodes without it.

    Costs: abduction runs the chain twice (inversion, then decoding for the residual), a
    prediction once; each is one `lax.scan`.
    """

    model: nnx.Module
    encoding: ParentEncoding
    parents: tuple[str, ...] = ()
    abduction: str = "invert"
    num_steps: int = 50
    strength: float = 1.0
    guidance_scale: float = 1.0
    pixel_noise: str = "abduct"
    _static_fields = (
        "parents",
        "encoding",
        "abduction",
        "num_steps",
        "strength",
        "guidance_scale",
        "pixel_noise",
    )

    def __post_init__(self):
        if not isinstance(self.encoding, ParentEncoding):
            raise ValueError(f"encoding: expected a ParentEncoding, got {self.encoding!r}")
        object.__setattr__(self, "parents", self.encoding.names)
        if self.encoding.size != self.model.context_dim:
            raise ValueError(
                f"encoding: the parents encode to {self.encoding.size} numbers, but the image "
                f"model reads a context of {self.model.context_dim}"
            )
        if self.abduction not in ABDUCTIONS:
            raise ValueError(f"abduction: expected one of {ABDUCTIONS}, got {self.abduction!r}")
        if self.pixel_noise not in PIXEL_NOISE:
            raise ValueError(
                f"pixel_noise: expected one of {PIXEL_NOISE}, got {self.pixel_noise!r}"
            )
        total = self.model.config.num_train_steps
        object.__setattr__(self, "num_steps", check_int(self.num_steps, "num_steps", 1, total))
        strength = check_real(self.strength, "strength", 0.0, 1.0, open_low=True)
        object.__setattr__(self, "strength", strength)
        object.__setattr__(
            self, "guidance_scale", check_real(self.guidance_scale, "guidance_scale")
        )

    @property
    def exact_abduction(self) -> bool:  # type: ignore[override]
        return self.abduction == "invert"

    @property
    def start_step(self) -> int:
        """s: the DDIM index of the noise's x (N − 1 is the whole chain)."""
        return max(round(self.strength * self.num_steps), 1) - 1

    def _decode(self, x_s: Array, cond: Array) -> Array:
        return ddim_sample(
            self.model.unet,
            self.model.config.noise_schedule(),
            x_s,
            cond,
            num_steps=self.num_steps,
            guidance_scale=self.guidance_scale,
            start_step=self.start_step,
        )

    def sample_noise(self, key: Array, num_units: int) -> dict[str, Array]:
        if self.start_step != self.num_steps - 1:
            raise ValueError(
                f"strength: sampling from the prior starts at x_T ~ N(0, I) and needs the whole "
                f"chain (strength=1), got strength={self.strength}"
            )
        key = check_key(key, "key")
        num_units = check_int(num_units, "num_units", 1)
        key_latent, key_x = jax.random.split(key)
        shape = (num_units, *self.model.image_shape)
        return {
            "latent": jax.random.normal(key_latent, (num_units, self.model.config.latent_size)),
            "x": jax.random.normal(key_x, shape),
            "pixel": jnp.zeros(shape, jnp.float32),
        }

    def predict(self, noise: Mapping[str, Array], parents: Mapping[str, Array]) -> Array:
        cond = self.model.conditioning(self.encoding(parents), noise["latent"])
        return to_pixels(self._decode(noise["x"], cond) + noise["pixel"])

    def abduct(
        self,
        value: Array,
        parents: Mapping[str, Array],
        key: Array | None = None,
        num_samples: int | None = None,
    ) -> dict[str, Array]:
        x = self.model._check_images(from_pixels(jnp.asarray(value)), "value")
        latent, _ = self.model.encode(x)  # the posterior mean
        cond = self.model.conditioning(self.encoding(parents), latent)
        if self.abduction == "invert":
            noise = self._abduct_state(x, cond, latent, None)
            return self._broadcast_noise(noise, num_samples)
        if key is None:
            raise ValueError(
                "key: re-noising abduction (abduction='renoise') draws fresh noise; pass a key"
            )
        key = check_key(key, "key")
        if num_samples is None:
            return self._abduct_state(x, cond, latent, key)
        num_samples = check_int(num_samples, "num_samples", 1)
        keys = jax.random.split(key, num_samples)
        return jax.vmap(lambda k: self._abduct_state(x, cond, latent, k))(keys)

    def _abduct_state(
        self, x: Array, cond: Array, latent: Array, key: Array | None
    ) -> dict[str, Array]:
        schedule = self.model.config.noise_schedule()
        if key is None:
            x_s = ddim_invert(
                self.model.unet,
                schedule,
                x,
                cond,
                num_steps=self.num_steps,
                end_step=self.start_step,
            )
        else:
            t = int(ddim_timesteps(schedule.num_steps, self.num_steps)[self.start_step])
            steps = jnp.full((x.shape[0],), t, jnp.int32)
            x_s = q_sample(schedule, x, steps, jax.random.normal(key, x.shape))
        if self.pixel_noise == "abduct":
            pixel = x - self._decode(x_s, cond)
        else:
            pixel = jnp.zeros_like(x)
        return {"latent": latent, "x": x_s, "pixel": pixel}
