"""A classifier whose label shares a cause with its images, trained plainly or adjusted.

The label and the confounder are two categorical attributes of the dataset, named by the
settings (e.g. "shape" and "background"); a group is their combination. `method`
chooses what is trained, on one encoder and one budget (REFERENCE §4):

| method | model | uses |
|---|---|---|
| "erm" | plain classifier, cross-entropy | labels |
| "reweight" | plain classifier, each group weighted by 1 / its frequency | group labels |
| "backdoor" | `BackdoorAdjustment` (VC R-CNN), dictionary: k-means of a run's features | labels |
| "frontdoor" | `FrontDoorAttention` (CATT) over the feature map, learned dictionary | labels |
| "inferred" | exact back-door formula, confounder: k-means cluster of a run's features | labels |
| "observed" | exact back-door formula with the observed confounder | confounders |

"backdoor" and "inferred" read the features of an earlier run (`features_from`, e.g. an
"erm" run of the same data) and never see the confounder. An oracle is "erm" on data whose
label and confounder are independent (e.g. `data.options.agreement = 1 / K`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from causalvision.data import ArraySource, Dataset, GeneratedSource, get_dataset, stack_examples
from causalvision.nn import AdjustedClassifier, assign_clusters, confounder_dictionary, kmeans
from causalvision.train.config import Config
from causalvision.train.data import dataset_of, dataset_sources
from causalvision.train.tasks import TaskSpec
from causalvision.train.trainer import Task

__all__ = ["METHODS", "TASK", "DeconfoundingSettings", "load_features", "split_arrays"]

METHODS = ("erm", "reweight", "backdoor", "frontdoor", "inferred", "observed")
_ADJUSTMENT = {
    "erm": "none",
    "reweight": "none",
    "backdoor": "backdoor",
    "frontdoor": "frontdoor",
    "inferred": "conditional",
    "observed": "conditional",
}
_NEEDS_FEATURES = ("backdoor", "inferred")
# k-means draws from its own stream: `fold_in(key(trainer.seed), tag)`.
_KMEANS_TAG = 2**31 - 3


@dataclasses.dataclass(frozen=True)
class DeconfoundingSettings:
    """Model settings of the `deconfounding` task.

    Args:
      method: one of `METHODS` (see the module docstring).
      label, confounder: the categorical attributes predicted and adjusted for.
      widths, hidden: the encoder's convolution widths and feature width D.
      features_from: "backdoor", "inferred": the workdir of a trained run of this task whose
        features build the dictionary (k-means prototypes) or the clusters.
      dictionary_size: C, the prototypes or clusters ("backdoor", "inferred") or the learned
        front-door dictionary's entries; 0 means the label's number of classes.
      normalize_weights: "backdoor": renormalise P(c)·A_c over c (VC R-CNN does not).
      num_heads: "frontdoor": attention heads.
      eval_options: dataset options of the periodic evaluation's data, replacing those of
        `data.options` (e.g. `{"agreement": 0.0}`: the anti-correlated split).
    """

    method: str = "erm"
    label: str = ""
    confounder: str = ""
    widths: tuple[int, ...] = (16, 32, 64)
    hidden: int = 64
    features_from: str | None = None
    dictionary_size: int = 0
    normalize_weights: bool = False
    num_heads: int = 4
    eval_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"model.method: expected one of {METHODS}, got {self.method!r}")


def _classes(dataset: Dataset, settings: DeconfoundingSettings) -> tuple[int, int]:
    """The label's and the confounder's numbers of classes (both must be categorical)."""
    specs = {spec.name: spec for spec in dataset.attribute_specs}
    sizes = []
    for field in ("label", "confounder"):
        name = getattr(settings, field)
        if name not in specs or not specs[name].categorical:
            categorical = [n for n, s in specs.items() if s.categorical]
            raise ValueError(
                f"model.{field}: expected a categorical attribute of {dataset.name} "
                f"({categorical}), got {name!r}"
            )
        sizes.append(specs[name].num_classes)
    return sizes[0], sizes[1]


def _dictionary_size(settings: DeconfoundingSettings, num_classes: int) -> int:
    return settings.dictionary_size or num_classes


def split_arrays(config: Config, options: dict[str, Any], size: int, seed: int) -> dict:
    """`size` examples (stacked numpy arrays) of `config.data`'s dataset with `options` changed."""
    data = config.data
    dataset = get_dataset(data.name, **{**data.options, **options})
    source = GeneratedSource(dataset, size, seed=seed)
    return stack_examples([source[i] for i in range(size)])


