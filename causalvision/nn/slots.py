"""Slot Attention (Locatello et al. 2020) and its object-discovery autoencoder (REFERENCE §6.1).

- `SlotAttention`: K slots compete for N input features over T iterations. Each iteration
  takes a softmax over the slots (each input is shared out among the slots), renormalises
  each slot's weights over the inputs after adding ε (a weighted mean), and updates the slots
  with a GRU and a residual MLP. `implicit_grad=True` stops the gradient before the last
  iteration (OC-CRL's approximate implicit differentiation, REFERENCE §6.3).
- `SoftPositionEmbedding`: the grid `[x, y, 1 - x, 1 - y]` through a dense layer, added.
- `SpatialBroadcastDecoder`: vectors to images (a broadcast grid, a position embedding,
  transposed convolutions).
- `SlotAttentionAutoEncoder`: CNN encoder, slot attention, and a spatial-broadcast decoder
  that gives each slot an RGB image and an alpha logit; the masks are a softmax over the
  slots and the reconstruction is their mixture.

Differences from the TF2 reference code: Flax's defaults initialise the dense and
convolution kernels (LeCun normal, not Glorot uniform) and set the LayerNorm ε (1e-6, not
Keras' 1e-3); `nnx.GRUCell` has no bias on the recurrent candidate term `W_hn h` (Keras'
`reset_after` GRU has one).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from causalvision.nn.cpu_kernels import conv_transpose_same, spatial_conv
from causalvision.validation import check_int, check_key, check_real

Array = jax.Array

__all__ = [
    "SLOT_INITIALIZERS",
    "SlotAttention",
    "SlotAttentionAutoEncoder",
    "SlotAttentionAutoEncoderConfig",
    "SoftPositionEmbedding",
    "SpatialBroadcastDecoder",
]

SLOT_INITIALIZERS = ("gaussian", "learned")


def _check_initializer(value: Any, argument: str) -> str:
    if value not in SLOT_INITIALIZERS:
        raise ValueError(f"{argument}: expected one of {SLOT_INITIALIZERS}, got {value!r}")
    return value


class SlotAttention(nnx.Module):
    """Slot Attention: K slots of size D read from N inputs `(B, N, D_in)` over T iterations.

    With S the slots, k = LN(X) W_k, v = LN(X) W_v (no biases), each iteration computes
    q = LN(S) W_q / √D, A = softmax over slots of k qᵀ `(B, N, K)`, W = (A + ε) normalised
    over the inputs, U = Wᵀ v, S ← GRU(input U, state S), S ← S + MLP(LN(S)).

    Args:
      in_features: D_in, the width of the inputs.
      num_slots: K.
      slot_size: D, the width of the slots and of q, k, v.
      num_iterations: T.
      mlp_hidden: hidden width of the residual MLP (ReLU).
      epsilon: ε added to the attention before the weighted mean.
      initializer: "gaussian": S₀ = μ + exp(log σ) ⊙ N(0, I), with μ and log σ `(1, 1, D)`
        (Glorot uniform) shared by every slot and fresh noise from the caller's key;
        "learned": S₀ is a learned `(K, D)` parameter (`slot_embeddings`), without noise.
      implicit_grad: stop the gradient of the slots before the last iteration, so that
        gradients flow through the last iteration only (the initialiser's parameters then
        receive none).
      straight_through_init: with `implicit_grad`, pass the gradient that reaches the last
        iteration's input slots straight through to the initial slots, S ← sg(S) + S₀ −
        sg(S₀) (BO-QSA, Jia et al. 2023), so that a learned initialiser is trained; with
        "learned" slots this breaks the slots' symmetry from the first step and speeds up
        object discovery.
      rngs: parameter initialisation.

    Permuting the initial slots permutes the output slots and the attention's slot axis
    identically; permuting the inputs leaves the slots unchanged.
    """

    def __init__(
        self,
        in_features: int,
        num_slots: int,
        slot_size: int,
        *,
        num_iterations: int = 3,
        mlp_hidden: int = 128,
        epsilon: float = 1e-8,
        initializer: str = "gaussian",
        implicit_grad: bool = False,
        straight_through_init: bool = False,
        rngs: nnx.Rngs,
    ):
        self.in_features = check_int(in_features, "in_features", 1)
        self.num_slots = check_int(num_slots, "num_slots", 1)
        self.slot_size = check_int(slot_size, "slot_size", 1)
        self.num_iterations = check_int(num_iterations, "num_iterations", 1)
        mlp_hidden = check_int(mlp_hidden, "mlp_hidden", 1)
        self.epsilon = check_real(epsilon, "epsilon", 0.0)
        self.initializer = _check_initializer(initializer, "initializer")
        if not isinstance(implicit_grad, bool):
            raise ValueError(f"implicit_grad: expected a bool, got {implicit_grad!r}")
        self.implicit_grad = implicit_grad
        if not isinstance(straight_through_init, bool):
            raise ValueError(
                f"straight_through_init: expected a bool, got {straight_through_init!r}"
            )
        if straight_through_init and not implicit_grad:
            raise ValueError(
                "straight_through_init: needs implicit_grad=True (it replaces the gradient "
                "that the stop before the last iteration cuts)"
            )
        self.straight_through_init = straight_through_init

        d = self.slot_size
        self.norm_inputs = nnx.LayerNorm(self.in_features, rngs=rngs)
        self.project_k = nnx.Linear(self.in_features, d, use_bias=False, rngs=rngs)
        self.project_v = nnx.Linear(self.in_features, d, use_bias=False, rngs=rngs)
        self.norm_slots = nnx.LayerNorm(d, rngs=rngs)
        self.project_q = nnx.Linear(d, d, use_bias=False, rngs=rngs)
        self.gru = nnx.GRUCell(d, d, rngs=rngs)
        self.norm_mlp = nnx.LayerNorm(d, rngs=rngs)
        self.mlp_in = nnx.Linear(d, mlp_hidden, rngs=rngs)
        self.mlp_out = nnx.Linear(mlp_hidden, d, rngs=rngs)
        if self.initializer == "gaussian":
            glorot = nnx.initializers.glorot_uniform()
            self.slots_mu = nnx.Param(glorot(rngs.params(), (1, 1, d), jnp.float32))
            self.slots_log_sigma = nnx.Param(glorot(rngs.params(), (1, 1, d), jnp.float32))
        else:
            normal = nnx.initializers.normal(1.0)
            self.slot_embeddings = nnx.Param(normal(rngs.params(), (self.num_slots, d)))

    # -- initial slots --------------------------------------------------------------------------

    def initial_slots(self, batch_size: int, *, key: Array | None = None) -> Array:
        """S₀ `(B, K, D)`: the Gaussian initialiser's draw (needs `key`) or the learned slots."""
        batch_size = check_int(batch_size, "batch_size", 1)
        shape = (batch_size, self.num_slots, self.slot_size)
        if self.initializer == "learned":
            return jnp.broadcast_to(self.slot_embeddings[...][None], shape)
        if key is None:
            raise ValueError(
                "key: the Gaussian slot initialiser draws fresh noise; pass "
                "key=jax.random.key(seed) (or slots_init)"
            )
        key = check_key(key, "key")
        mu, log_sigma = self.slots_mu[...], self.slots_log_sigma[...]
        return mu + jnp.exp(log_sigma) * jax.random.normal(key, shape, mu.dtype)

    # -- one iteration --------------------------------------------------------------------------

    def _iterate(self, slots: Array, k: Array, v: Array, mask: Array | None) -> tuple[Array, Array]:
        """One update of the slots `(B, K, D)`; also the attention over slots `(B, N, K)`."""
        q = self.project_q(self.norm_slots(slots)) / jnp.float32(math.sqrt(self.slot_size))
        attention = jax.nn.softmax(jnp.einsum("bnd,bkd->bnk", k, q), axis=-1)
        weights = attention + jnp.float32(self.epsilon)
        if mask is not None:
            valid = mask[:, :, None]
            attention = jnp.where(valid, attention, 0.0)
            weights = jnp.where(valid, weights, 0.0)
        total = jnp.sum(weights, axis=1, keepdims=True)
        # A fully padded example has no inputs: its update is zero, not 0 / 0.
        weights = weights / jnp.where(total > 0, total, 1.0)
        updates = jnp.einsum("bnk,bnd->bkd", weights, v)
        slots, _ = self.gru(slots, updates)
        slots = slots + self.mlp_out(jax.nn.relu(self.mlp_in(self.norm_mlp(slots))))
        return slots, attention

    # -- forward --------------------------------------------------------------------------------

    def __call__(
        self,
        inputs: Array,
        *,
        key: Array | None = None,
        mask: Array | None = None,
        slots_init: Array | None = None,
        num_iterations: int | None = None,
        return_attention: bool = False,
    ) -> Array | tuple[Array, Array]:
        """The slots after T iterations.

        Args:
          inputs: `(B, N, D_in)` features.
          key: the noise of the Gaussian initialiser (needed unless `slots_init` is given or
            the initialiser is "learned").
          mask: `(B, N)` bool, True for valid inputs; padded inputs get zero attention and do
            not affect the slots (an example without valid inputs keeps zero updates).
          slots_init: `(B, K, D)` initial slots, in place of the initialiser (e.g. the slots
            of a previous frame).
          num_iterations: T for this call (default: the layer's).
          return_attention: also return the last iteration's attention.

        Returns:
          slots `(B, K, D)`; with `return_attention`, `(slots, attention)` where attention
          `(B, N, K)` is the softmax over slots (each valid input's row sums to 1; padded
          inputs' rows are 0).
        """
        inputs, mask = self._check_inputs(inputs, mask)
        batch = inputs.shape[0]
        iterations = (
            self.num_iterations
            if num_iterations is None
            else check_int(num_iterations, "num_iterations", 1)
        )
        if slots_init is None:
            slots = self.initial_slots(batch, key=key)
        else:
            expected = (batch, self.num_slots, self.slot_size)
            if tuple(np.shape(slots_init)) != expected:
                raise ValueError(
                    f"slots_init: expected shape (B, K, D) = {expected}, got "
                    f"{tuple(np.shape(slots_init))}"
                )
            slots = jnp.asarray(slots_init)

        x = self.norm_inputs(inputs)
        k, v = self.project_k(x), self.project_v(x)
        attention, initial = None, slots
        for t in range(iterations):
            if self.implicit_grad and t == iterations - 1:
                slots = jax.lax.stop_gradient(slots)
                if self.straight_through_init:
                    slots = slots + (initial - jax.lax.stop_gradient(initial))
            slots, attention = self._iterate(slots, k, v, mask)
        return (slots, attention) if return_attention else slots

    def _check_inputs(self, inputs: Array, mask: Array | None) -> tuple[Array, Array | None]:
        shape = tuple(np.shape(inputs))
        if len(shape) != 3 or shape[-1] != self.in_features:
            raise ValueError(
                f"inputs: expected shape (B, N, {self.in_features}) (in_features = "
                f"{self.in_features}), got {shape}"
            )
        inputs = jnp.asarray(inputs)
        if mask is None:
            return inputs, None
        if tuple(np.shape(mask)) != shape[:2]:
            raise ValueError(
                f"mask: expected shape (B, N) = {shape[:2]} (one flag per input), got "
                f"{tuple(np.shape(mask))}"
            )
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise ValueError(f"mask: expected a bool array (True = valid), got dtype {mask.dtype}")
        # Padded inputs are zeroed too, so that non-finite padding cannot reach the gradients.
        return jnp.where(mask[:, :, None], inputs, 0.0).astype(inputs.dtype), mask


