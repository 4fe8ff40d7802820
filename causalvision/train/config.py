"""Typed experiment configs: plain dataclasses, loaded from Python files in `experiments/`.

An experiment file defines `get_config(preset: str = "default") -> Config`; every file has a
`"tiny"` preset that trains in seconds on one CPU, for tests. `load_config("x.py:tiny",
overrides=["trainer.num_steps=10"])` loads a preset and applies `--set key=value` overrides,
each parsed against the type of the field it replaces.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import pathlib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass
class TrainerConfig:
    """How to optimise: steps, batch, optimiser, schedule, checkpoints and logging.

    `batch_size` is the global batch over all devices and processes; it must be divisible by
    the number of devices. The learning rate follows `schedule` ("constant", "cosine" or
    "warmup_cosine", with `warmup_steps`), after clipping gradients to `grad_clip_norm`.
    `ema_decay` keeps an exponential moving average of the parameters, used for evaluation;
    the decay of step k is `min(ema_decay, (1 + k) / (10 + k))`, so early steps forget the
    initialisation quickly.
    """

    num_steps: int = 1000
    batch_size: int = 128
    seed: int = 0
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip_norm: float | None = 1.0
    ema_decay: float | None = None
    log_every: int = 50
    eval_every: int | None = None
    eval_batches: int | None = None
    checkpoint_every: int = 500
    max_to_keep: int = 2
    tensorboard: bool = False
    progress: bool = True


@dataclasses.dataclass
class DataConfig:
    """Which dataset feeds training, and how it is read.

    `source` is "generated" (render examples on the fly from the dataset's SCM, deterministic
    in `seed`) or "tfds" (read a dataset built by `causalvision data build` from `data_dir`).
    """

    name: str = "morpho_digits"
    source: str = "generated"
    size: int = 60_000
    eval_size: int = 1_000
    seed: int = 0
    data_dir: str | None = None
    image_size: int = 64
    shuffle: bool = True


@dataclasses.dataclass
class Config:
    """A whole experiment: the task (model + loss) by name, its settings, data and trainer."""

    task: str
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    model: dict[str, Any] = dataclasses.field(default_factory=dict)


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """The `Config` that `dataclasses.asdict` (e.g. a run's config.json) describes."""
    model = {k: tuple(v) if isinstance(v, list) else v for k, v in values.get("model", {}).items()}
    return Config(
        task=values["task"],
        data=DataConfig(**values.get("data", {})),
        trainer=TrainerConfig(**values.get("trainer", {})),
        model=model,
    )


def load_config(spec: str | pathlib.Path, overrides: Sequence[str] = ()) -> Config:
    """Loads `path/to/experiment.py[:preset]` or a run's `config.json`, then applies overrides.

    Overrides are `key=value` strings, e.g. `trainer.num_steps=100`.

    Raises:
      ValueError: the file is missing or neither `.py` nor `.json`, a config file has no
        `get_config`, a JSON file is given a preset, or an override names an unknown field or
        has a value of the wrong type.
    """
    path, _, preset = str(spec).partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise ValueError(f"config: no such file {str(file)!r}")
    if file.suffix == ".json":  # a run's saved config: rerun or extend it
        if preset:
            raise ValueError(f"config: a JSON config has no presets, got {str(spec)!r}")
        try:
            config = config_from_dict(json.loads(file.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            message = f"config: {str(file)!r} is not a run's config.json ({error})"
            raise ValueError(message) from error
        return apply_overrides(config, overrides)
    if file.suffix != ".py":
        raise ValueError(
            f"config: expected an experiment .py file or a run's config.json, got {str(file)!r}"
        )
    module_spec = importlib.util.spec_from_file_location(f"_causalvision_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise ValueError(f"config: {str(file)!r} defines no get_config(preset)")
    config = get_config(preset or "default")
    if not isinstance(config, Config):
        raise ValueError(f"config: get_config returned {type(config).__name__}, not a Config")
    return apply_overrides(config, overrides)


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """A copy of `config` with each "dotted.key=value" applied (values are Python literals)."""
    config = _deep_copy(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        *parents, leaf = key.strip().split(".")
        target = config
        for name in parents:
            target = _child(target, name, key)
        _set(target, leaf, text.strip(), key)
    return config


def _deep_copy(config: Config) -> Config:
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data),
        trainer=dataclasses.replace(config.trainer),
        model=dict(config.model),
    )


def _child(target: Any, name: str, key: str) -> Any:
    if dataclasses.is_dataclass(target) and name in _field_types(target):
        return getattr(target, name)
    if isinstance(target, dict) and name in target:
        return target[name]
    raise ValueError(f"--set {key}: unknown field {name!r}")


def _field_types(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _parse(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string: --set data.name=pendulum


def _set(target: Any, leaf: str, text: str, key: str) -> None:
    value = _parse(text)
    if isinstance(target, dict):
        if leaf in target and target[leaf] is not None and value is not None:
            value = _coerce(value, type(target[leaf]), key)
        target[leaf] = value
        return
    types_ = _field_types(target)
    if leaf not in types_:
        known = ", ".join(types_)
        raise ValueError(f"--set {key}: unknown field {leaf!r}; fields are {known}")
    setattr(target, leaf, _coerce(value, types_[leaf], key))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """`value` converted to `annotation` where that is lossless, else a ValueError."""
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"--set {key}: None is not allowed here")
    for option in options:
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (str, bool) and type(value) is option:
            return value
        if option is tuple and isinstance(value, list | tuple):
            return tuple(value)
        if option is list and isinstance(value, list | tuple):
            return list(value)
        if option is Any:
            return value
    names = " | ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"--set {key}: expected {names}, got {value!r}")


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)