def load_features(workdir: str) -> Callable[[jax.Array], jax.Array]:
    """The feature function `images (N, H, W, C) in [0, 1] -> (N, D)` of a trained run."""
    from causalvision.train.trainer import load_run

    _, result = load_run(workdir)
    model = result.ema_model or result.model
    if not isinstance(model, AdjustedClassifier):
        raise ValueError(
            f"model.features_from: {workdir!r} holds a {type(model).__name__}, not a run of "
            "the deconfounding task"
        )
    graphdef, state = nnx.split(model)

    def features(images: jax.Array) -> jax.Array:
        # A pure function of the images (the state rides along as a constant), so callers
        # may jit it or call it inside their own jit.
        return nnx.merge(graphdef, state).features(images)

    return jax.jit(features)


def _as_float_images(images: Any) -> jax.Array:
    return jnp.asarray(images, jnp.float32) / 255.0


def _conditional_statistics(
    confounder: np.ndarray, labels: np.ndarray, size: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """log P(y | c) `(C, K)` (add-one smoothed: no class is impossible) and P(c) `(C,)`."""
    counts = np.ones((size, num_classes))
    np.add.at(counts, (confounder, labels), 1.0)
    table = np.log(counts / counts.sum(1, keepdims=True))
    prior = np.bincount(confounder, minlength=size) / len(confounder)
    return table, prior


def _group_weights(groups: np.ndarray, num_groups: int) -> np.ndarray:
    """Per-group loss weights N / (G' n_g) over the G' groups present: each group counts once."""
    counts = np.bincount(groups, minlength=num_groups).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_groups)
    weights[present] = len(groups) / (present.sum() * counts[present])
    return weights


def _model_builder(config: Config, **arrays: Any) -> Callable[[nnx.Rngs], AdjustedClassifier]:
    """`rngs -> model`; without `arrays` the data-derived tables are placeholders that a
    restored checkpoint overwrites."""
    settings: DeconfoundingSettings = config.model
    dataset = dataset_of(config.data)
    num_classes, _ = _classes(dataset, settings)
    size = _dictionary_size(settings, num_classes)
    adjustment = _ADJUSTMENT[settings.method]
    dictionary = arrays.get("dictionary")
    if adjustment == "backdoor" and dictionary is None:
        dictionary = np.zeros((size, settings.hidden), np.float32)
    log_table = arrays.get("log_table")
    if adjustment == "conditional" and log_table is None:
        confounders = size if settings.method == "inferred" else _classes(dataset, settings)[1]
        log_table = np.zeros((confounders, num_classes), np.float32)

    def init_model(rngs: nnx.Rngs) -> AdjustedClassifier:
        return AdjustedClassifier(
            dataset.image_shape,
            num_classes,
            widths=settings.widths,
            hidden=settings.hidden,
            adjustment=adjustment,
            dictionary=dictionary,
            prior=arrays.get("prior"),
            log_table=log_table,
            dictionary_size=size,
            normalize_weights=settings.normalize_weights,
            num_heads=settings.num_heads,
            rngs=rngs,
        )

    return init_model


def build_model(config: Config) -> Callable[[nnx.Rngs], AdjustedClassifier]:
    """The model alone, to restore a run (its tables come from the checkpoint)."""
    return _model_builder(config)