# -------------------------------------------------------------------------------------------------
# Position embedding.


def _resolution(value: Any, argument: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, tuple | list) and len(value) == 2):
        raise ValueError(f"{argument}: expected an int or (height, width), got {value!r}")
    return tuple(check_int(v, argument, 1) for v in value)


def _position_grid(resolution: tuple[int, int]) -> np.ndarray:
    """`(H, W, 4)` float32 grid `[y, x, 1 - y, 1 - x]`, each coordinate from 0 to 1."""
    ranges = [np.linspace(0.0, 1.0, num=r, dtype=np.float32) for r in resolution]
    grid = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1)
    return np.concatenate([grid, 1.0 - grid], axis=-1)


class SoftPositionEmbedding(nnx.Module):
    """Adds a learned projection of the position grid to feature maps `(B, H, W, channels)`.

    The grid holds each pixel's `[y, x, 1 - y, 1 - x]` with coordinates from 0 to 1; a dense
    layer `4 -> channels` maps it to an embedding added at every position.
    """

    def __init__(self, channels: int, resolution: int | Sequence[int], *, rngs: nnx.Rngs):
        self.channels = check_int(channels, "channels", 1)
        self.resolution = _resolution(resolution, "resolution")
        self.dense = nnx.Linear(4, self.channels, rngs=rngs)

    def embedding(self) -> Array:
        """The embedding `(H, W, channels)` added to every map."""
        return self.dense(jnp.asarray(_position_grid(self.resolution)))

    def __call__(self, features: Array) -> Array:
        shape = tuple(np.shape(features))
        expected = (*self.resolution, self.channels)
        if len(shape) != 4 or shape[1:] != expected:
            raise ValueError(
                f"features: expected shape (B, {', '.join(map(str, expected))}), got {shape}"
            )
        return features + self.embedding()[None]


