"""A deep SCM as one NNX module: attribute mechanisms plus an image mechanism, trained jointly.

`DeepSCM` holds a learnable mechanism per node — a softmax table for a categorical root, a
`ConditionalFlow` for a real attribute, any `ImageModel` (HVAE, VAE, ...) for the image — and
`scm()` turns the trained module into an ordinary `SCM`, so sampling, `do`, counterfactuals
and effects are the engine's, not this module's. The attributes and their graph come from a
dataset's specs (`causalvision.data.Dataset.attribute_specs`).

Usage (Morpho digits; not a doctest: a useful deep SCM is a trained one)::

  specs = MorphoDigits.attribute_specs
  config = HVAEConfig(context_dim=DeepSCM.context_dim(specs))
  deep = DeepSCM(specs, HVAE(config, rngs=rngs), rngs=rngs)
  loss, metrics = deep.loss(batch, key)           # batch: attributes (N,) + "image" (N,32,32,1)
  cf = deep.scm().counterfactual(batch, do={"thickness": 4.0})["image"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from causalvision.nn.classifiers import AttributePredictor
from causalvision.nn.flows import ConditionalFlow, FlowMechanism
from causalvision.nn.image_mechanism import ImageModel, ParentEncoding, from_pixels
from causalvision.scm import SCM, Attribute, Categorical

Array = jax.Array

__all__ = ["CounterfactualTuner", "DeepSCM"]


def _check_prior_dropout(
    prior_dropout: Mapping[str, float] | None, by_name: Mapping[str, Attribute], image_model: Any
) -> dict[str, float]:
    rates = dict(prior_dropout or {})
    for name, rate in rates.items():
        if name not in by_name:
            raise ValueError(
                f"prior_dropout: {name!r} is not an attribute; known: {sorted(by_name)}"
            )
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(
                f"prior_dropout[{name!r}]: expected a probability in [0, 1), got {rate}"
            )
    rates = {name: float(rate) for name, rate in rates.items() if rate > 0}
    if rates and not image_model.conditional_prior:
        raise ValueError(
            "prior_dropout: needs an image model with a conditional prior (e.g. an HVAE with "
            f"conditional_prior=True), got {type(image_model).__name__}"
        )
    return rates


class DeepSCM(nnx.Module):
    """Learnable mechanisms for attribute nodes and one image node.

    Args:
      attributes: the attribute nodes, parents before children (a dataset's specs).
      image_model: an `ImageModel` whose `context_dim` is `DeepSCM.context_dim(attributes)`,
        the width of the encoding of all attributes (the image's parents).
      image: the image node's name.
      flow_layers: bijectors of each attribute flow.
      prior_dropout: `{parent: p}`: in training, each image's conditional prior sees that
        parent's encoding zeroed with probability p (causal-gen's conditioning dropout, 1/3 on
        the digit for Morpho). The latents must then carry less of that parent, so the
        decoder learns to draw it from the parents and interventions on it take effect.
        Needs an image model with a conditional prior.
      rngs: initialisation.
    """

    def __init__(
        self,
        attributes: Sequence[Attribute],
        image_model: nnx.Module,
        *,
        image: str = "image",
        flow_layers: Sequence[str] = ("spline", "affine"),
        prior_dropout: Mapping[str, float] | None = None,
        rngs: nnx.Rngs,
    ):
        self.attributes = tuple(attributes)
        self.image = image
        if not isinstance(image_model, ImageModel):
            raise ValueError(
                f"image_model: expected an ImageModel (loss, mechanism, context_dim, ...), got "
                f"{type(image_model).__name__}"
            )
        by_name = {a.name: a for a in self.attributes}
        if len(by_name) != len(self.attributes) or image in by_name:
            raise ValueError(f"attributes: node names must be distinct and not {image!r}")
        self.prior_dropout = _check_prior_dropout(prior_dropout, by_name, image_model)
        seen: set[str] = set()
        flows, logits = {}, {}
        for a in self.attributes:
            unknown = [p for p in a.parents if p not in seen]
            if unknown:
                raise ValueError(
                    f"attributes[{a.name!r}]: parents {unknown} must be listed before it"
                )
            if a.kind == "categorical":
                if a.parents:
                    raise ValueError(f"attributes[{a.name!r}]: categorical nodes must be roots")
                logits[a.name] = nnx.Param(jnp.zeros((a.num_classes,), jnp.float32))
            elif a.kind == "continuous":
                width = self._encoding(a.parents).size if a.parents else 0
                flows[a.name] = ConditionalFlow(
                    1, width, layers=tuple(flow_layers), support=a.support, rngs=rngs
                )
            else:
                raise ValueError(f"attributes[{a.name!r}]: kind must be categorical or continuous")
            seen.add(a.name)
        self.flows = nnx.Dict(flows)
        self.logits = nnx.Dict(logits)
        self.image_encoding = self._encoding(tuple(a.name for a in self.attributes))
        if image_model.context_dim != self.image_encoding.size:
            raise ValueError(
                f"image_model: context_dim is {image_model.context_dim}, but the attributes "
                f"encode to {self.image_encoding.size} numbers"
            )
        self.image_model = image_model

    @staticmethod
    def context_dim(attributes: Sequence[Attribute]) -> int:
        """The width of the image model's context: every attribute encoded, P."""
        return ParentEncoding.from_attributes(attributes).size

    def _encoding(self, names: Sequence[str]) -> ParentEncoding:
        by_name = {a.name: a for a in self.attributes}
        return ParentEncoding.from_attributes([by_name[n] for n in names])

    def parameter_groups(self) -> dict[str, Any]:
        """NNX filters of its parameters by part: "attributes" (flows, tables) and "image"."""
        image = nnx.All(nnx.Param, nnx.PathContains("image_model"))
        return {"image": image, "attributes": nnx.All(nnx.Param, nnx.Not(image))}

    def loss(
        self, batch: Mapping[str, Array], key: Array, *, step: Array | int | None = None
    ) -> tuple[Array, dict[str, Array]]:
        """Image negative ELBO (nats per pixel) plus each attribute's negative log-likelihood.

        Args:
          batch: attributes `(N,)` and the image `(N, H, W, C)` in [0, 255]; optionally
            "labelled" `(N,)` bool for semi-supervised training: the other units' attributes
            count as unobserved (left out of the attributes' likelihoods, unseen by the image
            model, which must accept `labelled`).
          key: for the image model's posterior samples.
          step: the training step, passed on to an image model with a schedule in its loss.
        """
        accepted = getattr(self.image_model, "loss_options", frozenset())
        options: dict[str, Any] = {}
        weights = None
        if "labelled" in batch:
            if "labelled" not in accepted:
                raise ValueError(
                    f"batch['labelled']: semi-supervised training needs an image model that "
                    f"trains on unlabelled images (loss_options with 'labelled', e.g. the "
                    f"diffusion autoencoder), got {type(self.image_model).__name__}"
                )
            options["labelled"] = batch["labelled"]
            weights = jnp.asarray(batch["labelled"]).astype(jnp.float32)
        if step is not None and "step" in accepted:
            options["step"] = step
        metrics = {}
        total = jnp.zeros((), jnp.float32)
        for a in self.attributes:
            value = batch[a.name]
            if a.kind == "categorical":
                log_p = jax.nn.log_softmax(self.logits[a.name][...])
                log_lik = log_p[value.astype(jnp.int32)]
            else:
                context = self._encoding(a.parents)(batch) if a.parents else None
                x = value.astype(jnp.float32)[:, None]
                log_lik = self.flows[a.name].log_prob(x, context)
            if weights is None:
                nll = -jnp.mean(log_lik)
            else:
                nll = -jnp.sum(log_lik * weights) / jnp.maximum(jnp.sum(weights), 1.0)
            metrics[f"{a.name}_nll"] = nll
            total = total + nll
        context = self.image_encoding(batch)
        if self.prior_dropout:
            key, dropout_key = jax.random.split(key)
            mask = self._prior_keep_mask(dropout_key, context.shape[0])
            options["prior_context"] = context * mask
        image_loss, image_metrics = self.image_model.loss(
            from_pixels(batch[self.image]), context, key, **options
        )
        metrics.update({f"image_{k}": v for k, v in image_metrics.items()})
        return total + image_loss, metrics

    def _prior_keep_mask(self, key: Array, num: int) -> Array:
        """`(num, P)` 0/1 mask: a parent's columns are zeroed per image with its probability."""
        encoding, columns = self.image_encoding, []
        for name, width in zip(encoding.names, encoding.widths, strict=True):
            rate = self.prior_dropout.get(name, 0.0)
            if rate > 0:
                key, sub = jax.random.split(key)
                keep = jax.random.bernoulli(sub, 1.0 - rate, (num, 1)).astype(jnp.float32)
            else:
                keep = jnp.ones((num, 1), jnp.float32)
            columns.append(jnp.broadcast_to(keep, (num, width)))
        return jnp.concatenate(columns, axis=1)

    def mechanisms(self, **image_options: Any) -> dict[str, Any]:
        """The trained mechanisms by node name (what `scm()` assembles).

        `image_options` go to the image model's `mechanism`, e.g. `pixel_noise="mean"` for
        a Gaussian decoder (see `GaussianDecoderMechanism`).
        """
        out: dict[str, Any] = {}
        for a in self.attributes:
            if a.kind == "categorical":
                # Logits, not probabilities: a table is validated on the host, logits also
                # pass through jit, so the whole SCM can be built inside a traced loss.
                log_probs = jax.nn.log_softmax(self.logits[a.name][...])
                out[a.name] = Categorical([], logits=log_probs)
            else:
                encoding = self._encoding(a.parents) if a.parents else None
                out[a.name] = FlowMechanism(self.flows[a.name], encoding=encoding)
        out[self.image] = self.image_model.mechanism(self.image_encoding, **image_options)
        return out

    def scm(self, **image_options: Any) -> SCM:
        """The trained model as an ordinary `SCM` (counterfactuals, effects, sampling)."""
        return SCM(self.mechanisms(**image_options))


class CounterfactualTuner(nnx.Module):
    """A trained `DeepSCM` under counterfactual fine-tuning (causal-gen's constrained objective).

    Holds the deep SCM, a frozen attribute predictor that scores counterfactual images, and
    the raw Lagrange multiplier of the ELBO constraint.
    """

    def __init__(self, deep_scm: DeepSCM, predictor: AttributePredictor):
        self.deep = deep_scm
        self.predictor = predictor
        self.multiplier_raw = nnx.Param(jnp.zeros((), jnp.float32))

    def scm(self, **image_options: Any) -> SCM:
        """The tuned deep SCM as an ordinary `SCM` (see `DeepSCM.scm`)."""
        return self.deep.scm(**image_options)

    def parameter_groups(self) -> dict[str, Any]:
        """ "image" (the deep SCM's image model), "multiplier" and "frozen" (everything else)."""
        image = self.deep.parameter_groups()["image"]
        multiplier = nnx.All(nnx.Param, nnx.PathContains("multiplier_raw"))
        return {
            "image": image,
            "multiplier": multiplier,
            "frozen": nnx.All(nnx.Param, nnx.Not(nnx.Any(image, multiplier))),
        }
