"""A deep SCM of any dataset: attribute flows plus an image model, trained jointly.

The graph and the attributes come from the dataset's specs; the image model is any
`causalvision.nn.ImageModel`, found by name (`causalvision.nn.IMAGE_MODELS`) or module path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from flax import nnx

from causalvision.data import Dataset
from causalvision.graph import CausalGraph
from causalvision.lookup import resolve
from causalvision.nn import IMAGE_MODELS, DeepSCM, ParentEncoding
from causalvision.scm import Attribute
from causalvision.train.config import Config, structure
from causalvision.train.data import (
    LabelledSubset,
    SelectKeys,
    dataset_of,
    dataset_sources,
    example_keys,
    prepare_examples,
)
from causalvision.train.tasks import TaskSpec
from causalvision.train.trainer import Task
from causalvision.validation import check_real

__all__ = ["TASK", "DeepSCMSettings", "attribute_specs", "counterfactual_evals"]


@dataclasses.dataclass(frozen=True)
class DeepSCMSettings:
    """Model settings of the `deep_scm` task.

    Args:
      image_model: an `IMAGE_MODELS` name ("hvae", "vae") or "package.module:Class".
      image: the image model's settings (its `Config` dataclass, or a dict of its fields);
        `image_shape` and `context_dim` are filled from the dataset.
      prior_dropout: `{parent: p}`, `DeepSCM`'s conditioning dropout (e.g. `{"digit": 1/3}`).
      flow_layers: bijectors of each attribute flow.
      standardise: `{attribute: (offset, scale)}` replacing the dataset's standardisation.
      order: the attributes in the order the model reads them (parents first); default the
        dataset's. The image model's context columns follow it.
      labelled_fraction: semi-supervised training: the share of training examples whose
        attributes are observed (a fixed subset, drawn with `data.seed`); the rest train the
        image model alone. Needs an image model that accepts `labelled` (the diffusion
        autoencoder). 1: fully supervised.
    """

    image_model: str = "hvae"
    image: Any = None
    prior_dropout: dict[str, float] = dataclasses.field(default_factory=dict)
    flow_layers: tuple[str, ...] = ("spline", "affine")
    standardise: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    order: tuple[str, ...] = ()
    labelled_fraction: float = 1.0

    def __post_init__(self):
        model_type = image_model_type(self.image_model)
        image = {} if self.image is None else self.image
        object.__setattr__(self, "image", structure(model_type.Config, image, "model.image"))
        fraction = check_real(self.labelled_fraction, "model.labelled_fraction", 0.0, 1.0)
        if fraction < 1.0 and "labelled" not in getattr(model_type, "loss_options", ()):
            raise ValueError(
                f"model.labelled_fraction: semi-supervised training needs an image model that "
                f"trains on unlabelled images (e.g. 'diffusion'), got {self.image_model!r}"
            )


def image_model_type(name: str) -> type:
    """The image model class `name` stands for."""
    model_type = resolve(name, IMAGE_MODELS, "model.image_model")
    if not isinstance(model_type, type) or not hasattr(model_type, "Config"):
        raise ValueError(
            f"model.image_model: {name!r} is not an image model class with a Config, "
            f"got {model_type!r}"
        )
    return model_type


def attribute_specs(dataset: Dataset, settings: DeepSCMSettings) -> tuple[Attribute, ...]:
    """The dataset's attribute specs in `settings.order`, with `settings.standardise`."""
    known = list(dataset.attributes)
    unknown = sorted(set(settings.standardise) - set(known))
    if unknown:
        raise ValueError(
            f"model.standardise: {unknown} are not attributes of {dataset.name!r}; known: {known}"
        )
    order = settings.order or tuple(known)
    if sorted(order) != sorted(known):
        raise ValueError(f"model.order: expected an order of {known}, got {list(order)}")
    specs = {spec.name: spec for spec in dataset.attribute_specs}
    return tuple(
        dataclasses.replace(specs[name], standardise=tuple(settings.standardise[name]))
        if name in settings.standardise
        else specs[name]
        for name in order
    )


