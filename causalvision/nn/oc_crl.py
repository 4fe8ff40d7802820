"""Encoders for OC-CRL's sparse-perturbation training (Mansouri et al., ICLR 2024; REFERENCE §6.3).

- `OCCRLModel`: a `SlotAttentionAutoEncoder` (CNN encoder, slot attention, spatial-broadcast
  decoder) plus a projection head, an MLP slot `(D,)` → z `(P,)` applied to every slot. A pair
  (x₁, x₂) is encoded with x₂'s slot attention started from x₁'s final slots (`pair`), so that
  slot i of x₂ tends to track slot i of x₁.
- `FlatEncoder`: the non-slot encoder: a CNN to one flat latent (K·P numbers, or K·D to
  match the slots' size), a projection head to z `(K·P,)`, reshaped to `(K, P)`, and
  optionally the slot model's decoder on the latent, for the same reconstruction term. Its K
  rows are ordered by whatever the network learns, so for scenes of exchangeable objects it
  faces the permutation problem by design (OC-CRL's motivation).

Both return z `(B, K, P)`, to be fed to `causalvision.losses.sparse_offset_loss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from causalvision.nn.slots import (
    SlotAttentionAutoEncoder,
    SlotAttentionAutoEncoderConfig,
    SpatialBroadcastDecoder,
)
from causalvision.validation import check_int

Array = jax.Array

__all__ = ["FlatEncoder", "OCCRLModel"]


class _Head(nnx.Module):
    """MLP `in → hidden (ReLU) → out` on the last axis."""

    def __init__(self, features: int, hidden: int, out: int, *, rngs: nnx.Rngs):
        self.dense_in = nnx.Linear(features, hidden, rngs=rngs)
        self.dense_out = nnx.Linear(hidden, out, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.dense_out(jax.nn.relu(self.dense_in(x)))


def _check_images(images: Any, shape: tuple[int, int, int]) -> Array:
    got = tuple(np.shape(images))
    if len(got) != 4 or got[1:] != shape:
        raise ValueError(f"images: expected shape (B, {', '.join(map(str, shape))}), got {got}")
    return jnp.asarray(images)


class OCCRLModel(nnx.Module):
    """Slot attention autoencoder + projection head: images `(B, H, W, C)` in [-1, 1] to slot
    latents z `(B, K, P)` (and the autoencoder's reconstruction, masks and slots).

    Args:
      config: the autoencoder's sizes (`SlotAttentionAutoEncoderConfig`); K = num_slots.
      num_latents: P, the size of each slot's z.
      head_hidden: the projection head's hidden width.
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        config: SlotAttentionAutoEncoderConfig,
        num_latents: int,
        *,
        head_hidden: int = 64,
        rngs: nnx.Rngs,
    ):
        if not isinstance(config, SlotAttentionAutoEncoderConfig):
            raise ValueError(
                f"config: expected a SlotAttentionAutoEncoderConfig, got {type(config).__name__}"
            )
        self.num_latents = check_int(num_latents, "num_latents", 1)
        head_hidden = check_int(head_hidden, "head_hidden", 1)
        self.autoencoder = SlotAttentionAutoEncoder(config, rngs=rngs)
        self.head = _Head(config.slot_size, head_hidden, self.num_latents, rngs=rngs)

    @property
    def config(self) -> SlotAttentionAutoEncoderConfig:
        return self.autoencoder.config

    @property
    def num_slots(self) -> int:
        return self.autoencoder.config.num_slots

    def __call__(
        self, images: Array, *, key: Array | None = None, slots_init: Array | None = None
    ) -> dict[str, Array]:
        """The autoencoder's dict ("reconstruction", "masks" `(B, K, H, W, 1)`, "slots",
        "attention", ...) plus "z" `(B, K, P)` and "mse" (the reconstruction's mean squared
        error, a scalar)."""
        images = _check_images(images, self.autoencoder.image_shape)
        out = self.autoencoder(images, key=key, slots_init=slots_init)
        mse = jnp.mean((out["reconstruction"] - images) ** 2)
        return {**out, "z": self.head(out["slots"]), "mse": mse}

    def pair(
        self, first: Array, second: Array, *, key: Array | None = None, detach_init: bool = True
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        """Encode x₁ (`key` for its initial slots), then x₂ with slot attention started from
        x₁'s final slots (gradient-stopped when `detach_init`). Returns both dicts."""
        out1 = self(first, key=key)
        init = jax.lax.stop_gradient(out1["slots"]) if detach_init else out1["slots"]
        _check_images(second, self.autoencoder.image_shape)
        if np.shape(second)[0] != np.shape(first)[0]:
            raise ValueError(
                f"second: expected {np.shape(first)[0]} images like first, got "
                f"{np.shape(second)[0]}"
            )
        return out1, self(second, slots_init=init)


class FlatEncoder(nnx.Module):
    """A non-slot encoder: CNN → one flat latent → projection head → z `(B, K·P)` reshaped to
    `(B, K, P)`; optionally a spatial-broadcast decoder of the latent, for the same
    reconstruction term as the slot model.

    The CNN is `len(widths)` 3x3 convolutions (ReLU) with stride 2 each, flattened, then a
    dense layer to `hidden` (ReLU) and one to the latent (`latent_size` numbers, default K·P;
    K·D makes it as large as the slot model's K slots of D); the head is an MLP latent →
    `head_hidden` → K·P. With `decoder_widths` the latent is decoded to an RGB image by a
    `SpatialBroadcastDecoder` (`decoder_initial`, `decoder_kernel`), the slot decoder's
    architecture with a single "slot" and no alpha channel.

    Args:
      resolution: image side; must be divisible by 2**len(widths).
      channels: image channels.
      num_slots: K.
      num_latents: P.
      widths: the convolutions' widths.
      hidden: the dense layer's width before the latent.
      latent_size: the latent's width (default K·P).
      head_hidden: the projection head's hidden width.
      decoder_widths: the decoder's transposed convolutions (None: no decoder).
      decoder_initial: the decoder's broadcast grid side.
      decoder_kernel: the decoder's kernel side.
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        resolution: int,
        channels: int,
        num_slots: int,
        num_latents: int,
        *,
        widths: Sequence[int] = (32, 32, 32),
        hidden: int = 128,
        latent_size: int | None = None,
        head_hidden: int = 64,
        decoder_widths: Sequence[int] | None = None,
        decoder_initial: int = 8,
        decoder_kernel: int = 3,
        rngs: nnx.Rngs,
    ):
        self.resolution = check_int(resolution, "resolution", 1)
        self.channels = check_int(channels, "channels", 1)
        self.num_slots = check_int(num_slots, "num_slots", 1)
        self.num_latents = check_int(num_latents, "num_latents", 1)
        if not (isinstance(widths, tuple | list) and len(widths) >= 1):
            raise ValueError(f"widths: expected a non-empty sequence of ints, got {widths!r}")
        widths = tuple(check_int(w, "widths", 1) for w in widths)
        if self.resolution % (2 ** len(widths)):
            raise ValueError(
                f"resolution: expected a multiple of 2**len(widths) = {2 ** len(widths)}, "
                f"got {resolution}"
            )
        hidden = check_int(hidden, "hidden", 1)
        head_hidden = check_int(head_hidden, "head_hidden", 1)
        size = self.num_slots * self.num_latents
        latent_size = size if latent_size is None else check_int(latent_size, "latent_size", 1)
        convs, cin = [], self.channels
        for width in widths:
            convs.append(nnx.Conv(cin, width, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs))
            cin = width
        self.convs = nnx.List(convs)
        side = self.resolution // 2 ** len(widths)
        self.dense = nnx.Linear(side * side * cin, hidden, rngs=rngs)
        self.to_latent = nnx.Linear(hidden, latent_size, rngs=rngs)
        self.head = _Head(latent_size, head_hidden, size, rngs=rngs)
        self.decoder = (
            None
            if decoder_widths is None
            else SpatialBroadcastDecoder(
                latent_size,
                self.resolution,
                self.channels,
                initial=decoder_initial,
                widths=decoder_widths,
                kernel=decoder_kernel,
                rngs=rngs,
            )
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.resolution, self.resolution, self.channels)

    def __call__(self, images: Array) -> dict[str, Array]:
        """The latent `(B, latent_size)` (before the head) as "latent" and "z" `(B, K, P)`;
        with a decoder also "reconstruction" `(B, H, W, C)` and "mse" (a scalar)."""
        images = _check_images(images, self.image_shape)
        h = images
        for conv in self.convs:
            h = jax.nn.relu(conv(h))
        latent = self.to_latent(jax.nn.relu(self.dense(h.reshape(h.shape[0], -1))))
        z = self.head(latent).reshape(-1, self.num_slots, self.num_latents)
        out = {"latent": latent, "z": z}
        if self.decoder is not None:
            reconstruction = self.decoder(latent)
            out["reconstruction"] = reconstruction
            out["mse"] = jnp.mean((reconstruction - images) ** 2)
        return out

    def pair(self, first: Array, second: Array) -> tuple[dict[str, Array], dict[str, Array]]:
        """Both images encoded independently (a flat encoder has no slots to carry over)."""
        return self(first), self(second)