# -------------------------------------------------------------------------------------------------
# Spatial broadcast decoder.


def _check_widths(value: Any, argument: str) -> tuple[int, ...]:
    if not (isinstance(value, tuple | list) and len(value) >= 1):
        raise ValueError(f"{argument}: expected a non-empty tuple of positive ints, got {value!r}")
    return tuple(check_int(v, argument, 1) for v in value)


class SpatialBroadcastDecoder(nnx.Module):
    """Vectors `(M, D)` to images `(M, H, W, out_channels)` (Watters et al. 2019).

    Each vector is broadcast to an `initial` x `initial` grid, a learned position embedding is
    added, and transposed convolutions (`kernel`, SAME, ReLU between) of `widths` follow: the
    first log2(resolution / initial) with stride 2, the rest stride 1, then a 3x3 one to
    `out_channels`. The slot autoencoder decodes every slot with it (RGB and an alpha logit);
    `FlatEncoder` decodes its one latent (RGB).

    Args:
      features: D.
      resolution: the output side; resolution / initial must be a power of 2.
      out_channels: channels of the output.
      initial: side of the broadcast grid.
      widths: the transposed convolutions' widths (at least log2(resolution / initial)).
      kernel: their kernel side.
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        features: int,
        resolution: int,
        out_channels: int,
        *,
        initial: int = 8,
        widths: Sequence[int] = (64, 64, 64, 64),
        kernel: int = 5,
        rngs: nnx.Rngs,
    ):
        self.features = check_int(features, "features", 1)
        self.resolution = check_int(resolution, "resolution", 1)
        out_channels = check_int(out_channels, "out_channels", 1)
        self.initial = check_int(initial, "initial", 1)
        widths = _check_widths(widths, "widths")
        kernel = check_int(kernel, "kernel", 1)
        ratio = self.resolution // self.initial
        if self.resolution % self.initial or ratio & (ratio - 1):
            raise ValueError(
                f"initial: expected resolution / initial to be a power of 2, got "
                f"{self.resolution} / {self.initial}"
            )
        upsamplings = round(math.log2(ratio))
        if upsamplings > len(widths):
            raise ValueError(
                f"widths: {upsamplings} stride-2 layers take {self.initial} to "
                f"{self.resolution}, got {len(widths)} widths"
            )
        self.position = SoftPositionEmbedding(self.features, self.initial, rngs=rngs)
        convs, cin = [], self.features
        for i, width in enumerate(widths):
            stride = 2 if i < upsamplings else 1
            convs.append(
                nnx.ConvTranspose(
                    cin,
                    width,
                    (kernel, kernel),
                    strides=(stride, stride),
                    padding="SAME",
                    rngs=rngs,
                )
            )
            cin = width
        convs.append(nnx.ConvTranspose(cin, out_channels, (3, 3), padding="SAME", rngs=rngs))
        self.convs = nnx.List(convs)

    def __call__(self, vectors: Array) -> Array:
        shape = tuple(np.shape(vectors))
        if len(shape) != 2 or shape[1] != self.features:
            raise ValueError(f"vectors: expected shape (M, {self.features}), got {shape}")
        r = self.initial
        h = jnp.broadcast_to(vectors[:, None, None, :], (shape[0], r, r, self.features))
        h = self.position(h)
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            h = conv_transpose_same(conv, h)
            if i < last:
                h = jax.nn.relu(h)
        return h


# -------------------------------------------------------------------------------------------------
# The autoencoder.


@dataclasses.dataclass(frozen=True)
class SlotAttentionAutoEncoderConfig:
    """Sizes of a slot-attention autoencoder (defaults: the paper's, for 64x64 images).

    The encoder is `len(encoder_widths)` convolutions (`encoder_kernel`, SAME, ReLU) with
    `encoder_strides` (the paper: all 1); strides of 2 shrink the N = (resolution /
    Π strides)² inputs of slot attention and the encoder's cost. The decoder broadcasts each
    slot to `decoder_initial` x `decoder_initial`, adds a position embedding, and runs
    transposed convolutions (`decoder_kernel`, ReLU) of `decoder_widths`: the first
    log2(resolution / decoder_initial) with stride 2, the rest stride 1, then a 3x3 one to
    `channels` + 1 outputs (RGB and the alpha logit).
    """

    resolution: int = 64
    channels: int = 3
    num_slots: int = 7
    slot_size: int = 64
    num_iterations: int = 3
    mlp_hidden: int = 128
    encoder_widths: tuple[int, ...] = (64, 64, 64, 64)
    encoder_kernel: int = 5
    encoder_strides: tuple[int, ...] = (1, 1, 1, 1)
    decoder_initial: int = 8
    decoder_widths: tuple[int, ...] = (64, 64, 64, 64)
    decoder_kernel: int = 5
    initializer: str = "gaussian"
    implicit_grad: bool = False
    straight_through_init: bool = False

    @classmethod
    def tiny(
        cls, resolution: int = 16, channels: int = 3, num_slots: int = 3
    ) -> SlotAttentionAutoEncoderConfig:
        """A few thousand parameters, compiled in seconds (tests, smoke runs)."""
        return cls(
            resolution=resolution,
            channels=channels,
            num_slots=num_slots,
            slot_size=8,
            num_iterations=2,
            mlp_hidden=16,
            encoder_widths=(8, 8),
            encoder_kernel=3,
            encoder_strides=(1, 1),
            decoder_initial=resolution // 4,
            decoder_widths=(8, 8),
            decoder_kernel=3,
        )

    @property
    def feature_resolution(self) -> int:
        """Side of the encoder's feature map: N = feature_resolution² inputs per image."""
        return self.resolution // math.prod(self.encoder_strides)

    @property
    def upsamplings(self) -> int:
        """Number of stride-2 decoder layers."""
        return round(math.log2(self.resolution // self.decoder_initial))


def _validate(config: SlotAttentionAutoEncoderConfig) -> None:
    for name in (
        "resolution",
        "channels",
        "num_slots",
        "slot_size",
        "num_iterations",
        "mlp_hidden",
        "encoder_kernel",
        "decoder_initial",
        "decoder_kernel",
    ):
        check_int(getattr(config, name), f"config.{name}", 1)
    widths = _check_widths(config.encoder_widths, "config.encoder_widths")
    strides = _check_widths(config.encoder_strides, "config.encoder_strides")
    if len(strides) != len(widths):
        raise ValueError(
            f"config.encoder_strides: expected one stride per encoder layer ({len(widths)}), "
            f"got {config.encoder_strides!r}"
        )
    if config.resolution % math.prod(strides):
        raise ValueError(
            f"config.encoder_strides: their product {math.prod(strides)} must divide "
            f"config.resolution = {config.resolution}"
        )
    _check_widths(config.decoder_widths, "config.decoder_widths")
    ratio = config.resolution // config.decoder_initial
    if config.resolution % config.decoder_initial or ratio & (ratio - 1):
        raise ValueError(
            f"config.decoder_initial: expected resolution / decoder_initial to be a power of 2, "
            f"got {config.resolution} / {config.decoder_initial}"
        )
    if config.upsamplings > len(config.decoder_widths):
        raise ValueError(
            f"config.decoder_widths: {config.upsamplings} stride-2 layers take "
            f"{config.decoder_initial} to {config.resolution}, got {len(config.decoder_widths)} "
            "widths"
        )
    _check_initializer(config.initializer, "config.initializer")
    if not isinstance(config.implicit_grad, bool):
        raise ValueError(f"config.implicit_grad: expected a bool, got {config.implicit_grad!r}")
    if config.straight_through_init not in (False, True) or (
        config.straight_through_init and not config.implicit_grad
    ):
        raise ValueError(
            "config.straight_through_init: expected a bool, and True only with "
            f"implicit_grad=True, got {config.straight_through_init!r}"
        )


class SlotAttentionAutoEncoder(nnx.Module):
    """Unsupervised object discovery: images `(B, H, W, C)` in [-1, 1] to K slots and back.

    Encoder: convolutions (ReLU), soft position embedding, flatten to N inputs, LayerNorm, MLP
    (ReLU), slot attention. Decoder: each slot broadcast to a `decoder_initial` grid plus a
    position embedding, transposed convolutions up to the image, giving per slot an image
    and an alpha logit; the masks are the softmax of the alpha logits over the slots and the
    reconstruction is Σ_k mask_k · rgb_k. The slots are decoded as one batch of B K maps.

    Args:
      config: sizes (see `SlotAttentionAutoEncoderConfig`).
      rngs: parameter initialisation.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> config = SlotAttentionAutoEncoder.Config.tiny(resolution=16, num_slots=3)
      >>> model = SlotAttentionAutoEncoder(config, rngs=nnx.Rngs(0))
      >>> images = jnp.zeros((2, 16, 16, 3), jnp.float32)  # (B, H, W, C) in [-1, 1]
      >>> loss = nnx.jit(SlotAttentionAutoEncoder.loss)  # compiled once, as in a train step
      >>> mse, out = loss(model, images, jax.random.key(1))  # train on mse
      >>> out["masks"].shape, out["slots"].shape  # (B, K, H, W, 1), (B, K, D)
      ((2, 3, 16, 16, 1), (2, 3, 8))
      >>> round(float(out["masks"].sum(axis=1).min()), 3)  # each pixel's masks sum to 1
      1.0
    """

    Config: ClassVar[type] = SlotAttentionAutoEncoderConfig

    def __init__(
        self,
        config: SlotAttentionAutoEncoderConfig = SlotAttentionAutoEncoderConfig(),
        *,
        rngs: nnx.Rngs,
    ):
        _validate(config)
        self.config = config
        c = config
        features = c.encoder_widths[-1]
        convs, cin = [], c.channels
        for width, stride in zip(c.encoder_widths, c.encoder_strides, strict=True):
            kernel = (c.encoder_kernel, c.encoder_kernel)
            convs.append(
                nnx.Conv(cin, width, kernel, strides=(stride, stride), padding="SAME", rngs=rngs)
            )
            cin = width
        self.encoder_convs = nnx.List(convs)
        self.encoder_position = SoftPositionEmbedding(features, c.feature_resolution, rngs=rngs)
        self.encoder_norm = nnx.LayerNorm(features, rngs=rngs)
        self.encoder_mlp_in = nnx.Linear(features, features, rngs=rngs)
        self.encoder_mlp_out = nnx.Linear(features, features, rngs=rngs)
        self.slot_attention = SlotAttention(
            features,
            c.num_slots,
            c.slot_size,
            num_iterations=c.num_iterations,
            mlp_hidden=c.mlp_hidden,
            initializer=c.initializer,
            implicit_grad=c.implicit_grad,
            straight_through_init=c.straight_through_init,
            rngs=rngs,
        )
        self.decoder = SpatialBroadcastDecoder(
            c.slot_size,
            c.resolution,
            c.channels + 1,
            initial=c.decoder_initial,
            widths=c.decoder_widths,
            kernel=c.decoder_kernel,
            rngs=rngs,
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.config.resolution, self.config.resolution, self.config.channels)

    def _check_images(self, images: Array) -> Array:
        shape = tuple(np.shape(images))
        if len(shape) != 4 or shape[1:] != self.image_shape:
            raise ValueError(
                f"images: expected shape (B, {', '.join(map(str, self.image_shape))}), got {shape}"
            )
        return jnp.asarray(images)

    def encode(self, images: Array) -> Array:
        """Slot attention's inputs `(B, N, D_in)`, N = feature_resolution²."""
        h = self._check_images(images)
        for conv in self.encoder_convs:
            h = jax.nn.relu(spatial_conv(conv, h) if conv.strides == (1, 1) else conv(h))
        h = self.encoder_position(h)
        h = h.reshape(h.shape[0], -1, h.shape[-1])
        return self.encoder_mlp_out(jax.nn.relu(self.encoder_mlp_in(self.encoder_norm(h))))

    def decode(self, slots: Array) -> dict[str, Array]:
        """Images from slots `(B, K, D)`.

        Returns:
          dict of "reconstruction" `(B, H, W, C)`, "masks" `(B, K, H, W, 1)` (softmax over
          slots), "recons" `(B, K, H, W, C)` (each slot's image) and "logits" `(B, K, H, W,
          1)` (the alpha logits).
        """
        c = self.config
        shape = tuple(np.shape(slots))
        if len(shape) != 3 or shape[1:] != (c.num_slots, c.slot_size):
            raise ValueError(
                f"slots: expected shape (B, {c.num_slots}, {c.slot_size}), got {shape}"
            )
        b, k, d = shape
        h = self.decoder(slots.reshape(b * k, d))
        h = h.reshape(b, k, *h.shape[1:])
        recons, logits = h[..., : c.channels], h[..., c.channels :]
        masks = jax.nn.softmax(logits, axis=1)
        return {
            "reconstruction": jnp.sum(masks * recons, axis=1),
            "masks": masks,
            "recons": recons,
            "logits": logits,
        }

    def __call__(
        self, images: Array, *, key: Array | None = None, slots_init: Array | None = None
    ) -> dict[str, Array]:
        """Encode, find slots, decode.

        Args:
          images: `(B, H, W, C)` in [-1, 1].
          key: the noise of the Gaussian slot initialiser (unneeded with `slots_init` or
            the "learned" initialiser).
          slots_init: `(B, K, D)` initial slots (e.g. another image's final slots).

        Returns:
          `decode(slots)`'s dict plus "slots" `(B, K, D)` and "attention" `(B, N, K)` (the
          last iteration's, normalised over slots).
        """
        inputs = self.encode(images)
        slots, attention = self.slot_attention(
            inputs, key=key, slots_init=slots_init, return_attention=True
        )
        return {**self.decode(slots), "slots": slots, "attention": attention}

    def loss(self, images: Array, key: Array | None = None) -> tuple[Array, dict[str, Array]]:
        """Mean squared reconstruction error over pixels and channels, and `__call__`'s dict."""
        out = self(images, key=key)
        return jnp.mean((out["reconstruction"] - self._check_images(images)) ** 2), out
