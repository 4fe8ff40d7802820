"""Image classifiers and regressors: the pseudo-oracles that read attributes off images."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class ConvEncoder(nnx.Module):
    """Strided 3x3 convolutions (each halving the resolution) then global average pooling.

    Maps images `(N, H, W, C)` to features `(N, widths[-1])`; `feature_map` stops before the
    pooling.
    """

    def __init__(self, in_channels: int, widths: Sequence[int], *, rngs: nnx.Rngs):
        if not widths:
            raise ValueError("widths: expected at least one convolution width, got none")
        channels = (in_channels, *widths)
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
                for a, b in itertools.pairwise(channels)
            ]
        )
        self.norms = nnx.List([nnx.GroupNorm(w, num_groups=min(8, w), rngs=rngs) for w in widths])

    def feature_map(self, images: jax.Array) -> jax.Array:
        """The last convolution's activations `(N, H / 2^L, W / 2^L, widths[-1])`."""
        h = images
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = jax.nn.gelu(norm(conv(h)))
        return h

    def __call__(self, images: jax.Array) -> jax.Array:
        return jnp.mean(self.feature_map(images), axis=(1, 2))


class AttributePredictor(nnx.Module):
    """Predicts categorical attributes (logits) and continuous ones (standardised) from an image.

    Args:
      image_shape: `(H, W, C)` of the inputs.
      num_classes: `{attribute: number of classes}` for categorical attributes.
      continuous: names of real-valued attributes, each predicted as one standardised number.
      widths: convolution widths of the encoder.
      hidden: width of the dense layer shared by all heads.
      standardise: `{attribute: (offset, scale)}` of the continuous targets, so
        `natural(predictions)` can return values in the attributes' own units.

    Returns from `__call__(images)` `(N, H, W, C)` float: a dict of `(N, K)` logits per
    categorical attribute and `(N,)` per continuous one.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: dict[str, int],
        continuous: Sequence[str],
        *,
        widths: Sequence[int] = (32, 64, 128),
        hidden: int = 128,
        standardise: dict[str, tuple[float, float]] | None = None,
        rngs: nnx.Rngs,
    ):
        if len(image_shape) != 3:
            raise ValueError(f"image_shape: expected (H, W, C), got {tuple(image_shape)}")
        if not num_classes and not continuous:
            raise ValueError("num_classes, continuous: need at least one attribute to predict")
        self.num_classes = dict(num_classes)
        self.continuous = tuple(continuous)
        standardise = standardise or {}
        self.standardise = tuple(
            (n, tuple(float(v) for v in standardise.get(n, (0.0, 1.0)))) for n in self.continuous
        )
        self.encoder = ConvEncoder(image_shape[-1], widths, rngs=rngs)
        self.hidden = nnx.Linear(widths[-1], hidden, rngs=rngs)
        outputs = sum(self.num_classes.values()) + len(self.continuous)
        self.head = nnx.Linear(hidden, outputs, rngs=rngs)

    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        out = self.head(jax.nn.gelu(self.hidden(self.encoder(images))))
        predictions, start = {}, 0
        for name, k in self.num_classes.items():
            predictions[name] = out[:, start : start + k]
            start += k
        for name in self.continuous:
            predictions[name] = out[:, start]
            start += 1
        return predictions

    def natural(self, predictions: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Predictions in the attributes' units: class indices and de-standardised values."""
        out = {name: jnp.argmax(predictions[name], -1) for name in self.num_classes}
        for name, (offset, scale) in self.standardise:
            out[name] = predictions[name] * jnp.float32(scale) + jnp.float32(offset)
        return out
