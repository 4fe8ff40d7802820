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
import inspect
import json
import pathlib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from causalvision.lookup import resolve


@dataclasses.dataclass
class TrainerConfig:
    """How to optimise: steps, batch, optimiser, schedule, checkpoints and logging.

    `batch_size` is the global batch over all devices and processes; it must be divisible by
    the number of devices. Gradients are clipped to `grad_clip_norm` (their global norm over
    every trained parameter), then `optimizer` ("adam", "adamw", "sgd" or a module path, see
    `causalvision.train.optim.OPTIMIZERS`) updates them at the rate of `schedule`
    ("constant", "cosine", "warmup_cosine", with `warmup_steps`, or a module path).

    `param_groups` gives groups of parameters their own settings, e.g.
    `{"attributes": {"learning_rate": 5e-3}}`: the model names its groups
    (`model.parameter_groups()`), and any of `optimizer`, `learning_rate`, `schedule`,
    `warmup_steps` and `weight_decay` may differ per group (`optax.multi_transform`).

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
    param_groups: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
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

    `name` is a dataset's lookup name (one of `causalvision.data.DATASETS`) or a module path
    "package.module:Class"; `options` are its constructor's keywords (e.g.
    `{"image_size": 32}`). `source` is "generated" (render examples from the
    dataset's SCM, deterministic in `seed`) or "tfds" (read a dataset built by
    `causalvision data build` from `data_dir`).
    """

    name: str | None = None
    source: str = "generated"
    size: int = 60_000
    eval_size: int = 1_000
    seed: int = 0
    data_dir: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    shuffle: bool = True


@dataclasses.dataclass
class Config:
    """A whole experiment: the task by name, its model settings, data, trainer and evaluators.

    `model` holds the task's typed settings (a dict in experiment files, turned into the
    task's settings dataclass by `load_config`). `evals` names the evaluators that
    `causalvision evaluate` runs, `{name: {"type": evaluator, **settings}}`; empty means the
    task's defaults.
    """

    task: str
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    model: Any = dataclasses.field(default_factory=dict)
    evals: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


#: The layout of a run's config.json; older layouts are upgraded on load (`upgrade_config`).
CONFIG_VERSION = 2


def config_to_dict(config: Config) -> dict[str, Any]:
    """`config` as plain JSON-ready values, with the layout version (what config.json holds)."""
    return {"version": CONFIG_VERSION, **dataclasses.asdict(config)}


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """The `Config` that `config_to_dict` (e.g. a run's config.json) describes.

    Layouts older than `CONFIG_VERSION` are upgraded first (`upgrade_config`), and the model
    settings are typed by the task (`complete_config`).

    Raises:
      ValueError: `values` is not an object of config sections, or misses "task".
    """
    if not isinstance(values, Mapping):
        raise ValueError(f"config: expected a JSON object of sections, got {type(values).__name__}")
    if "task" not in values:
        raise ValueError(f"config: no 'task' among the sections {sorted(values)}")
    values = upgrade_config(values)
    config = Config(
        task=values["task"],
        data=structure(DataConfig, values.get("data", {}), "data"),
        trainer=structure(TrainerConfig, values.get("trainer", {}), "trainer"),
        model=values.get("model", {}),
        evals=dict(values.get("evals", {})),
    )
    return complete_config(config)