def build(config: Config) -> Task:
    """The classifier of `config.model.method` with its loss and data.

    Eval metrics: "accuracy" of the prediction of P(Y | do(X)) on the evaluation data (and
    "exact_accuracy", the exact form's, for "backdoor").
    """
    settings: DeconfoundingSettings = config.model
    dataset = dataset_of(config.data)
    num_classes, num_confounders = _classes(dataset, settings)
    keys = ("image", settings.label, settings.confounder)
    train_source, eval_source = dataset_sources(config, keys)
    # Generated data is already in memory as arrays; stored data is read once here.
    train = getattr(train_source, "arrays", None) or stack_examples(
        [train_source[i] for i in range(len(train_source))]
    )
    labels = np.asarray(train[settings.label], np.int64)
    confounder = np.asarray(train[settings.confounder], np.int64)
    arrays: dict[str, Any] = {"image": train["image"], "label": labels}
    tables: dict[str, Any] = {}

    if settings.method in _NEEDS_FEATURES:
        if not settings.features_from:
            raise ValueError(
                f"model.features_from: the {settings.method!r} method reads a trained run's "
                "features; name its workdir (e.g. an 'erm' run)"
            )
        features = load_features(settings.features_from)
        key = jax.random.fold_in(jax.random.key(config.trainer.seed), _KMEANS_TAG)
        size = _dictionary_size(settings, num_classes)
        if settings.method == "backdoor":
            tables["dictionary"], tables["prior"] = confounder_dictionary(
                features,
                {"image": train["image"]},
                key=key,
                num_prototypes=size,
                preprocess=_as_float_images,
                progress=config.trainer.progress,
            )
        else:  # "inferred": the confounder is each image's k-means cluster
            x = _features_of(features, train["image"])
            cluster = np.asarray(assign_clusters(x, kmeans(x, size, key=key)))
            arrays["confounder"] = cluster
            tables["log_table"], tables["prior"] = _conditional_statistics(
                cluster, labels, size, num_classes
            )
    if settings.method == "observed":
        arrays["confounder"] = confounder
        tables["log_table"], tables["prior"] = _conditional_statistics(
            confounder, labels, num_confounders, num_classes
        )
    group_weights = None
    if settings.method == "reweight":
        groups = labels * num_confounders + confounder
        arrays["group"] = groups
        group_weights = jnp.asarray(
            _group_weights(groups, num_classes * num_confounders), jnp.float32
        )

    if settings.eval_options:
        data = config.data
        eval_arrays = split_arrays(config, settings.eval_options, data.eval_size, data.seed + 1)
        eval_source = ArraySource({k: eval_arrays[k] for k in keys})
    adjusted = _ADJUSTMENT[settings.method]

    def prepare(batch):
        out = {"image": _as_float_images(batch["image"])}
        for name in ("label", "confounder", "group"):
            if name in batch:
                out[name] = batch[name].astype(jnp.int32)
        if settings.label in batch:  # evaluation batches hold the dataset's own fields
            out["label"] = batch[settings.label].astype(jnp.int32)
        return out

    def loss(model, batch, key):
        del key  # deterministic model
        if adjusted == "conditional":
            logits = model.conditional_logits(batch["image"], batch["confounder"])
        else:
            logits = model(batch["image"])
        xent = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        if group_weights is not None:
            xent = xent * group_weights[batch["group"]]
        accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))
        return jnp.mean(xent), {"xent": jnp.mean(xent), "train_accuracy": accuracy}

    def eval_metrics(model, batch, key):
        del key
        out = {"accuracy": _accuracy(model(batch["image"]), batch["label"])}
        if adjusted == "backdoor":
            out["exact_accuracy"] = _accuracy(model.exact_log_probs(batch["image"]), batch["label"])
        return out

    return Task(
        init_model=_model_builder(config, **tables),
        loss=loss,
        train_source=ArraySource(arrays),
        eval_source=eval_source,
        eval_metrics=eval_metrics,
        prepare=prepare,
    )


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def _features_of(features: Callable, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    return np.concatenate(
        [
            np.asarray(features(_as_float_images(images[i : i + batch_size])))
            for i in range(0, len(images), batch_size)
        ]
    )


TASK = TaskSpec(settings=DeconfoundingSettings, build=build, build_model=build_model)
