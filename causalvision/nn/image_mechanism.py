"""Deep image mechanisms: any latent-variable image model as an SCM `Mechanism`.

A deep image model (conditional VAE, ladder HVAE, ...) implements `LatentImageModel`:

- `sample_latent_noise(key, n)`: standard-normal exogenous latent noise ε (a pytree);
- `abduct_latent_noise(x, context, key)`: ε for observed images, under the model's
  posterior (the posterior mean when `key` is None);
- `decode(ε, context) -> (loc, log_scale)`: the pixel distribution given latents and parents;
- `loss(x, context, key) -> (scalar, metrics)`: the training objective (negative ELBO).

Images are in [-1, 1] inside the model. `ImageMechanism` wraps such a model as the structural
equation `x = clip(loc(ε, pa) + exp(log_scale(ε, pa)) · u, 0, 255)` with exogenous noise
`(ε, u)`, u standard normal per pixel, as deepscm and causal-gen read a VAE as an SCM.
Abduction gives ε from the encoder and `u = (x - loc) / scale` exactly, so intervening on
nothing reproduces the image; a counterfactual re-decodes with the new parents and carries
the pixel residual over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from causalvision.scm.mechanisms import Mechanism, mechanism_dataclass

Array = jax.Array
Noise = Any

__all__ = ["ImageMechanism", "LatentImageModel", "ParentEncoding", "from_pixels", "to_pixels"]


def to_pixels(x: Array) -> Array:
    """Model space [-1, 1] -> pixel values [0, 255] (float)."""
    return jnp.clip((x + 1.0) * 127.5, 0.0, 255.0)


def from_pixels(images: Array) -> Array:
    """Pixel values [0, 255] (uint8 or float) -> model space [-1, 1] float32."""
    return images.astype(jnp.float32) / 127.5 - 1.0


class LatentImageModel(Protocol):
    """What `ImageMechanism` needs of an NNX image model (see the module docstring)."""

    image_shape: tuple[int, int, int]

    def sample_latent_noise(self, key: Array, num: int) -> Noise: ...

    def abduct_latent_noise(self, x: Array, context: Array, key: Array | None) -> Noise: ...

    def decode(self, noise: Noise, context: Array) -> tuple[Array, Array]: ...

    def loss(self, x: Array, context: Array, key: Array) -> tuple[Array, dict[str, Array]]: ...


class ParentEncoding:
    """How parent values become the model's context vector `(N, P)` float32.

    Args:
      spec: one entry per parent, in order: `(name, "categorical", num_classes)` (one-hot) or
        `(name, "continuous", (offset, scale))` (standardised as `(v - offset) / scale`).

    Hashable, so it can be static configuration of a jitted mechanism.
    """

    def __init__(self, spec: Sequence[tuple[str, str, Any]]):
        entries = []
        for entry in spec:
            if len(entry) != 3:
                raise ValueError(f"spec: expected (name, kind, setting) entries, got {entry!r}")
            name, kind, setting = entry
            if kind == "categorical":
                if not isinstance(setting, int) or setting < 2:
                    raise ValueError(f"spec[{name!r}]: expected num_classes >= 2, got {setting!r}")
                entries.append((name, kind, int(setting)))
            elif kind == "continuous":
                offset, scale = setting
                if not float(scale) > 0:
                    raise ValueError(f"spec[{name!r}]: expected a positive scale, got {scale!r}")
                entries.append((name, kind, (float(offset), float(scale))))
            else:
                raise ValueError(
                    f"spec[{name!r}]: kind must be 'categorical' or 'continuous', got {kind!r}"
                )
        self.spec = tuple(entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.spec)

    @property
    def widths(self) -> tuple[int, ...]:
        """Columns of each parent in the context vector, in `names` order."""
        return tuple(s if k == "categorical" else 1 for _, k, s in self.spec)

    @property
    def size(self) -> int:
        """P, the width of the context vector."""
        return sum(self.widths)

    def __call__(self, parents: Mapping[str, Array]) -> Array:
        columns = []
        for name, kind, setting in self.spec:
            value = jnp.asarray(parents[name])
            if kind == "categorical":
                columns.append(jax.nn.one_hot(value.astype(jnp.int32), setting, dtype=jnp.float32))
            else:
                offset, scale = setting
                standard = (value.astype(jnp.float32) - jnp.float32(offset)) / jnp.float32(scale)
                columns.append(standard[:, None])
        return jnp.concatenate(columns, axis=1)

    def __hash__(self) -> int:
        return hash(self.spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParentEncoding) and other.spec == self.spec

    def __repr__(self) -> str:
        return f"ParentEncoding({list(self.spec)})"


@mechanism_dataclass
class ImageMechanism(Mechanism):
    """An image node `(N, H, W, C)` in [0, 255] driven by a deep latent-variable model.

    Args:
      model: an NNX module implementing `LatentImageModel`.
      encoding: `ParentEncoding` of the node's parents (its names are the parents).
      parents: filled from `encoding`.

      pixel_noise: "abduct" (default) keeps the factual pixel residual u = (x - loc) / scale,
        so null interventions are exact; "mean" predicts the decoder's mean image loc, so a
        counterfactual never inherits the residual (robust when the model's reconstructions
        are poor or its scales change much between parents; null interventions then give
        the reconstruction).

    Noise is `{"latent": ε, "pixel": u}`. Abduction is deterministic (posterior mean of the
    latents), so no key is needed and `counterfactual` is a pure function of the data.
    """

    model: nnx.Module
    encoding: ParentEncoding
    parents: tuple[str, ...] = ()
    pixel_noise: str = "abduct"
    _static_fields = ("parents", "encoding", "pixel_noise")

    def __post_init__(self):
        if not isinstance(self.encoding, ParentEncoding):
            raise ValueError(f"encoding: expected a ParentEncoding, got {self.encoding!r}")
        object.__setattr__(self, "parents", self.encoding.names)
        if self.pixel_noise not in ("abduct", "mean"):
            raise ValueError(f"pixel_noise: expected 'abduct' or 'mean', got {self.pixel_noise!r}")

    def sample_noise(self, key: Array, num_units: int) -> Noise:
        key_latent, key_pixel = jax.random.split(key)
        shape = (num_units, *self.model.image_shape)
        return {
            "latent": self.model.sample_latent_noise(key_latent, num_units),
            "pixel": jax.random.normal(key_pixel, shape, jnp.float32),
        }

    def predict(self, noise: Noise, parents: Mapping[str, Array]) -> Array:
        loc, log_scale = self.model.decode(noise["latent"], self.encoding(parents))
        if self.pixel_noise == "mean":
            return to_pixels(loc)
        return to_pixels(loc + jnp.exp(log_scale) * noise["pixel"])

    def reconstruct(self, value: Array, parents: Mapping[str, Array]) -> Array:
        """The model's mean image `loc` at the abducted latents, in [0, 255]."""
        context = self.encoding(parents)
        latent = self.model.abduct_latent_noise(from_pixels(value), context, None)
        return to_pixels(self.model.decode(latent, context)[0])

    def abduct(
        self,
        value: Array,
        parents: Mapping[str, Array],
        key: Array | None = None,
        num_samples: int | None = None,
    ) -> Noise:
        del key  # deterministic: the posterior mean of the latents
        x = from_pixels(value)
        context = self.encoding(parents)
        latent = self.model.abduct_latent_noise(x, context, None)
        loc, log_scale = self.model.decode(latent, context)
        noise = {"latent": latent, "pixel": (x - loc) * jnp.exp(-log_scale)}
        return self._broadcast_noise(noise, num_samples)
