"""Training tasks by name: what `Config.task` stands for.

A task is one module here (or anywhere, named "package.module:TASK") defining a `TaskSpec`:
its typed model settings, how to build the model alone (to restore a run) and with its loss
and data (to train), and the evaluators `causalvision evaluate` runs by default. Tasks are
found by the lookup rule of `causalvision.lookup`; nothing registers itself on import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from flax import nnx

from causalvision.lookup import resolve
from causalvision.train.config import Config, structure
from causalvision.train.trainer import Task

__all__ = ["TASKS", "TaskSpec", "build_model", "build_task", "get_task"]

#: Built-in tasks by name (module paths, imported when first looked up).
TASKS: dict[str, str] = {
    "attribute_predictor": "causalvision.train.tasks.attribute_predictor:TASK",
    "captioning": "causalvision.train.tasks.captioning:TASK",
    "deep_scm": "causalvision.train.tasks.deep_scm:TASK",
    "deep_scm_cf": "causalvision.train.tasks.deep_scm_cf:TASK",
    "deconfounding": "causalvision.train.tasks.deconfounding:TASK",
    "slot_autoencoder": "causalvision.train.tasks.slot_autoencoder:TASK",
}

ModelBuilder = Callable[[nnx.Rngs], nnx.Module]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a task name stands for.

    Attributes:
      settings: the dataclass of the task's model settings (`Config.model`).
      build: `config -> Task`, the model with its loss and data, to train.
      build_model: `config -> (rngs -> model)`, the model alone, to restore a trained run
        without reading its data.
      complete: `(config, settings) -> settings`, the typed settings with whatever they
        derive from the data filled in (e.g. an image model's image shape); default: the
        settings as given.
      evals: `config -> {name: {"type": ..., **settings}}`, the evaluators
        `causalvision evaluate` runs when the config names none.
    """

    settings: type
    build: Callable[[Config], Task]
    build_model: Callable[[Config], ModelBuilder]
    complete: Callable[[Config, Any], Any] | None = None
    evals: Callable[[Config], dict[str, dict[str, Any]]] | None = None

    def complete_config(self, config: Config) -> Config:
        """`config` with typed, completed model settings (a new `Config`)."""
        settings = structure(self.settings, config.model, "model")
        if self.complete is not None:
            settings = self.complete(config, settings)
        return dataclasses.replace(config, model=settings)


def get_task(name: str) -> TaskSpec:
    """The `TaskSpec` of a `TASKS` name or a "package.module:TASK" path."""
    spec = resolve(name, TASKS, "task")
    if not isinstance(spec, TaskSpec):
        raise ValueError(f"task: {name!r} names a {type(spec).__name__}, not a TaskSpec")
    return spec


def build_task(config: Config) -> Task:
    """The `Task` (model, loss, data) that `config.task` names."""
    return get_task(config.task).build(config)


def build_model(config: Config) -> ModelBuilder:
    """`rngs -> model` of `config.task`, without its data (for restoring a trained run)."""
    return get_task(config.task).build_model(config)
