"""A task's data, read off the dataset's specs: sources, the fields kept, the batch's dtypes.

Every task trains on `(image, attributes)` examples of the dataset `config.data` names, so
this is written once, for any `causalvision.data.Dataset`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.data import (
    ArraySource,
    Dataset,
    GeneratedSource,
    get_dataset,
    load_source,
    stack_examples,
)
from causalvision.train.config import Config, DataConfig
from causalvision.validation import check_real

__all__ = [
    "LabelledSubset",
    "SelectKeys",
    "dataset_of",
    "dataset_sources",
    "example_keys",
    "prepare_examples",
]

SOURCES = ("generated", "tfds")


def dataset_of(data: DataConfig) -> Dataset:
    """The dataset that `data.name` and `data.options` describe."""
    return get_dataset(data.name, **data.options)


def example_keys(dataset: Dataset) -> tuple[str, ...]:
    """The fields a model of `dataset` trains on: "image" and every attribute."""
    return ("image", *dataset.attributes)


def dataset_sources(config: Config, keys: Sequence[str] | None = None) -> tuple[Any, Any]:
    """(train, eval) random-access sources of the dataset `config.data` describes.

    Generated data is rendered once into memory: shuffled reads of a chunked generator would
    re-render a chunk per example. The eval split uses seed `data.seed + 1`, so it never
    shares examples with training. `keys` keeps only those fields (e.g. not the style).
    """
    data = config.data
    dataset = dataset_of(data)
    if data.source == "generated":
        train = _materialise(GeneratedSource(dataset, data.size, seed=data.seed), keys)
        evaluation = _materialise(
            GeneratedSource(dataset, data.eval_size, seed=data.seed + 1), keys
        )
        return train, evaluation
    if data.source == "tfds":
        return (
            load_source(dataset.tfds_name, "train", data.data_dir),
            load_source(dataset.tfds_name, "test", data.data_dir),
        )
    raise ValueError(f"data.source: expected one of {SOURCES}, got {data.source!r}")


def _materialise(source: GeneratedSource, keys: Sequence[str] | None) -> ArraySource:
    examples = stack_examples([source[i] for i in range(len(source))])
    if keys is not None:
        examples = {k: examples[k] for k in keys}
    return ArraySource(examples)


class LabelledSubset:
    """A random-access source whose examples carry "labelled": True for a fixed subset.

    round(fraction · len) examples, drawn without replacement by `seed` (numpy), are
    labelled; semi-supervised training treats the others' attributes as unobserved.
    """

    def __init__(self, source: Any, fraction: float, seed: int = 0):
        self.source = source
        count = round(check_real(fraction, "fraction", 0.0, 1.0) * len(source))
        order = np.random.default_rng(seed).permutation(len(source))
        self.labelled = np.zeros(len(source), bool)
        self.labelled[order[:count]] = True

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.source[index], "labelled": self.labelled[index]}


class SelectKeys:
    """Per-example transform keeping only `keys` (so unused fields never reach the device)."""

    def __init__(self, keys: Sequence[str]):
        self.keys = tuple(keys)

    def __call__(self, example: Mapping[str, Any]) -> dict[str, Any]:
        return {k: example[k] for k in self.keys}


def prepare_examples(dataset: Dataset, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """A batch of stored examples as a model reads them (inside `jit`).

    The image as float32 on its 0-255 storage scale, categorical attributes int32 and
    continuous ones float32.
    """
    out = {"image": batch["image"].astype(jnp.float32)}
    for spec in dataset.attribute_specs:
        out[spec.name] = batch[spec.name].astype(jnp.int32 if spec.categorical else jnp.float32)
    if "labelled" in batch:  # semi-supervised training's flags (`LabelledSubset`)
        out["labelled"] = batch["labelled"].astype(bool)
    return out
