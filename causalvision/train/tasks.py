"""Named tasks (model + loss + data) that experiment configs refer to by `Config.task`.

`train_and_evaluate(config, workdir)` looks the name up here. A task builder takes the whole
`Config` and returns a `Task`; add one with `@register_task("name")`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from causalvision.data import (
    ArraySource,
    GeneratedSource,
    MorphoDigits,
    Pendulum,
    load_source,
    stack_examples,
)
from causalvision.nn import AttributePredictor
from causalvision.scm import SCM
from causalvision.train.config import Config
from causalvision.train.trainer import Task

_TASKS: dict[str, Callable[[Config], Task]] = {}
# Tasks whose model can be built without their data (fast restores for inference).
_MODEL_BUILDERS: dict[str, Callable[[Config], Callable[[nnx.Rngs], Any]]] = {}

# What each synthetic dataset's attributes are: categorical (with class counts) or real.
DATASET_ATTRIBUTES: dict[str, tuple[dict[str, int], tuple[str, ...]]] = {
    "morpho_digits": ({"digit": 10}, ("thickness", "intensity")),
    "pendulum": ({}, ("angle", "light", "shadow_length", "shadow_position")),
}


def register_task(
    name: str, *, model: Callable[[Config], Callable[[nnx.Rngs], Any]] | None = None
) -> Callable[[Callable[[Config], Task]], Callable[[Config], Task]]:
    """Decorator: makes a `Config -> Task` builder available as `Config(task=name)`.

    `model`, if given, builds the task's `init_model` from the config alone, so a trained
    model can be restored without rendering or reading its data.
    """

    def register(builder: Callable[[Config], Task]) -> Callable[[Config], Task]:
        _TASKS[name] = builder
        if model is not None:
            _MODEL_BUILDERS[name] = model
        return builder

    return register


def build_model_task(config: Config) -> Task:
    """A `Task` good for restoring the model of `config` (data sources may be empty)."""
    if config.task in _MODEL_BUILDERS:
        empty = ArraySource({"index": np.zeros((1,), np.int32)})
        return Task(
            init_model=_MODEL_BUILDERS[config.task](config),
            loss=_no_loss,
            train_source=empty,
        )
    return build_task(config)


def _no_loss(model, batch, key):
    raise RuntimeError("a task built for restoring cannot train")


def build_task(config: Config) -> Task:
    """The `Task` that `config.task` names."""
    if config.task not in _TASKS:
        raise ValueError(f"task: unknown task {config.task!r}; known tasks are {sorted(_TASKS)}")
    return _TASKS[config.task](config)


def dataset_sources(config: Config, keys: Sequence[str] | None = None) -> tuple[Any, Any]:
    """(train, eval) random-access sources of the dataset `config.data` describes.

    Generated data is rendered once into memory: shuffled reads of a chunked generator would
    re-render a chunk per example. The eval split uses seed `data.seed + 1`, so it never
    shares examples with training. `keys` keeps only those fields (e.g. not the style).
    """
    data = config.data
    if data.name not in DATASET_ATTRIBUTES:
        raise ValueError(
            f"data.name: expected one of {sorted(DATASET_ATTRIBUTES)}, got {data.name!r}"
        )
    if data.source == "generated":
        dataset = MorphoDigits() if data.name == "morpho_digits" else Pendulum(data.image_size)
        train = _materialise(GeneratedSource(dataset, data.size, seed=data.seed), keys)
        evaluation = _materialise(
            GeneratedSource(dataset, data.eval_size, seed=data.seed + 1), keys
        )
        return train, evaluation
    if data.source == "tfds":
        return load_source(data.name, "train", data.data_dir), load_source(
            data.name, "test", data.data_dir
        )
    raise ValueError(f"data.source: expected 'generated' or 'tfds', got {data.source!r}")


def _materialise(source: GeneratedSource, keys: Sequence[str] | None) -> ArraySource:
    examples = stack_examples([source[i] for i in range(len(source))])
    if keys is not None:
        examples = {k: examples[k] for k in keys}
    return ArraySource(examples)


class SelectKeys:
    """Per-example transform keeping only `keys` (so unused fields never reach the device)."""

    def __init__(self, keys: Sequence[str]):
        self.keys = tuple(keys)

    def __call__(self, example: Mapping[str, Any]) -> dict[str, Any]:
        return {k: example[k] for k in self.keys}


def _attribute_statistics(source: Any, names: Sequence[str], limit: int = 4096) -> dict:
    """Mean and standard deviation of each real attribute over the first `limit` examples."""
    rows = [source[i] for i in range(min(len(source), limit))]
    stats = {}
    for name in names:
        values = np.asarray([row[name] for row in rows], np.float64)
        stats[name] = (float(values.mean()), float(max(values.std(), 1e-6)))
    return stats


@register_task("attribute_predictor")
def attribute_predictor(config: Config) -> Task:
    """A CNN reading a dataset's attributes off its images: the pseudo-oracle of effectiveness.

    Cross-entropy for categorical attributes plus squared error of standardised real ones.
    `config.model` may set `widths` and `hidden`. Eval metrics: accuracy per categorical
    attribute and mean absolute error (in the attribute's own units) per real one.
    """
    categorical, continuous = DATASET_ATTRIBUTES[config.data.name]
    keys = ("image", *categorical, *continuous)
    train_source, eval_source = dataset_sources(config, keys)
    stats = _attribute_statistics(train_source, continuous)
    image_shape = tuple(np.asarray(train_source[0]["image"]).shape)
    widths = tuple(config.model.get("widths", (32, 64, 128)))
    hidden = int(config.model.get("hidden", 128))
    unknown = set(config.model) - {"widths", "hidden"}
    if unknown:
        raise ValueError(f"model: unknown settings {sorted(unknown)}; known: widths, hidden")

    def init_model(rngs: nnx.Rngs) -> AttributePredictor:
        return AttributePredictor(
            image_shape,
            categorical,
            continuous,
            widths=widths,
            hidden=hidden,
            standardise=stats,
            rngs=rngs,
        )

    def prepare(batch):
        out = {"image": batch["image"].astype(jnp.float32) / 255.0}
        out.update({k: batch[k].astype(jnp.int32) for k in categorical})
        out.update({k: batch[k].astype(jnp.float32) for k in continuous})
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

    def eval_metrics(model, batch):
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
        init_model=init_model,
        loss=loss,
        train_source=train_source,
        eval_source=eval_source,
        eval_metrics=eval_metrics,
        prepare=prepare,
        transforms=(SelectKeys(keys),),
    )


@register_task("deep_scm", model=lambda config: deep_scm_builder(config.model))
def deep_scm(config: Config) -> Task:
    """A deep SCM of Morpho digits: attribute flows plus an HVAE or VAE image mechanism.

    `config.model["image_model"]` is "hvae" (default) or "vae"; `config.model["prior_dropout"]`
    is `DeepSCM`'s conditioning dropout (e.g. `{"digit": 1/3}`); every other key of
    `config.model` sets a field of `HVAEConfig` / `VAEConfig`. The loss is the image's
    negative ELBO (nats per pixel) plus the attributes' negative log-likelihoods.
    """
    if config.data.name != "morpho_digits":
        raise ValueError(
            f"data.name: the deep_scm task models morpho_digits, got {config.data.name!r}"
        )
    keys = ("image", "digit", "thickness", "intensity")
    train_source, eval_source = dataset_sources(config, keys)
    init_model = deep_scm_builder(config.model)

    def prepare(batch):
        return {
            "image": batch["image"].astype(jnp.float32),
            "digit": batch["digit"].astype(jnp.int32),
            "thickness": batch["thickness"].astype(jnp.float32),
            "intensity": batch["intensity"].astype(jnp.float32),
        }

    def loss(model, batch, key):
        return model.loss(batch, key)

    def eval_metrics(model, batch):
        value, metrics = model.loss(batch, jax.random.key(0))
        return {"loss": value, **metrics}

    return Task(
        init_model=init_model,
        loss=loss,
        train_source=train_source,
        eval_source=eval_source,
        eval_metrics=eval_metrics,
        prepare=prepare,
        transforms=(SelectKeys(keys),),
    )


def deep_scm_builder(settings: Mapping[str, Any]) -> Callable[[nnx.Rngs], Any]:
    """`rngs -> DeepSCM` for Morpho digits from `config.model` settings."""
    from causalvision.nn.deep_scm import MORPHO_ATTRIBUTES, DeepSCM

    settings = dict(settings)
    kind = settings.pop("image_model", "hvae")
    prior_dropout = dict(settings.pop("prior_dropout", None) or {})
    if kind == "hvae":
        from causalvision.nn.hvae import HVAE as model_type
        from causalvision.nn.hvae import HVAEConfig as config_type
    elif kind == "vae":
        from causalvision.nn.vae import VAE as model_type
        from causalvision.nn.vae import VAEConfig as config_type
    else:
        raise ValueError(f"model.image_model: expected 'hvae' or 'vae', got {kind!r}")
    fields = {f.name: f.type for f in dataclasses.fields(config_type)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise ValueError(f"model: unknown {kind} settings {unknown}; known: {sorted(fields)}")
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    image_config = config_type(**settings)

    def init_model(rngs: nnx.Rngs) -> DeepSCM:
        image_model = model_type(image_config, rngs=rngs)
        return DeepSCM(MORPHO_ATTRIBUTES, image_model, prior_dropout=prior_dropout, rngs=rngs)

    return init_model


class CounterfactualTuner(nnx.Module):
    """A trained `DeepSCM`, frozen attribute predictors and the constraint's multiplier."""

    def __init__(self, deep_scm: Any, predictor: AttributePredictor):
        self.deep = deep_scm
        self.predictor = predictor
        self.multiplier_raw = nnx.Param(jnp.zeros((), jnp.float32))


_CF_NODES = ("thickness", "intensity", "digit")


def _cf_settings(config: Config) -> dict[str, Any]:
    settings = {"damping": 100.0, "bound_slack": 0.0, "multiplier_scale": 100.0, **config.model}
    for name in ("init_from", "oracle"):
        if not isinstance(settings.get(name), str):
            raise ValueError(
                f"model.{name}: expected the workdir of a trained run, got {settings.get(name)!r}"
            )
    unknown = sorted(
        set(settings) - {"init_from", "oracle", "damping", "bound_slack", "multiplier_scale"}
    )
    if unknown:
        raise ValueError(f"model: unknown counterfactual-training settings {unknown}")
    return settings


def _cf_model_builder(config: Config) -> Callable[[nnx.Rngs], CounterfactualTuner]:
    from causalvision.train.trainer import load_run

    settings = _cf_settings(config)

    def init_model(rngs: nnx.Rngs) -> CounterfactualTuner:
        del rngs  # everything starts from trained runs
        deep_config, deep = load_run(settings["init_from"])
        if deep_config.task != "deep_scm":
            raise ValueError(f"model.init_from: holds a {deep_config.task!r} run, not deep_scm")
        oracle_config, oracle = load_run(settings["oracle"])
        if oracle_config.task != "attribute_predictor":
            raise ValueError(f"model.oracle: holds a {oracle_config.task!r} run")
        pick = lambda r: r.ema_model if r.ema_model is not None else r.model
        return CounterfactualTuner(pick(deep), pick(oracle))

    return init_model


@register_task("deep_scm_cf", model=_cf_model_builder)
def deep_scm_counterfactual_training(config: Config) -> Task:
    """Counterfactual fine-tuning of a trained deep SCM's image mechanism (causal-gen).

    `config.model`: `init_from` (a deep_scm run), `oracle` (an attribute_predictor run),
    `damping` d, `bound_slack` (ε = (1 + slack) · the trained model's mean negative ELBO on
    training data) and `multiplier_scale`. Each step intervenes on one parent per image (see
    `counterfactual_nll`) and scores the counterfactual images with the frozen predictors;
    only the image mechanism and the multiplier train.
    """
    from causalvision.losses import ascending_multiplier, constrained_objective
    from causalvision.nn import from_pixels

    settings = _cf_settings(config)
    keys = ("image", "digit", "thickness", "intensity")
    train_source, eval_source = dataset_sources(config, keys)
    init_model = _cf_model_builder(config)
    bound = (1.0 + settings["bound_slack"]) * _mean_negative_elbo(init_model, train_source)

    def prepare(batch):
        return {
            "image": batch["image"].astype(jnp.float32),
            "digit": batch["digit"].astype(jnp.int32),
            "thickness": batch["thickness"].astype(jnp.float32),
            "intensity": batch["intensity"].astype(jnp.float32),
        }

    def loss(model, batch, key):
        key_cf, key_elbo = jax.random.split(key)
        deep = model.deep
        negative_elbo, _ = deep.image_model.loss(
            from_pixels(batch["image"]), deep.image_encoding(batch), key_elbo
        )
        multiplier = ascending_multiplier(model.multiplier_raw[...], settings["multiplier_scale"])
        return constrained_objective(
            counterfactual_nll(deep.scm(), model.predictor, batch, key_cf),
            negative_elbo,
            bound,
            multiplier,
            settings["damping"],
        )

    def eval_metrics(model, batch):
        value, metrics = loss(model, batch, jax.random.key(0))
        return {"loss": value, **metrics}

    trainable = nnx.All(
        nnx.Param, nnx.Any(nnx.PathContains("image_model"), nnx.PathContains("multiplier_raw"))
    )
    return Task(
        init_model=init_model,
        loss=loss,
        train_source=train_source,
        eval_source=eval_source,
        eval_metrics=eval_metrics,
        prepare=prepare,
        transforms=(SelectKeys(keys),),
        trainable=trainable,
    )


def counterfactual_nll(
    scm: Any, predictor: AttributePredictor, batch: Mapping[str, jax.Array], key: jax.Array
) -> jax.Array:
    """Mean over images of -log q(pa* | x*): causal-gen's counterfactual likelihood term.

    q is the frozen `predictor`, x* a counterfactual image, pa* its intervened parents. The
    images are put in a random order and split into thirds: the first third gets
    do(thickness), the second do(intensity), the last do(digit), each with the value of the
    next image in that order. causal-gen draws one parent per batch instead; one per image
    estimates the same objective with less variance and needs no `lax.switch`. `scm` must
    hold the Morpho nodes thickness, intensity, digit and image, the first three closed
    under parents.
    """
    num = batch["digit"].shape[0]
    if num < len(_CF_NODES):
        raise ValueError(
            f"batch: counterfactual training needs at least {len(_CF_NODES)} images per batch "
            f"(one per intervened parent), got {num}"
        )
    order = jax.random.permutation(key, num)
    shuffled = {name: value[order] for name, value in batch.items()}
    donors = {name: jnp.roll(shuffled[name], -1, axis=0) for name in _CF_NODES}
    # Each third's parents first, in the attributes-only SCM; then one image counterfactual
    # of the whole batch with every parent set to its counterfactual value. That is the
    # same image (it reads its parents' values only), traced once instead of three times.
    attributes = SCM({name: scm.mechanisms[name] for name in _CF_NODES})
    thirds = []
    for node, rows in zip(_CF_NODES, np.array_split(np.arange(num), len(_CF_NODES)), strict=True):
        factual = {name: shuffled[name][rows] for name in _CF_NODES}
        thirds.append(attributes.counterfactual(factual, {node: donors[node][rows]}))
    parents = {name: jnp.concatenate([third[name] for third in thirds]) for name in _CF_NODES}
    cf = scm.counterfactual(shuffled, parents)
    predictions = predictor(cf["image"] / 255.0)
    nll = optax.softmax_cross_entropy_with_integer_labels(predictions["digit"], cf["digit"])
    standardise = dict(predictor.standardise)
    for name in ("thickness", "intensity"):
        offset, scale = standardise[name]
        standard = (cf[name] - jnp.float32(offset)) / jnp.float32(scale)
        nll = nll + 0.5 * (predictions[name] - jax.lax.stop_gradient(standard)) ** 2
    return jnp.mean(nll)


def _mean_negative_elbo(init_model, source, num: int = 256) -> float:
    """The trained image mechanism's mean negative ELBO on the first `num` training examples."""
    from causalvision.nn import from_pixels

    model = init_model(nnx.Rngs(0)).deep
    rows = stack_examples([source[i] for i in range(min(num, len(source)))])
    batch = {
        "image": jnp.asarray(rows["image"], jnp.float32),
        "digit": jnp.asarray(rows["digit"], jnp.int32),
        "thickness": jnp.asarray(rows["thickness"], jnp.float32),
        "intensity": jnp.asarray(rows["intensity"], jnp.float32),
    }
    graphdef, state = nnx.split(model)

    @jax.jit
    def negative_elbo(state, key):
        deep = nnx.merge(graphdef, state)
        value, _ = deep.image_model.loss(
            from_pixels(batch["image"]), deep.image_encoding(batch), key
        )
        return value

    return float(np.mean([negative_elbo(state, jax.random.key(k)) for k in range(4)]))
