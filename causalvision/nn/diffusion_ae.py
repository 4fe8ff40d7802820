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

from causalvision.graph import CausalGraph
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
from causalvision.nn.latent_scm import LatentSCM
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

    The causal encoder (CausalDiffAE) is on when `causal_variables` names parents: each gets
    a latent block of `block_size`, the blocks follow a `LatentSCM` over `causal_edges`
    (`hidden` width `latent_scm_hidden`), and a label-aligned prior pulls block i to its
    parent's standardised value m_i: `label_weight` · ½ Σ (z_i − m_i)², i.e. KL(N(z_i, I) ‖
    N(m_i, I)). The UNet then reads the causal parents only through their blocks: cond =
    [the other parents' context; z blocks; a free latent of `latent_size` (may be 0)]. Both
    KL terms ramp linearly from 0 over `kl_anneal_steps` training steps (0: no ramp).
    `context_layout` `((name, width), ...)` names the context's columns; a deep SCM fills it
    and `causal_edges` (`CausalGraph.project` of its graph onto the causal variables).

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
    causal_variables: tuple[str, ...] = ()
    causal_edges: tuple[tuple[str, str], ...] = ()
    context_layout: tuple[tuple[str, int], ...] = ()
    block_size: int = 8
    latent_scm_hidden: int = 32
    label_weight: float = 1.0
    kl_anneal_steps: int = 0

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
            cond_size=self.cond_size,
            num_groups=self.num_groups,
            zero_init=self.zero_init,
        )

    @property
    def latent_width(self) -> int:
        """The encoder's output width: every block and the free latent, V·B + L."""
        return len(self.causal_variables) * self.block_size + self.latent_size

    @property
    def cond_size(self) -> int:
        """The UNet's conditioning width: context, less the causal columns, and the latent."""
        return self.context_dim - len(self.causal_variables) + self.latent_width

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
    causal = bool(config.causal_variables)
    check_int(config.latent_size, "config.latent_size", 0 if causal else 1)
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
    check_int(config.kl_anneal_steps, "config.kl_anneal_steps", 0)
    _validate_causal(config)


def _validate_causal(config: DiffusionAutoEncoderConfig) -> None:
    layout = tuple(tuple(entry) for entry in config.context_layout)
    for entry in layout:
        if len(entry) != 2 or not isinstance(entry[0], str):
            raise ValueError(f"config.context_layout: expected (name, width) pairs, got {entry!r}")
        check_int(entry[1], "config.context_layout", 1)
    if layout and sum(width for _, width in layout) != config.context_dim:
        raise ValueError(
            f"config.context_layout: the widths sum to {sum(w for _, w in layout)}, but "
            f"context_dim is {config.context_dim}"
        )
    variables = tuple(config.causal_variables)
    if not variables:
        if config.causal_edges:
            raise ValueError("config.causal_edges: set, but config.causal_variables is empty")
        return
    if not layout:
        raise ValueError(
            "config.context_layout: the causal encoder reads each causal variable's column of "
            "the context; name the columns as ((name, width), ...) (a deep SCM fills it)"
        )
    widths = dict(layout)
    for name in variables:
        if widths.get(name) != 1:
            raise ValueError(
                f"config.causal_variables: {name!r} must be a continuous parent (one context "
                f"column); the context holds {list(layout)}"
            )
    if len(set(variables)) != len(variables):
        raise ValueError(f"config.causal_variables: duplicates in {list(variables)}")
    for edge in config.causal_edges:
        if len(edge) != 2 or not set(edge) <= set(variables):
            raise ValueError(
                f"config.causal_edges: expected (parent, child) pairs of causal variables "
                f"{list(variables)}, got {edge!r}"
            )
    check_int(config.block_size, "config.block_size", 1)
    check_int(config.latent_scm_hidden, "config.latent_scm_hidden", 1)
    check_real(config.label_weight, "config.label_weight", 0.0)