def complete(config: Config, settings: DeepSCMSettings) -> DeepSCMSettings:
    """The image model's image shape and context width, from the dataset; and, for image
    models whose config has them, the context's column layout and the causal encoder's
    edges among its `causal_variables` (the dataset graph's projection onto them)."""
    dataset = dataset_of(config.data)
    specs = attribute_specs(dataset, settings)
    fields = {f.name for f in dataclasses.fields(settings.image)}
    filled: dict[str, Any] = {
        "image_shape": tuple(dataset.image_shape),
        "context_dim": DeepSCM.context_dim(specs),
    }
    if "context_layout" in fields:
        encoding = ParentEncoding.from_attributes(specs)
        filled["context_layout"] = tuple(zip(encoding.names, encoding.widths, strict=True))
    variables = tuple(getattr(settings.image, "causal_variables", ()))
    if variables:
        filled["causal_edges"] = _causal_edges(specs, variables, settings.image.causal_edges)
    return dataclasses.replace(settings, image=dataclasses.replace(settings.image, **filled))


def _causal_edges(
    specs: Sequence[Attribute], variables: tuple[str, ...], given: Sequence[Sequence[str]]
) -> tuple[tuple[str, str], ...]:
    names = [spec.name for spec in specs]
    unknown = [v for v in variables if v not in names]
    if unknown:
        raise ValueError(
            f"model.image.causal_variables: {unknown} are not attributes; known: {names}"
        )
    graph = CausalGraph(
        [(parent, spec.name) for spec in specs for parent in spec.parents], nodes=names
    )
    edges = graph.project(variables).edges
    if given and {tuple(e) for e in given} != set(edges):
        raise ValueError(
            f"model.image.causal_edges: the latent SCM takes its edges from the dataset's "
            f"graph, {list(edges)}; got {[tuple(e) for e in given]} (leave it unset)"
        )
    return edges


def build_model(config: Config) -> Any:
    settings: DeepSCMSettings = config.model
    specs = attribute_specs(dataset_of(config.data), settings)
    model_type = image_model_type(settings.image_model)

    def init_model(rngs: nnx.Rngs) -> DeepSCM:
        return DeepSCM(
            specs,
            model_type(settings.image, rngs=rngs),
            flow_layers=settings.flow_layers,
            prior_dropout=settings.prior_dropout,
            rngs=rngs,
        )

    return init_model


def build(config: Config) -> Task:
    """The image's loss (e.g. negative ELBO, nats per pixel) plus the attributes' NLLs."""
    dataset = dataset_of(config.data)
    keys = example_keys(dataset)
    train_source, eval_source = dataset_sources(config, keys)
    settings: DeepSCMSettings = config.model
    if settings.labelled_fraction < 1.0:
        train_source = LabelledSubset(train_source, settings.labelled_fraction, config.data.seed)
        eval_source = LabelledSubset(eval_source, 1.0)  # evaluation sees every label
        keys = (*keys, "labelled")

    def loss(model, batch, key, step):
        return model.loss(batch, key, step=step)

    def eval_metrics(model, batch, key):
        value, metrics = model.loss(batch, key)
        return {"loss": value, **metrics}

    return Task(
        init_model=build_model(config),
        loss=loss,
        train_source=train_source,
        eval_source=eval_source,
        eval_metrics=eval_metrics,
        prepare=lambda batch: prepare_examples(dataset, batch),
        transforms=(SelectKeys(keys),),
        loss_takes_step=True,
    )


def counterfactual_evals(config: Config) -> dict[str, dict[str, Any]]:
    """The counterfactual protocol (REFERENCE §3), on every attribute of the dataset."""
    del config
    return {
        "composition": {"type": "composition"},
        "effectiveness": {"type": "effectiveness"},
        "reversibility": {"type": "reversibility"},
        "ground_truth": {"type": "ground_truth"},
        "commutativity": {"type": "commutativity"},
        "grids": {"type": "grids"},
    }


TASK = TaskSpec(
    settings=DeepSCMSettings,
    build=build,
    build_model=build_model,
    complete=complete,
    evals=counterfactual_evals,
)
