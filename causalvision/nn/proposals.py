"""An attribute predictor as the proposal of image-alone counterfactuals of a deep SCM.

`SCM.counterfactual({"image": x}, do=..., inference=Inference(method="importance",
proposal=PredictorProposal(...)))` infers the image's missing parents by importance sampling
(`causalvision.scm.importance`): the predictor proposes them (causal-gen's amortised
abduction of parents), the deep SCM weighs each proposal by its own prior of the parents and
its image model's likelihood, and the image's noise is then abducted under the drawn parents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from causalvision.nn.classifiers import AttributePredictor
from causalvision.scm import Attribute, lenient_promotion

Array = jax.Array

__all__ = ["PredictorProposal"]


def _bounds(attribute: Attribute) -> tuple[float | None, float | None]:
    """The support of a continuous attribute as (low, high), None for unbounded."""
    support = attribute.support
    if support is None:
        return None, None
    if support[0] == "positive":
        return float(support[1]), None
    if support[0] == "interval":
        return float(support[1]), float(support[2])
    raise ValueError(f"attributes[{attribute.name!r}].support: unknown kind {support[0]!r}")


class PredictorProposal:
    """`q(parents | image)` from a trained `AttributePredictor`, one unit at a time.

    Categorical attributes are drawn from the predictor's softmax (at `temperature`), mixed
    with a `uniform` share so that no class is ruled out. Continuous ones are drawn from a
    normal around the predictor's point estimate with standard deviation `scales[name]` (in
    the attribute's units), truncated to the attribute's support. The predictor has no
    variance head: fit the scales on labelled images with `fit_scales` (the root mean square
    error of its estimates); the default is half the attribute's standardisation scale. The
    attributes are drawn independently given the image.

    A `proposal` of `Inference(method="importance")`: called with the factual's observed
    values, it proposes every attribute the predictor reads that the factual omits.

    Args:
      predictor: the trained predictor (e.g. an `attribute_predictor` run's model).
      attributes: the attribute specs of the deep SCM's nodes (supports, standardisation).
      image: the image node's name.
      scales: `{continuous attribute: standard deviation}` of the proposal.
      temperature: divides the categorical logits (> 1 widens the proposal).
      uniform: the share of the uniform distribution in each categorical proposal, in [0, 1).
      input_scale: images (node values) are divided by it before the predictor reads them
        (255: the `attribute_predictor` task trains on images in [0, 1]).
    """

    def __init__(
        self,
        predictor: AttributePredictor,
        attributes: Sequence[Attribute],
        *,
        image: str = "image",
        scales: Mapping[str, float] | None = None,
        temperature: float = 1.0,
        uniform: float = 0.05,
        input_scale: float = 255.0,
    ):
        if not isinstance(predictor, AttributePredictor):
            raise ValueError(
                f"predictor: expected an AttributePredictor, got {type(predictor).__name__}"
            )
        by_name = {a.name: a for a in attributes}
        predicted = [*predictor.num_classes, *predictor.continuous]
        unknown = [n for n in predicted if n not in by_name]
        if unknown:
            raise ValueError(
                f"attributes: the predictor reads {unknown}, which have no spec among "
                f"{sorted(by_name)}"
            )
        for name, k in predictor.num_classes.items():
            if by_name[name].num_classes != k:
                raise ValueError(
                    f"attributes[{name!r}]: {by_name[name].num_classes} classes, but the "
                    f"predictor's head has {k}"
                )
        if not float(temperature) > 0:
            raise ValueError(f"temperature: expected > 0, got {temperature!r}")
        if not 0.0 <= float(uniform) < 1.0:
            raise ValueError(f"uniform: expected a share in [0, 1), got {uniform!r}")
        if not float(input_scale) > 0:
            raise ValueError(f"input_scale: expected > 0, got {input_scale!r}")
        scales = dict(scales or {})
        stray = sorted(set(scales) - set(predictor.continuous))
        if stray:
            raise ValueError(
                f"scales: {stray} are not continuous attributes the predictor reads "
                f"({list(predictor.continuous)})"
            )
        for name, scale in scales.items():
            if not (np.isfinite(float(scale)) and float(scale) > 0):
                raise ValueError(f"scales[{name!r}]: expected a positive number, got {scale!r}")
        self.predictor = predictor
        self.attributes = {n: by_name[n] for n in predicted}
        self.image = image
        self.scales = {
            n: float(scales.get(n, 0.5 * by_name[n].standardise[1])) for n in predictor.continuous
        }
        self.temperature, self.uniform = float(temperature), float(uniform)
        self.input_scale = float(input_scale)

    def __repr__(self) -> str:
        return (
            f"PredictorProposal(attributes={list(self.attributes)}, scales={self.scales}, "
            f"temperature={self.temperature}, uniform={self.uniform})"
        )

    def point_estimates(self, images: Array) -> dict[str, Array]:
        """The predictor's reading of `images` `(N, H, W, C)` (node values): class indices
        (int32) and values in the attributes' units, each `(N,)`."""
        raw = self.predictor(jnp.asarray(images, jnp.float32) / jnp.float32(self.input_scale))
        out = self.predictor.natural(raw)
        return {
            n: v.astype(jnp.int32) if n in self.predictor.num_classes else v for n, v in out.items()
        }

    def fit_scales(
        self, images: Any, values: Mapping[str, Any], batch_size: int = 256
    ) -> PredictorProposal:
        """A copy whose continuous scales are the predictor's root mean square error on
        labelled `images` `(N, H, W, C)` with true attribute `values` `(N,)`."""
        images = np.asarray(images, np.float32)
        missing = [n for n in self.predictor.continuous if n not in values]
        if missing:
            raise ValueError(f"values: expected the true values of {missing} too")
        estimates = [
            self.point_estimates(images[s : s + batch_size])
            for s in range(0, len(images), batch_size)
        ]
        scales = {}
        for name in self.predictor.continuous:
            guess = np.concatenate([np.asarray(e[name]) for e in estimates])
            truth = np.asarray(values[name], np.float64)
            if truth.shape != guess.shape:
                raise ValueError(
                    f"values[{name!r}]: expected shape {guess.shape} (one per image), got "
                    f"{truth.shape}"
                )
            scales[name] = float(max(np.sqrt(np.mean((guess - truth) ** 2)), 1e-6))
        return PredictorProposal(
            self.predictor,
            list(self.attributes.values()),
            image=self.image,
            scales=scales,
            temperature=self.temperature,
            uniform=self.uniform,
            input_scale=self.input_scale,
        )

    def distributions(self, images: Array, names: Sequence[str]) -> dict[str, dist.Distribution]:
        """`q(name | image)` for each of `names`, batch shape `(N,)`."""
        raw = self.predictor(jnp.asarray(images, jnp.float32) / jnp.float32(self.input_scale))
        natural = self.predictor.natural(raw)
        out: dict[str, dist.Distribution] = {}
        with lenient_promotion():
            for name in names:
                if name in self.predictor.num_classes:
                    k = self.predictor.num_classes[name]
                    probs = jax.nn.softmax(raw[name] / jnp.float32(self.temperature), axis=-1)
                    mixed = (1.0 - self.uniform) * probs + self.uniform / k
                    out[name] = dist.Categorical(probs=mixed)
                else:
                    low, high = _bounds(self.attributes[name])
                    out[name] = dist.TruncatedNormal(
                        natural[name], jnp.float32(self.scales[name]), low=low, high=high
                    )
        return out

    def __call__(
        self, observed: Mapping[str, Array], key: Array, num_proposals: int
    ) -> tuple[dict[str, Array], Array]:
        """`num_proposals` draws `(K, N)` of every attribute `observed` omits, and their
        joint log density `(K, N)` under the proposal."""
        if self.image not in observed:
            raise ValueError(
                f"observed: the proposal reads the image node {self.image!r}, which the "
                f"factual omits (it has {sorted(observed)})"
            )
        names = [n for n in self.attributes if n not in observed]
        laws = self.distributions(observed[self.image], names)
        values: dict[str, Array] = {}
        log_q = jnp.zeros((num_proposals, observed[self.image].shape[0]), jnp.float32)
        keys = jax.random.split(key, max(len(names), 1))
        with lenient_promotion():
            for name, k in zip(names, keys, strict=False):
                draw = laws[name].sample(k, (num_proposals,))
                log_q = log_q + laws[name].log_prob(draw).astype(jnp.float32)
                if name in self.predictor.num_classes:
                    values[name] = draw.astype(jnp.int32)
                else:
                    values[name] = draw.astype(jnp.float32)
        return values, log_q
