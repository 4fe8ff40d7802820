"""A CNN reading a dataset's attributes off its images: the pseudo-oracle of effectiveness."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from causalvision.data import Dataset
from causalvision.nn import AttributePredictor
from causalvision.train.config import Config
from causalvision.train.data import (
    SelectKeys,
    dataset_of,
    dataset_sources,
    example_keys,
    prepare_examples,
)
from causalvision.train.tasks import TaskSpec
from causalvision.train.trainer import Task

__all__ = ["TASK", "PredictorSettings"]


@dataclasses.dataclass(frozen=True)
class PredictorSettings:
    """Model settings of the `attribute_predictor` task.

    Args:
      widths: convolution widths of the encoder.
      hidden: width of the dense layer shared by the heads.
      standardise: how continuous targets are standardised: "specs" (the dataset's
        `Attribute.standardise`) or "data" (mean and spread of the first 4,096 training
        examples, what runs of causalvision 0.1 did).
      targets: the attributes predicted (default: all), e.g. only the label for a
        classifier, so no head is trained to read the other attributes.
    """

    widths: tuple[int, ...] = (32, 64, 128)
    hidden: int = 128
    standardise: str = "specs"
    targets: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.targets, str):  # a bare string would split into letters
            raise ValueError(f"model.targets: expected a tuple of names, got {self.targets!r}")
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.standardise not in ("specs", "data"):
            raise ValueError(
                f"model.standardise: expected 'specs' or 'data', got {self.standardise!r}"
            )


def _heads(dataset: Dataset, targets: Sequence[str] = ()) -> tuple[dict[str, int], tuple[str, ...]]:
    unknown = sorted(set(targets) - set(dataset.attributes))
    if unknown:
        raise ValueError(
            f"model.targets: {unknown} are not attributes of the dataset {dataset.attributes}"
        )
    specs = [s for s in dataset.attribute_specs if not targets or s.name in targets]
    categorical = {s.name: s.num_classes for s in specs if s.categorical}
    continuous = tuple(s.name for s in specs if not s.categorical)
    return categorical, continuous


def _data_statistics(source: Any, names: Sequence[str], limit: int = 4096) -> dict:
    """Mean and standard deviation of each attribute over the first `limit` examples."""
    rows = [source[i] for i in range(min(len(source), limit))]
    stats = {}
    for name in names:
        values = np.asarray([row[name] for row in rows], np.float64)
        stats[name] = (float(values.mean()), float(max(values.std(), 1e-6)))
    return stats


def _standardisation(config: Config, dataset: Dataset, train_source: Any = None) -> dict:
    _, continuous = _heads(dataset, config.model.targets)
    if config.model.standardise == "specs":
        specs = {s.name: s for s in dataset.attribute_specs}
        return {name: specs[name].standardise for name in continuous}
    if train_source is None:
        train_source, _ = dataset_sources(config, continuous)
    return _data_statistics(train_source, continuous)


def _builder(config: Config, standardise: dict) -> Any:
    dataset = dataset_of(config.data)
    settings: PredictorSettings = config.model
    categorical, continuous = _heads(dataset, settings.targets)

    def init_model(rngs: nnx.Rngs) -> AttributePredictor:
        return AttributePredictor(
            dataset.image_shape,
            categorical,
            continuous,
            widths=settings.widths,
            hidden=settings.hidden,
            standardise=standardise,
            rngs=rngs,
        )

    return init_model


def build_model(config: Config) -> Any:
    """The predictor alone (a run standardised by its data reads that data again)."""
    return _builder(config, _standardisation(config, dataset_of(config.data)))


def build(config: Config) -> Task:
    """Cross-entropy of categorical attributes plus squared error of standardised real ones.

    Eval metrics: accuracy per categorical attribute and mean absolute error (in the
    attribute's own units) per real one.
    """
    dataset = dataset_of(config.data)
    categorical, continuous = _heads(dataset, config.model.targets)
    keys = example_keys(dataset)
    train_source, eval_source = dataset_sources(config, keys)
    stats = _standardisation(config, dataset, train_source)

    def prepare(batch):
        out = prepare_examples(dataset, batch)
        out["image"] = out["image"] / 255.0
        return out

    def loss(model, batch, key):
        del key  # deterministic model
        predictions = model(batch["image"])
        terms = {}
        for name in categorical:
            terms[f"{name}_xent"] = optax.softmax_cross_entropy_with_integer_labels(
                predictions[name], batch[name]
            ).mean()
        for name in continuous:
            mean, std = stats[name]
            target = (batch[name] - jnp.float32(mean)) / jnp.float32(std)
            terms[f"{name}_mse"] = jnp.mean((predictions[name] - target) ** 2)
        return sum(terms.values()), terms

    def eval_metrics(model, batch, key):
        del key
        predictions = model(batch["image"])
        out = {}
        for name in categorical:
            out[f"{name}_accuracy"] = jnp.mean(
                (jnp.argmax(predictions[name], -1) == batch[name]).astype(jnp.float32)
            )
        for name in continuous:
            mean, std = stats[name]
            value = predictions[name] * jnp.float32(std) + jnp.float32(mean)
            out[f"{name}_mae"] = jnp.mean(jnp.abs(value - batch[name]))
        return out

    return Task(
        init_model=_builder(config, stats),
        loss=loss,
        train_source=train_source,
        eval_source=eval_source,
        eval_metrics=eval_metrics,
        prepare=prepare,
        transforms=(SelectKeys(keys),),
    )


TASK = TaskSpec(settings=PredictorSettings, build=build, build_model=build_model)
