"""Image models as SCM mechanisms: the protocol a deep SCM's image node is driven through.

An image model is an NNX module implementing `ImageModel`: it trains on images given the
context vector of its parents (`loss`) and hands the SCM engine its structural equation as a
`Mechanism` (`mechanism(encoding)`: abduct, predict, sample). The engine never knows which
kind of model it drives, so a diffusion model or an object-centric model is a peer of the
HVAE. Built-in image models are found by name in `IMAGE_MODELS` (the lookup rule of
`causalvision.lookup`); ``"package.module:Class"`` names any other.

Images are in [-1, 1] inside a model (`from_pixels`) and in [0, 255] as the node's values
(`to_pixels`). The parents reach a model as one context vector, `ParentEncoding`.

One family is built in: latent-variable models with a Gaussian pixel decoder (`VAE`,
`HVAE`), which implement `GaussianDecoderModel` and share `GaussianDecoderMechanism`, the
structural equation `x = clip(loc(ε, pa) + exp(log_scale(ε, pa)) · u, 0, 255)` with exogenous
noise `(ε, u)`, u standard normal per pixel, as deepscm and causal-gen read a VAE as an SCM.
Abduction gives ε from the encoder and `u = (x - loc) / scale` exactly, so intervening on
nothing reproduces the image; a counterfactual re-decodes with the new parents and carries
the pixel residual over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from flax import nnx

from causalvision.scm import Attribute
from causalvision.scm.mechanisms import Mechanism, mechanism_dataclass

Array = jax.Array
Noise = Any

__all__ = [
    "IMAGE_MODELS",
    "GaussianDecoderMechanism",
    "GaussianDecoderModel",
    "ImageModel",
    "ParentEncoding",
    "check_context",
    "from_pixels",
    "to_pixels",
]

#: Built-in image models by name (module paths, imported when first looked up).
IMAGE_MODELS: dict[str, str] = {
    "diffusion": "causalvision.nn.diffusion_ae:DiffusionAutoEncoder",
    "hvae": "causalvision.nn.hvae:HVAE",
    "vae": "causalvision.nn.vae:VAE",
}


def to_pixels(x: Array) -> Array:
    """Model space [-1, 1] -> pixel values [0, 255] (float)."""
    return jnp.clip((x + 1.0) * 127.5, 0.0, 255.0)


def from_pixels(images: Array) -> Array:
    """Pixel values [0, 255] (uint8 or float) -> model space [-1, 1] float32."""
    return images.astype(jnp.float32) / 127.5 - 1.0


@runtime_checkable
class ImageModel(Protocol):
    """What a deep SCM needs of an NNX image model.

    Attributes:
      Config: the model's typed settings, a dataclass with (at least) the fields
        `image_shape` and `context_dim`, which a deep SCM fills from its dataset and parents;
        the model is built as `Model(config, rngs=rngs)`. `Config.tiny(image_shape,
        context_dim)` gives settings that compile in seconds, which the conformance tests
        (tests/test_image_models.py) run every registered model with.
      image_shape: `(H, W, C)` of its images.
      context_dim: P, the width of the parents' context vector it reads.
      conditional_prior: whether its prior reads the parents, so that conditioning dropout
        (`loss(prior_context=...)`) applies.

    Methods:
      loss(x, context, key, *, prior_context=None) -> (scalar, {name: scalar}): the training
        objective for images `x (N, H, W, C)` in [-1, 1] and context `(N, P)`;
        `prior_context` `(N, P)` replaces the context in the prior only (models without a
        conditional prior refuse it). A model may take more keywords, named in its class
        attribute `loss_options` (a frozenset; absent means none): "step" (the training
        step, for schedules such as KL annealing) and "labelled" (`(N,)` bool: the units
        whose parents are observed, for semi-supervised training).
      mechanism(encoding, **options) -> Mechanism: the image node's structural equation for
        parents encoded by `encoding` (a `ParentEncoding` of width `context_dim`).
    """

    Config: ClassVar[type]
    image_shape: tuple[int, int, int]
    context_dim: int
    conditional_prior: bool

    def loss(
        self, x: Array, context: Array, key: Array, *, prior_context: Array | None = None
    ) -> tuple[Array, dict[str, Array]]: ...

    def mechanism(self, encoding: ParentEncoding, **options: Any) -> Mechanism: ...


class GaussianDecoderModel(Protocol):
    """A latent-variable image model with a Gaussian pixel decoder (VAE, HVAE).

    - `sample_latent_noise(key, n)`: standard-normal exogenous latent noise ε (a pytree);
    - `abduct_latent_noise(x, context, key)`: ε for observed images, under the model's
      posterior (the posterior mean when `key` is None);
    - `decode(ε, context) -> (loc, log_scale)`: the pixel distribution given latents and
      parents, each `(N, H, W, C)` in [-1, 1] units.
    """

    image_shape: tuple[int, int, int]

    def sample_latent_noise(self, key: Array, num: int) -> Noise: ...

    def abduct_latent_noise(self, x: Array, context: Array, key: Array | None) -> Noise: ...

    def decode(self, noise: Noise, context: Array) -> tuple[Array, Array]: ...


def check_context(context: Array, width: int, num: int | None, argument: str = "context") -> None:
    """Raise `ValueError` unless `context` is `(num, width)` (any N if `num` is None).

    Shapes are static, so the check is free under `jit`; a context of the wrong width would
    otherwise broadcast silently or fail deep inside a matrix product.
    """
    shape = tuple(context.shape)
    if len(shape) != 2 or shape[1] != width or (num is not None and shape[0] != num):
        expected = f"({'N' if num is None else num}, {width})"
        raise ValueError(
            f"{argument}: expected the parents' context vector of shape {expected}, got {shape}"
        )


class ParentEncoding:
    """How parent values become the model's context vector `(N, P)` float32.

    Args:
      spec: one entry per parent, in order: `(name, "categorical", num_classes)` (one-hot) or
        `(name, "continuous", (offset, scale))` (standardised as `(v - offset) / scale`).

    Hashable, so it can be static configuration of a jitted mechanism.
    """

    @classmethod
    def from_attributes(cls, attributes: Sequence[Attribute]) -> ParentEncoding:
        """The encoding of these attributes: one-hot classes, standardised values."""
        return cls([attribute.encoding_entry() for attribute in attributes])

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
class GaussianDecoderMechanism(Mechanism):
    """An image node `(N, H, W, C)` in [0, 255] driven by a Gaussian-decoder latent model.

    Args:
      model: an NNX module implementing `GaussianDecoderModel`.
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
        width = getattr(self.model, "context_dim", self.encoding.size)
        if width != self.encoding.size:
            raise ValueError(
                f"encoding: the parents encode to {self.encoding.size} numbers, but the image "
                f"model reads a context of {width}"
            )

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

    def log_likelihood(self, value: Array, parents: Mapping[str, Array]) -> Array:
        """`log p(x, ε̂ | parents)` per unit `(N,)`: a plug-in for the intractable
        `log p(x | parents)`.

        The decoder's discretised Gaussian log density of the image (`value` in [0, 255],
        `(N, H, W, C)`) at the abducted latent noise ε̂ (the posterior mean given these
        parents), plus the standard-normal log density of ε̂: the joint density at the
        latents' mode, a Laplace approximation without its curvature term. Parents that
        explain the image need latents neither far from the prior nor leaving a large
        pixel residual. Deterministic, so a unit's importance weights differ only by the
        proposed parents.
        """
        from causalvision.nn.hvae import discretized_gaussian_log_likelihood

        x = from_pixels(value)
        context = self.encoding(parents)
        latent = self.model.abduct_latent_noise(x, context, None)
        loc, log_scale = self.model.decode(latent, context)
        num = x.shape[0]
        log_px = discretized_gaussian_log_likelihood(x, loc, log_scale).reshape(num, -1).sum(-1)
        log_prior = sum(
            jax.scipy.stats.norm.logpdf(eps).reshape(num, -1).sum(-1)
            for eps in jax.tree.leaves(latent)
        )
        return log_px + log_prior

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
