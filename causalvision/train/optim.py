"""The optax optimiser a `TrainerConfig` describes: clipping, then per-group rules and schedules.

Optimisers and schedules are found by the lookup rule of `causalvision.lookup`: the names in
`OPTIMIZERS` and `SCHEDULES`, or a module path "package.module:function". An optimiser is a
function `(schedule, settings) -> optax.GradientTransformation`, a schedule a function
`settings -> optax.Schedule`, where `settings` is the `TrainerConfig` (with a group's
overrides applied).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from causalvision.lookup import resolve
from causalvision.train.config import TrainerConfig

__all__ = [
    "GROUP_SETTINGS",
    "OPTIMIZERS",
    "SCHEDULES",
    "global_norm",
    "learning_rate_schedule",
    "make_optimizer",
]

OPTIMIZERS: dict[str, str] = {
    "adam": "causalvision.train.optim:adam",
    "adamw": "causalvision.train.optim:adamw",
    "sgd": "causalvision.train.optim:sgd",
}
SCHEDULES: dict[str, str] = {
    "constant": "causalvision.train.optim:constant",
    "cosine": "causalvision.train.optim:cosine",
    "warmup_cosine": "causalvision.train.optim:warmup_cosine",
}
#: The `TrainerConfig` fields a parameter group may set for itself.
GROUP_SETTINGS = ("optimizer", "learning_rate", "schedule", "warmup_steps", "weight_decay")


def adam(schedule: optax.Schedule, config: TrainerConfig) -> optax.GradientTransformation:
    del config
    return optax.adam(schedule)


def adamw(schedule: optax.Schedule, config: TrainerConfig) -> optax.GradientTransformation:
    return optax.adamw(schedule, weight_decay=config.weight_decay)


def sgd(schedule: optax.Schedule, config: TrainerConfig) -> optax.GradientTransformation:
    """SGD with heavy-ball momentum 0.9."""
    del config
    return optax.sgd(schedule, momentum=0.9)


def constant(config: TrainerConfig) -> optax.Schedule:
    """The learning rate, after a linear warm-up over `warmup_steps` if any."""
    rate = config.learning_rate
    if config.warmup_steps:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, rate, config.warmup_steps), optax.constant_schedule(rate)],
            [config.warmup_steps],
        )
    return optax.constant_schedule(rate)


def cosine(config: TrainerConfig) -> optax.Schedule:
    return optax.cosine_decay_schedule(config.learning_rate, max(config.num_steps, 1))


def warmup_cosine(config: TrainerConfig) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        0.0,
        config.learning_rate,
        config.warmup_steps,
        max(config.num_steps, config.warmup_steps + 1),
    )


def learning_rate_schedule(config: TrainerConfig) -> optax.Schedule:
    """The learning rate as a function of the step."""
    return resolve(config.schedule, SCHEDULES, "trainer.schedule")(config)


def group_config(config: TrainerConfig, group: str) -> TrainerConfig:
    """`config` with the settings of parameter group `group` applied."""
    overrides = dict(config.param_groups.get(group, {}))
    unknown = sorted(set(overrides) - set(GROUP_SETTINGS))
    if unknown:
        raise ValueError(
            f"trainer.param_groups[{group!r}]: unknown setting(s) {unknown}; a group may set "
            f"{', '.join(GROUP_SETTINGS)}"
        )
    return dataclasses.replace(config, **overrides, param_groups={})


def _rule(config: TrainerConfig, argument: str) -> optax.GradientTransformation:
    if not config.learning_rate > 0:
        raise ValueError(f"{argument}.learning_rate: expected > 0, got {config.learning_rate}")
    optimizer = resolve(config.optimizer, OPTIMIZERS, f"{argument}.optimizer")
    schedule = resolve(config.schedule, SCHEDULES, f"{argument}.schedule")(config)
    return optimizer(schedule, config)


def make_optimizer(
    config: TrainerConfig, labels: Any = None, groups: Mapping[str, Any] | None = None
) -> optax.GradientTransformation:
    """Gradient clipping (if `grad_clip_norm`) chained with the update rule(s).

    Without `config.param_groups` one rule updates every parameter, on all parameters
    raveled into one vector (`optax.flatten`): the same arithmetic as per array, but a few
    large fused loops instead of several small ones per array, so a many-array model's step
    traces, compiles and runs faster. With groups, `labels` (a pytree of group names like
    the parameters, or a function of them) routes each parameter to its group's rule
    (`optax.multi_transform`), each raveled on its own; `groups` lists the model's group
    names, to refuse settings for a group the model does not have.
    """
    if config.grad_clip_norm is not None and config.grad_clip_norm <= 0:
        raise ValueError(
            f"trainer.grad_clip_norm: expected > 0 or None, got {config.grad_clip_norm}"
        )
    clip = (
        [optax.clip_by_global_norm(config.grad_clip_norm)]
        if config.grad_clip_norm is not None
        else []
    )
    if not config.param_groups:
        return optax.flatten(optax.chain(*clip, _rule(config, "trainer")))
    if labels is None or groups is None:
        raise ValueError(
            "trainer.param_groups: the model names no parameter groups (no parameter_groups())"
        )
    unknown = sorted(set(config.param_groups) - set(groups))
    if unknown:
        raise ValueError(
            f"trainer.param_groups: the model has no group(s) {unknown}; its groups are "
            f"{sorted(groups)}"
        )
    rules = {
        group: optax.flatten(_rule(group_config(config, group), f"trainer.param_groups[{group!r}]"))
        for group in groups
    }
    return optax.chain(*clip, optax.multi_transform(rules, labels))


def global_norm(tree) -> jax.Array:
    """The L2 norm of all leaves of `tree` together, as a float32 scalar.

    Computed on the leaves raveled into one vector: the same number as `optax.tree.norm`,
    but one reduction instead of about three small fused loops per leaf (fewer kernels to
    compile for a model of many arrays).
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    flat = jnp.concatenate([jnp.ravel(leaf).astype(jnp.float32) for leaf in leaves])
    return jnp.sqrt(jnp.sum(flat * flat))