class DiffusionAutoEncoder(nnx.Module):
    """A diffusion autoencoder image model: encoder → z, UNet ε_θ(x_t, t, [pa; z]).

    Args:
      config: sizes and training settings (`DiffusionAutoEncoderConfig`).
      rngs: parameter initialisation.

    Usage (not a doctest: even a tiny model's counterfactual compiles for seconds on a CPU)::

      model = DiffusionAutoEncoder(DiffusionAutoEncoder.Config(context_dim=3), rngs=nnx.Rngs(0))
      loss, metrics = model.loss(x, context, key)      # x (N, 32, 32, 1) in [-1, 1]
      scm = SCM({..., "image": model.mechanism(encoding, num_steps=50)})
    """

    Config: ClassVar[type] = DiffusionAutoEncoderConfig
    conditional_prior: ClassVar[bool] = False
    loss_options: ClassVar[frozenset[str]] = frozenset({"step", "labelled"})

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
            cells, 2 * config.latent_width, kernel_init=lecun_normal(1.0), rngs=rngs
        )
        self.unet = UNet(config.unet_config(), rngs=rngs)
        self.latent_scm = (
            LatentSCM(
                CausalGraph(config.causal_edges, nodes=config.causal_variables),
                config.block_size,
                hidden=config.latent_scm_hidden,
                rngs=rngs,
            )
            if config.causal_variables
            else None
        )
        if self.latent_scm is not None:
            columns, start = {}, 0
            for name, width in config.context_layout:
                columns[name], start = start, start + width
            # Static column indices: the blocks' labels, and the context the UNet still reads.
            self.label_columns = tuple(columns[name] for name in self.latent_scm.variables)
            self.other_columns = tuple(
                k for k in range(config.context_dim) if k not in self.label_columns
            )

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

    @property
    def causal_variables(self) -> tuple[str, ...]:
        """The causal encoder's block order (the latent SCM's topological order); () if off."""
        return () if self.latent_scm is None else self.latent_scm.variables

    def encode(self, x: Array) -> tuple[Array, Array]:
        """q(u | x): mean and log-variance `(N, V·B + L)` each, for images `(N, H, W, C)` in
        [-1, 1]: the blocks' exogenous noise u (causal encoder) and the free latent."""
        h = self._check_images(x)
        for conv in self.encoder_convs:
            h = jax.nn.leaky_relu(conv(h), 0.2)
        stats = self.to_latent(h.reshape(h.shape[0], -1))
        width = self.config.latent_width
        return stats[:, :width], stats[:, width:]

    def semantic_latent(self, noise: Array) -> Array:
        """The latent the UNet reads `(N, V·B + L)` from the encoder's u: the latent SCM's
        blocks z = f(Aᵀ z) + u, flattened, then the free latent (without a causal encoder, u
        itself)."""
        if self.latent_scm is None:
            return noise
        blocks, free = self._split(noise)
        return jnp.concatenate([self.latent_scm(blocks).reshape(len(blocks), -1), free], -1)

    def label_means(self, context: Array) -> Array:
        """m `(N, V)`: each block's label, its parent's standardised value in the context."""
        return jnp.asarray(context, jnp.float32)[:, list(self.label_columns)]

    def _split(self, latent: Array) -> tuple[Array, Array]:
        """(blocks `(N, V, B)`, free `(N, L)`) of a latent vector `(N, V·B + L)`."""
        size = len(self.causal_variables) * self.config.block_size
        blocks = latent[:, :size].reshape(len(latent), -1, self.config.block_size)
        return blocks, latent[:, size:]

    def _label_offsets(self, context: Array) -> Array:
        """The label-aligned prior's mean of the latent `(N, V·B + L)` (0 on the free part)."""
        means = jnp.repeat(self.label_means(context), self.config.block_size, axis=1)
        return jnp.pad(means, ((0, 0), (0, self.config.latent_size)))

    def exogenous_latent(self, latent: Array, context: Array) -> Array:
        """The latent's part the parents do not explain: z − m for the blocks (the free latent
        as is), the exogenous noise a counterfactual carries over `(N, V·B + L)`."""
        if self.latent_scm is None:
            return latent
        return latent - self._label_offsets(context)

    def endogenous_latent(self, noise: Array, context: Array) -> Array:
        """Inverse of `exogenous_latent`: the blocks at the parents' labels plus the noise."""
        if self.latent_scm is None:
            return noise
        return noise + self._label_offsets(context)

    def conditioning(self, context: Array, latent: Array) -> Array:
        """The UNet's cond `(N, cond_size)`: the parents' context (less the causal variables'
        columns, which reach it through their blocks) and the semantic latent."""
        context = jnp.asarray(context, jnp.float32)
        if self.latent_scm is not None:
            context = context[:, list(self.other_columns)]
        return jnp.concatenate([context, latent], axis=-1)

    def kl_ramp(self, step: Array | int | None) -> Array:
        """The KL terms' weight factor: min(1, step / kl_anneal_steps); 1 without a step."""
        steps = self.config.kl_anneal_steps
        if step is None or steps == 0:
            return jnp.ones((), jnp.float32)
        return jnp.minimum(jnp.asarray(step, jnp.float32) / jnp.float32(steps), 1.0)

    def loss(
        self,
        x: Array,
        context: Array,
        key: Array,
        *,
        prior_context: Array | None = None,
        step: Array | int | None = None,
        labelled: Array | None = None,
    ) -> tuple[Array, dict[str, Array]]:
        """ε-MSE + ramp · (kl_weight · KL(q(u | x) ‖ N(0, I)) + label_weight · label KL).

        Args:
          x: images `(N, H, W, C)` in [-1, 1].
          context: the parents' context `(N, P)`.
          key: posterior samples, diffusion times and noise, conditioning dropout.
          prior_context: refused (the latent prior does not read the parents).
          step: the training step, for the KL ramp (`kl_anneal_steps`); None: full weight.
          labelled: `(N,)` bool, semi-supervised training: units whose parents are known.
            The others train with the context unseen (zeros, as conditioning dropout) and
            without the label-aligned term. Default: every unit labelled.

        KLs are summed over latent dimensions and averaged over (labelled) units.
        """
        if prior_context is not None:
            raise ValueError(
                "prior_context: the diffusion autoencoder's latent prior does not read the "
                "parents; leave prior_context=None (its conditioning dropout is "
                "config.cond_drop_prob)"
            )
        x = self._check_images(x)
        num = x.shape[0]
        check_context(context, self.context_dim, num)
        context = jnp.asarray(context, jnp.float32)
        key = check_key(key, "key")
        mask = jnp.ones((num,), jnp.float32)
        if labelled is not None:
            if tuple(jnp.shape(labelled)) != (num,):
                raise ValueError(
                    f"labelled: expected shape ({num},) (one flag per image), got "
                    f"{tuple(jnp.shape(labelled))}"
                )
            mask = jnp.asarray(labelled).astype(jnp.float32)
        key_latent, key_diffusion = jax.random.split(key)
        mean, log_var = self.encode(x)
        noise = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key_latent, mean.shape)
        latent = self.semantic_latent(noise)
        eps_mse = ddpm_loss(
            self.unet,
            self.config.noise_schedule(),
            x,
            self.conditioning(context * mask[:, None], latent),
            key_diffusion,
            cond_drop_prob=self.config.cond_drop_prob,
        )
        kl = jnp.mean(0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - log_var - 1.0, axis=-1))
        ramp = self.kl_ramp(step)
        total = eps_mse + ramp * jnp.float32(self.config.kl_weight) * kl
        metrics = {"eps_mse": eps_mse, "kl": kl, "kl_ramp": ramp}
        if self.latent_scm is not None:
            offsets = self.exogenous_latent(latent, context)
            blocks, _ = self._split(offsets)
            per_unit = 0.5 * jnp.sum(blocks**2, axis=(1, 2))
            label_kl = jnp.sum(per_unit * mask) / jnp.maximum(jnp.sum(mask), 1.0)
            total = total + ramp * jnp.float32(self.config.label_weight) * label_kl
            metrics["label_kl"] = label_kl
        return total, metrics

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
        layout = tuple(zip(self.encoding.names, self.encoding.widths, strict=True))
        expected = tuple(tuple(entry) for entry in self.model.config.context_layout)
        if expected and layout != expected:
            raise ValueError(
                f"encoding: the parents encode as {list(layout)}, but the image model reads "
                f"its context as {list(expected)} (config.context_layout)"
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
            "latent": jax.random.normal(key_latent, (num_units, self.model.config.latent_width)),
            "x": jax.random.normal(key_x, shape),
            "pixel": jnp.zeros(shape, jnp.float32),
        }

    def predict(self, noise: Mapping[str, Array], parents: Mapping[str, Array]) -> Array:
        context = self.encoding(parents)
        latent = self.model.endogenous_latent(noise["latent"], context)
        cond = self.model.conditioning(context, latent)
        return to_pixels(self._decode(noise["x"], cond) + noise["pixel"])

    def abduct(
        self,
        value: Array,
        parents: Mapping[str, Array],
        key: Array | None = None,
        num_samples: int | None = None,
    ) -> dict[str, Array]:
        x = self.model._check_images(from_pixels(jnp.asarray(value)), "value")
        mean, _ = self.model.encode(x)  # the posterior mean
        context = self.encoding(parents)
        latent = self.model.semantic_latent(mean)
        cond = self.model.conditioning(context, latent)
        latent = self.model.exogenous_latent(latent, context)
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