def upgrade_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A config.json of an older layout in today's layout (a copy; today's is returned as is).

    Version 1 (no "version" key, causalvision 0.1): a dataset's image size was
    `data.image_size` (now one of `data.options`, for datasets that take it); a deep SCM's
    image-model settings sat beside its own in `model`, and it ordered and standardised its
    parents as fixed in code (the dataset's `deep_scm_v1`, kept in `model.order` and
    `model.standardise`);
    attribute predictors standardised their targets by the data (`model.standardise`).
    Upgraded runs restore to the same model.
    """
    values = json.loads(json.dumps(values))  # a deep copy of plain JSON values
    version = values.pop("version", 1)
    if version == CONFIG_VERSION:
        return values
    if version != 1:
        raise ValueError(f"config: layout version {version!r} is newer than this causalvision")
    data = values.setdefault("data", {})
    image_size = data.pop("image_size", None)
    dataset = _dataset_type(data)
    if image_size is not None and "image_size" in inspect.signature(dataset).parameters:
        data.setdefault("options", {})["image_size"] = image_size
    model = values.get("model", {})
    task = values.get("task")
    if task == "deep_scm":
        own = {"image_model", "prior_dropout"}
        values["model"] = {k: v for k, v in model.items() if k in own}
        values["model"]["image"] = {k: v for k, v in model.items() if k not in own}
        legacy = getattr(dataset, "deep_scm_v1", {})
        values["model"]["order"] = list(legacy.get("order", ()))
        values["model"]["standardise"] = dict(legacy.get("standardise", {}))
    elif task == "attribute_predictor":
        values["model"] = {**model, "standardise": "data"}
    return values


def _dataset_type(data: Mapping[str, Any]) -> Any:
    from causalvision.data import DATASETS

    # 0.1 configs always named their dataset; its default was the first catalogue entry.
    return resolve(data.get("name") or next(iter(DATASETS)), DATASETS, "data.name")


def complete_config(config: Config) -> Config:
    """`config` with its model settings typed and completed by its task (see `TaskSpec`)."""
    from causalvision.train.tasks import get_task

    return get_task(config.task).complete_config(config)


def structure(cls: type, values: Any, argument: str) -> Any:
    """An instance of the dataclass `cls` from a dict of its fields (nested ones too).

    Each value is converted to its field's annotation where that is lossless (lists to tuples,
    ints to floats, dicts to nested dataclasses); an unknown field or a value of the wrong
    type is a `ValueError` naming `argument.field`. An instance of `cls` is returned as is.
    """
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ValueError(f"{argument}: expected a dict of {cls.__name__} fields, got {values!r}")
    types = _field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"{argument}: unknown field(s) {unknown}; fields are {', '.join(types)}")
    kwargs = {
        name: _coerce(value, types[name], f"{argument}.{name}") for name, value in values.items()
    }
    return cls(**kwargs)


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
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            message = f"config: {str(file)!r} is not a run's config.json ({error})"
            raise ValueError(message) from error
        return apply_overrides(config, overrides)
    if file.suffix != ".py":
        raise ValueError(
            f"config: expected an experiment .py file or a run's config.json, got {str(file)!r}"
        )
    module_spec = importlib.util.spec_from_file_location(f"_causalvision_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as error:  # the user's file, not our bug: one line, where and what
        raise ValueError(
            f"config: {str(file)!r} line {error.lineno}: {error.msg} ({(error.text or '').strip()})"
        ) from None
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise ValueError(f"config: {str(file)!r} defines no get_config(preset)")
    config = get_config(preset or "default")
    if not isinstance(config, Config):
        raise ValueError(f"config: get_config returned {type(config).__name__}, not a Config")
    return apply_overrides(complete_config(config), overrides)


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """A copy of `config` with each "dotted.key=value" applied (values are Python literals).

    Each value is checked against the type of the field it replaces; `config` itself is
    never changed. The model settings are typed again by the task afterwards.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        config = _updated(config, key.strip().split("."), text.strip(), key.strip())
    return complete_config(config) if overrides else _deep_copy(config)


def _deep_copy(config: Config) -> Config:
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, options=dict(config.data.options)),
        trainer=dataclasses.replace(config.trainer, param_groups=dict(config.trainer.param_groups)),
        model=dict(config.model) if isinstance(config.model, dict) else config.model,
        evals=dict(config.evals),
    )


def _updated(target: Any, keys: Sequence[str], text: str, key: str) -> Any:
    """`target` with the field at `keys` set to the literal `text` (a new object, or dict)."""
    name, rest = keys[0], keys[1:]
    if dataclasses.is_dataclass(target):
        types = _field_types(target)
        if name not in types:
            raise ValueError(f"--set {key}: unknown field {name!r}; fields are {', '.join(types)}")
        if rest:
            value = _updated(getattr(target, name), rest, text, key)
        else:
            annotation = types[name]
            if annotation is Any and not isinstance(getattr(target, name), dict):
                annotation = type(getattr(target, name))  # e.g. a typed model's settings
            value = _coerce(_parse(text), annotation, f"--set {key}")
        return dataclasses.replace(target, **{name: value})
    if isinstance(target, dict):
        if rest:
            if name not in target:
                raise ValueError(f"--set {key}: unknown field {name!r}")
            return {**target, name: _updated(target[name], rest, text, key)}
        value = _parse(text)
        if target.get(name) is not None and value is not None:
            value = _coerce(value, type(target[name]), f"--set {key}")
        return {**target, name: value}
    raise ValueError(f"--set {key}: unknown field {name!r}")


def _field_types(obj: Any) -> dict[str, Any]:
    cls = obj if isinstance(obj, type) else type(obj)
    return typing.get_type_hints(cls)


def _parse(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string: --set trainer.optimizer=adamw


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """`value` converted to `annotation` where that is lossless, else a ValueError."""
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if value is None:
        if type(None) in options or annotation is Any:
            return None
        raise ValueError(f"{key}: None is not allowed here")
    for option in options:
        if option is Any:
            return value
        base = typing.get_origin(option) or option
        args = typing.get_args(option)
        if base is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool) and type(value) is base:
            return value
        if base in (tuple, list) and isinstance(value, list | tuple):
            if base is tuple and args and args[-1] is not Ellipsis:
                if len(args) != len(value):
                    raise ValueError(f"{key}: expected {len(args)} values, got {value!r}")
                items = [_coerce(v, a, key) for v, a in zip(value, args, strict=True)]
            else:
                items = [_coerce(v, args[0], key) if args else v for v in value]
            return base(items)
        if base is dict and isinstance(value, Mapping):
            if not args:
                return dict(value)
            return {_coerce(k, args[0], key): _coerce(v, args[1], key) for k, v in value.items()}
        if dataclasses.is_dataclass(base) and isinstance(base, type):
            if isinstance(value, base):
                return value
            if isinstance(value, Mapping):
                return structure(base, value, key)
    names = " | ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"{key}: expected {names}, got {value!r}")


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)
