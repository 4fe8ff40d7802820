"""Counterfactual fine-tuning of a trained deep SCM's image model (causal-gen, REFERENCE §2.2).

Starts from a `deep_scm` run and an `attribute_predictor` run of the same dataset. Each step
intervenes on one parent per image (`causalvision.losses.counterfactual_nll`) and scores the
counterfactual images with the frozen predictor, under the damped-Lagrangian ELBO constraint
(`causalvision.losses.constrained_objective`). Only the image model and the multiplier train.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from causalvision.data import stack_examples
from causalvision.losses import ascending_multiplier, constrained_objective, counterfactual_nll
from causalvision.nn import CounterfactualTuner, DeepSCM, from_pixels
from causalvision.train.config import Config
from causalvision.train.data import (
    SelectKeys,
    dataset_of,
    dataset_sources,
    example_keys,
    prepare_examples,
)
from causalvision.train.tasks import TaskSpec
from causalvision.train.tasks.deep_scm import counterfactual_evals
from causalvision.train.trainer import Task

__all__ = ["TASK", "CounterfactualSettings"]


@dataclasses.dataclass(frozen=True)
class CounterfactualSettings:
    """Model settings of the `deep_scm_cf` task.

    Args:
      init_from: workdir of the trained `deep_scm` run to fine-tune.
      oracle: workdir of a trained `attribute_predictor` run of the same dataset.
      damping: d of the damped Lagrangian.
      bound_slack: the ELBO bound is ε = (1 + slack) · the trained model's mean negative ELBO
        on training data.
      multiplier_scale: λ's step size relative to the learning rate (`ascending_multiplier`).
    """

    init_from: str | None = None
    oracle: str | None = None
    damping: float = 100.0
    bound_slack: float = 0.0
    multiplier_scale: float = 100.0


def _runs(settings: CounterfactualSettings) -> tuple[str, str]:
    for name in ("init_from", "oracle"):
        if not isinstance(getattr(settings, name), str):
            raise ValueError(
                f"model.{name}: expected the workdir of a trained run, "
                f"got {getattr(settings, name)!r}"
            )
    return settings.init_from, settings.oracle


def build_model(config: Config) -> Any:
    from causalvision.train.trainer import load_run

    init_from, oracle = _runs(config.model)

    def init_model(rngs: nnx.Rngs) -> CounterfactualTuner:
        del rngs  # everything starts from trained runs
        deep_config, deep = load_run(init_from)
        if not isinstance(deep.model, DeepSCM):
            raise ValueError(f"model.init_from: holds a {deep_config.task!r} run, not a deep SCM")
        oracle_config, predictor = load_run(oracle)
        if oracle_config.task != "attribute_predictor":
            raise ValueError(f"model.oracle: holds a {oracle_config.task!r} run")
        pick = lambda r: r.ema_model if r.ema_model is not None else r.model
        return CounterfactualTuner(pick(deep), pick(predictor))

    return init_model


def build(config: Config) -> Task:
    settings: CounterfactualSettings = config.model
    _runs(settings)
    dataset = dataset_of(config.data)
    keys = example_keys(dataset)
    train_source, eval_source = dataset_sources(config, keys)
    init_model = build_model(config)
    prepare = lambda batch: prepare_examples(dataset, batch)
    bound = (1.0 + settings.bound_slack) * _mean_negative_elbo(init_model, train_source, prepare)

    def loss(model, batch, key):
        key_cf, key_elbo = jax.random.split(key)
        deep, predictor = model.deep, model.predictor
        negative_elbo, _ = deep.image_model.loss(
            from_pixels(batch[deep.image]), deep.image_encoding(batch), key_elbo
        )
        multiplier = ascending_multiplier(model.multiplier_raw[...], settings.multiplier_scale)
        cf_nll = counterfactual_nll(
            deep.scm(),
            predictor,
            batch,
            key_cf,
            parents=deep.image_encoding.names,
            num_classes=predictor.num_classes,
            standardise=dict(predictor.standardise),
            image=deep.image,
        )
        return constrained_objective(cf_nll, negative_elbo, bound, multiplier, settings.damping)

    def eval_metrics(model, batch, key):
        value, metrics = loss(model, batch, key)
        return {"loss": value, **metrics}

    return Task(
        init_model=init_model,
        loss=loss,
        train_source=train_source,
        eval_source=eval_source,
        eval_metrics=eval_metrics,
        prepare=prepare,
        transforms=(SelectKeys(keys),),
        trainable_groups=("image", "multiplier"),
    )


def _mean_negative_elbo(init_model, source, prepare, num: int = 256) -> float:
    """The trained image model's mean negative ELBO on the first `num` training examples."""
    model = init_model(nnx.Rngs(0)).deep  # the key is unused: the model is loaded
    rows = stack_examples([source[i] for i in range(min(num, len(source)))])
    batch = prepare({k: jnp.asarray(v) for k, v in rows.items()})
    graphdef, state = nnx.split(model)

    @jax.jit
    def negative_elbo(state, key):
        deep = nnx.merge(graphdef, state)
        value, _ = deep.image_model.loss(
            from_pixels(batch[deep.image]), deep.image_encoding(batch), key
        )
        return value

    # Fixed keys: the bound is part of the task's definition, the same on every restart.
    return float(np.mean([negative_elbo(state, jax.random.key(k)) for k in range(4)]))


TASK = TaskSpec(
    settings=CounterfactualSettings,
    build=build,
    build_model=build_model,
    evals=counterfactual_evals,
)
