"""The one generic trainer: any Flax NNX model, any loss, any random-access data source.

The whole optimisation step is one `jax.jit` of a pure function of (state, batch), with the
state buffers donated: the NNX model and optimiser are split once into a static graph and a
state pytree (the fast path of REFERENCE §9.1), merged inside the step, and split again on
the way out. The batch is sharded over a 1-D "data" mesh and the state replicated, so the
same code runs on one CPU, 8 fake CPU devices or a multi-host pod; XLA inserts the gradient
all-reduce. The seed gives three independent PRNG streams (`prng_streams`): parameter
initialisation, training steps (step k uses `fold_in(train key, k)`) and evaluation; the data
iterator's position is checkpointed with the state, so a resumed run replays exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from tqdm.auto import tqdm

from causalvision.data import make_pipeline
from causalvision.scm import lenient_promotion
from causalvision.train import distributed
from causalvision.train.checkpoint import Checkpointer, abstract_like
from causalvision.train.config import Config, TrainerConfig, config_from_dict, config_to_dict
from causalvision.train.metrics_io import MetricWriter, plot_curves
from causalvision.train.optim import global_norm, learning_rate_schedule, make_optimizer
from causalvision.train.workdir import owned
from causalvision.validation import check_int

Batch = Mapping[str, Any]
LossFn = Callable[[nnx.Module, Batch, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]
EvalFn = Callable[[nnx.Module, Batch, jax.Array], Mapping[str, jax.Array]]
Hook = Callable[[int, nnx.Module], Mapping[str, float] | None]


class NonFiniteLossError(FloatingPointError, ValueError):
    """The loss or the gradients became NaN or infinite; the run stopped without saving.

    A ValueError too: the remedy is in the input (learning rate, clipping, data), and the
    command line reports ValueErrors in one line.
    """


@dataclasses.dataclass(frozen=True)
class Task:
    """What to train.

    Attributes:
      init_model: builds the NNX model from `nnx.Rngs` (called identically on every process).
      loss: `(model, batch, key) -> (scalar loss, {name: scalar})`, traced inside `jit`; the
        batch holds arrays with a leading global-batch axis.
      train_source: random-access source of per-example dicts (`len`, `[i]`).
      eval_source: optional source for periodic evaluation.
      eval_metrics: `(model, batch, key) -> {name: scalar}` averaged over evaluation batches;
        the key of evaluation batch b is `fold_in(eval key, b)`, the same at every evaluation.
      prepare: runs inside `jit` on each batch first (e.g. uint8 images -> float), so the
        host ships compact arrays.
      transforms: per-example host-side maps applied by the data pipeline.
      trainable: NNX filter of the variables the optimiser updates (default every
        `nnx.Param`); anything else in the model stays frozen, e.g. a pretrained predictor.
      trainable_groups: instead of `trainable`, the names of the model's parameter groups
        (`model.parameter_groups()`) the optimiser updates.
      loss_takes_step: the training loss is called as `loss(model, batch, key, step=step)`,
        the step a traced int32 scalar, for schedules inside the objective (KL annealing).
    """

    init_model: Callable[[nnx.Rngs], nnx.Module]
    loss: LossFn
    train_source: Any
    eval_source: Any = None
    eval_metrics: EvalFn | None = None
    prepare: Callable[[Batch], Batch] | None = None
    transforms: Sequence[Callable[[dict], dict]] = ()
    trainable: Any = nnx.Param
    trainable_groups: tuple[str, ...] | None = None
    loss_takes_step: bool = False


# The training and evaluation streams branch off the seed's key at tags no count of
# initialisation draws reaches (`nnx.Rngs(key)` draws with fold_in(key, 0), (key, 1), ...).
_STREAM_TAGS = {"train": 2**31 - 1, "eval": 2**31 - 2}


def prng_streams(seed: int) -> dict[str, jax.Array]:
    """Keys of three independent streams from one seed: "init" (the parameters, drawn by
    `nnx.Rngs(key)` as `nnx.Rngs(seed)` draws them), "train" (step k uses
    `fold_in(key, k)`) and "eval", so no initialisation draw ever equals a training draw."""
    root = jax.random.key(seed)
    return {
        "init": root,
        **{name: jax.random.fold_in(root, tag) for name, tag in _STREAM_TAGS.items()},
    }


@dataclasses.dataclass
class TrainResult:
    """The trained model (and its parameter EMA, if kept) after `step` steps."""

    model: nnx.Module
    ema_model: nnx.Module | None
    step: int
    workdir: pathlib.Path


def train_and_evaluate(
    config: Config, workdir: str | pathlib.Path, *, hooks: Sequence[Hook] = ()
) -> TrainResult:
    """Builds the task named by `config.task` and trains it in `workdir` (resuming if possible).

    `hooks` are evaluation hooks as for `train`. The completed config (typed model settings,
    with what they derive from the data) is written to `workdir/config.json`, after the task
    was built and the workdir taken, so a refused run leaves the workdir as it was.

    Raises:
      ValueError: an unknown task or dataset, bad settings, or an unusable workdir.
      WorkdirBusyError: another run holds `workdir`.
    """
    from causalvision.train.config import complete_config
    from causalvision.train.tasks import build_task

    config = complete_config(config)
    task = build_task(config)
    mesh = _checked_mesh(config.trainer)
    with owned(workdir) as workdir:
        if jax.process_index() == 0:
            _write_atomically(workdir / "config.json", json.dumps(config_to_dict(config), indent=2))
        return _train(task, config.trainer, workdir, mesh, hooks, shuffle=config.data.shuffle)


def train(
    task: Task,
    config: TrainerConfig,
    workdir: str | pathlib.Path,
    *,
    hooks: Sequence[Hook] = (),
    shuffle: bool = True,
) -> TrainResult:
    """Trains `task` for `config.num_steps` steps, resuming from `workdir` if it has a checkpoint.

    Writes `workdir/checkpoints/<step>/`, `metrics.jsonl` (train lines every `log_every`
    steps, eval lines every `eval_every`), `curves.png` at the end and, with
    `config.tensorboard`, TensorBoard events. `hooks` are called as `hook(step, model)` at
    each evaluation and may return more metrics to log. The run holds `workdir` (see
    `causalvision.train.workdir`) until it returns or raises.

    Raises:
      ValueError: bad settings, or a workdir that is a file or not writable.
      WorkdirBusyError: another run holds `workdir`.
      NonFiniteLossError: the loss or gradients became non-finite; the run stops before any
        checkpoint of the bad state is written.
      CheckpointSaveError: a checkpoint could not be written; the run stops at the next step.
    """
    mesh = _checked_mesh(config)
    with owned(workdir) as workdir:
        return _train(task, config, workdir, mesh, hooks, shuffle=shuffle)


def _checked_mesh(config: TrainerConfig) -> Mesh:
    """The data mesh, once `config` is known to be valid for it."""
    _check_trainer_config(config)
    mesh = distributed.data_mesh()
    if config.batch_size % mesh.size:
        raise ValueError(
            f"trainer.batch_size: {config.batch_size} is not divisible by the {mesh.size} devices"
        )
    return mesh


def _write_atomically(path: pathlib.Path, text: str) -> None:
    """Writes `text` to `path` so that a reader (or a crash) never sees half a file."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    partial.replace(path)


def _train(
    task: Task,
    config: TrainerConfig,
    workdir: pathlib.Path,
    mesh: Mesh,
    hooks: Sequence[Hook],
    *,
    shuffle: bool,
) -> TrainResult:
    """`train` in a workdir this run holds."""
    process, processes = jax.process_index(), jax.process_count()
    iterator = iter(
        make_pipeline(
            task.train_source,
            batch_size=config.batch_size // processes,
            seed=config.seed,
            shuffle=shuffle,
            shard=(process, processes),
            transforms=task.transforms,
        )
    )
    graphdef, state, shardings = _initial_state(task, config, mesh)
    step_fn = jax.jit(
        _make_train_step(graphdef, task, config),
        donate_argnums=0,
        out_shardings=(shardings, distributed.replicated(mesh)),
    )
    eval_fn = _make_eval_fn(graphdef, task) if task.eval_metrics is not None else None
    stop = _StopRequest()

    with contextlib.ExitStack() as cleanup:
        checkpointer = cleanup.enter_context(
            Checkpointer(workdir / "checkpoints", max_to_keep=config.max_to_keep)
        )
        restored = checkpointer.restore(abstract_like(state), iterator)
        if restored is not None:
            _, state, _ = restored
        step = int(jax.device_get(state["step"]))
        # Tracked here: reading the step list from disk while a save is in flight makes orbax
        # try to delete an old step twice.
        saved = step if restored is not None else None
        writer = None
        if process == 0:
            writer = MetricWriter(workdir, tensorboard=config.tensorboard)
            cleanup.callback(writer.close)
        progress = tqdm(
            total=config.num_steps,
            initial=step,
            desc="train",
            disable=not config.progress or process != 0,
            dynamic_ncols=True,
        )
        cleanup.callback(progress.close)

        def save(at: int) -> None:
            _raise_if_nonfinite(state, checkpointer)
            meta = {"step": at, "processes": processes, "devices": mesh.size}
            checkpointer.save(at, state, iterator, meta)

        pending: list[Mapping[str, jax.Array]] = []
        tick, tick_step = time.perf_counter(), step
        with stop.on_signals():
            while step < config.num_steps and not stop.requested:
                checkpointer.raise_if_failed()  # a failed save stops the run at once
                batch = distributed.put_batch(next(iterator), mesh)
                state, metrics = step_fn(state, batch)
                pending.append(metrics)
                step += 1
                progress.update(1)
                if step % config.log_every == 0 or step == config.num_steps:
                    _raise_if_nonfinite(state, checkpointer)
                    now = time.perf_counter()
                    rate = (step - tick_step) / max(now - tick, 1e-9)
                    logged = _mean(pending)
                    logged["steps_per_second"] = rate
                    logged["examples_per_second"] = rate * config.batch_size
                    pending, tick, tick_step = [], now, step
                    progress.set_postfix(loss=f"{logged['loss']:.4g}")
                    if writer is not None:
                        writer.write(step, logged)
                if config.eval_every and (
                    step % config.eval_every == 0 or step == config.num_steps
                ):
                    results = _evaluate(task, eval_fn, state, graphdef, config, mesh, hooks, step)
                    if writer is not None and results:
                        writer.write(step, results, split="eval")
                    tick = time.perf_counter()  # evaluation time is not training throughput
                if step % config.checkpoint_every == 0:
                    save(step)
                    saved = step
        if saved != step:
            save(step)  # at exit: the last step, or where a SIGTERM stopped the run
        checkpointer.wait()
    if writer is not None and writer.path.exists():
        plot_curves(writer.path, workdir / "curves.png")
    return _result(graphdef, state, step, workdir)


def load_run(workdir: str | pathlib.Path, step: int | None = None) -> tuple[Config, TrainResult]:
    """The config and trained model of a `train_and_evaluate` run in `workdir`.

    Reads `config.json` (upgrading an older layout, see `upgrade_config`), rebuilds the model
    without its data and restores the newest readable checkpoint, or `step`. Reading takes
    no lock: a run may be loaded while it trains.
    """
    from causalvision.train.tasks import build_model

    workdir = pathlib.Path(workdir)
    path = workdir / "config.json"
    if not path.is_file():
        raise ValueError(f"workdir: {str(workdir)!r} has no config.json; is it a training run?")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"workdir: {str(path)!r} is not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(
            f"workdir: {str(path)!r}: expected a JSON object, got a {type(values).__name__}"
        )
    config = config_from_dict(values)
    task = Task(init_model=build_model(config), loss=_no_loss, train_source=())
    return config, restore(task, config.trainer, workdir, step=step)


def _no_loss(model, batch, key):
    raise RuntimeError("a model restored for inference cannot train")


def restore(
    task: Task, config: TrainerConfig, workdir: str | pathlib.Path, step: int | None = None
) -> TrainResult:
    """The model (and EMA) of the newest readable checkpoint in `workdir`, or of `step`.

    `task` must build the model of the run that wrote it; only the model's variables and
    their EMA are read, so the optimiser state's layout does not matter. The data sources
    are not read.
    """
    workdir = pathlib.Path(workdir)
    mesh = distributed.data_mesh()
    graphdef, state, _ = _initial_state(task, config, mesh)
    wanted = {"model_opt": {0: state["model_opt"][0]}}  # (model, optimizer)[0]
    if "ema" in state:
        wanted["ema"] = state["ema"]
    with Checkpointer(workdir / "checkpoints", read_only=True) as checkpointer:
        restored = checkpointer.restore(abstract_like(wanted), step=step, partial=True)
    if restored is None:
        raise FileNotFoundError(f"workdir: no checkpoint in {workdir / 'checkpoints'}")
    at, found, _ = restored
    state["model_opt"][0] = found["model_opt"][0]
    if "ema" in found:
        state["ema"] = found["ema"]
    return _result(graphdef, state, at, workdir)


def _initial_state(task: Task, config: TrainerConfig, mesh) -> tuple[nnx.GraphDef, dict, Any]:
    """The step-0 training state on the mesh, its static graph and its shardings.

    The state is a plain dict pytree: model and optimiser state, the step, the training
    stream's key (as raw uint32 data, which every checkpoint format stores), the first
    non-finite step (-1 if none) and, with `ema_decay`, the parameter EMA.
    """
    streams = prng_streams(config.seed)
    model = task.init_model(nnx.Rngs(streams["init"]))
    trainable, groups = _trainable(task, model)
    labels = _group_labels(model, trainable, groups) if config.param_groups else None
    optimizer = nnx.Optimizer(model, make_optimizer(config, labels, groups), wrt=trainable)
    graphdef, model_opt = nnx.split((model, optimizer))
    state = {
        "model_opt": model_opt,
        "step": jnp.zeros((), jnp.int32),
        "key": jax.random.key_data(streams["train"]),
        "nonfinite_step": jnp.full((), -1, jnp.int32),
    }
    if config.ema_decay is not None:
        state["ema"] = nnx.state(model, nnx.Param)
    shardings = distributed.state_sharding(state, mesh)
    return graphdef, distributed.put_state(state, shardings), shardings


def _trainable(task: Task, model: nnx.Module) -> tuple[Any, dict[str, Any] | None]:
    """The filter of the trained variables, and the model's trained parameter groups (None if
    it names none)."""
    groups = model.parameter_groups() if hasattr(model, "parameter_groups") else None
    if task.trainable_groups is None:
        return task.trainable, groups
    if groups is None:
        raise ValueError(f"trainable_groups: {type(model).__name__} names no parameter groups")
    unknown = sorted(set(task.trainable_groups) - set(groups))
    if unknown:
        raise ValueError(f"trainable_groups: {unknown} are not groups of {sorted(groups)}")
    groups = {name: groups[name] for name in task.trainable_groups}
    return nnx.Any(*groups.values()), groups


def _group_labels(model: nnx.Module, trainable: Any, groups: dict[str, Any] | None) -> Any:
    """A pytree of group names shaped like the trained state: the first group whose filter
    matches a parameter is its group (None if the model names no groups)."""
    if groups is None:
        return None
    predicates = {name: nnx.filterlib.to_predicate(f) for name, f in groups.items()}

    def label(path, variable):
        for name, predicate in predicates.items():
            if predicate(path, variable):
                return name
        raise ValueError(f"parameter_groups: {'/'.join(map(str, path))} is in no group")

    flat = nnx.to_flat_state(nnx.state(model, trainable))
    return nnx.from_flat_state([(path, label(path, v)) for path, v in flat])


def _result(graphdef: nnx.GraphDef, state: dict, step: int, workdir: pathlib.Path) -> TrainResult:
    model, _ = nnx.merge(graphdef, state["model_opt"])
    ema_model = None
    if "ema" in state:
        # merge() may hand out the state's own Variables: clone before overwriting them.
        ema_model = nnx.clone(model)
        nnx.update(ema_model, state["ema"])
    return TrainResult(model=model, ema_model=ema_model, step=step, workdir=workdir)


def _check_trainer_config(config: TrainerConfig) -> None:
    positive = ("num_steps", "batch_size", "log_every", "checkpoint_every", "max_to_keep")
    for name in positive:
        check_int(getattr(config, name), f"trainer.{name}", 1)
    if config.eval_every is not None:
        check_int(config.eval_every, "trainer.eval_every", 1)
    if config.ema_decay is not None and not 0.0 < config.ema_decay < 1.0:
        raise ValueError(f"trainer.ema_decay: expected in (0, 1) or None, got {config.ema_decay}")
    # The rule's name, learning rate, schedule and clipping, before any data is read.
    make_optimizer(dataclasses.replace(config, param_groups={}))


def _make_train_step(graphdef: nnx.GraphDef, task: Task, config: TrainerConfig) -> Callable:
    schedule = learning_rate_schedule(config)

    def train_step(state: dict, batch: Batch) -> tuple[dict, dict]:
        model, optimizer = nnx.merge(graphdef, state["model_opt"])
        step = state["step"]
        key = jax.random.fold_in(jax.random.wrap_key_data(state["key"]), step)
        if task.prepare is not None:
            batch = task.prepare(batch)

        # Differentiate only the trainable variables: split them off, merge inside the loss.
        static, trainable, frozen = nnx.split(model, task.trainable, ...)

        options = {"step": step} if task.loss_takes_step else {}

        def loss_fn(variables):
            return task.loss(nnx.merge(static, variables, frozen), batch, key, **options)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        with lenient_promotion():  # optax mixes its int step counters with floats
            optimizer.update(model, grads)
            learning_rate = jnp.asarray(schedule(step), jnp.float32)
        grad_norm = global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        new_state = dict(state)
        new_state["model_opt"] = nnx.state((model, optimizer))
        new_state["step"] = step + 1
        # Remember the first bad step; the host checks it before any checkpoint is written.
        first_bad = (state["nonfinite_step"] < 0) & ~finite
        new_state["nonfinite_step"] = jnp.where(first_bad, step, state["nonfinite_step"])
        if "ema" in state:
            # Warm the decay up as (1 + k) / (10 + k): with a fixed 0.999 the initial
            # parameters would still weigh 37% after 1000 steps.
            count = (step + 1).astype(jnp.float32)
            decay = jnp.minimum(jnp.float32(config.ema_decay), count / (count + 9))
            new_state["ema"] = jax.tree.map(
                lambda e, p: decay * e + (1 - decay) * p, state["ema"], nnx.state(model, nnx.Param)
            )
        metrics = {"loss": loss, "grad_norm": grad_norm, **aux}
        metrics["learning_rate"] = learning_rate
        return new_state, metrics

    return train_step


def _make_eval_fn(graphdef: nnx.GraphDef, task: Task) -> Callable:
    @jax.jit
    def eval_step(model_opt: Any, params: Any, batch: Batch, key: jax.Array) -> Mapping:
        model, _ = nnx.merge(graphdef, model_opt)
        nnx.update(model, params)
        if task.prepare is not None:
            batch = task.prepare(batch)
        return task.eval_metrics(model, batch, key)

    return eval_step


def _evaluate(task, eval_fn, state, graphdef, config, mesh, hooks, step) -> dict[str, float]:
    """Eval metrics over the eval source (EMA parameters if kept), plus what hooks return."""
    params = (
        state["ema"]
        if "ema" in state
        else nnx.state(nnx.merge(graphdef, state["model_opt"])[0], nnx.Param)
    )
    results: dict[str, float] = {}
    if eval_fn is not None and task.eval_source is not None:
        batches = make_pipeline(
            task.eval_source,
            batch_size=config.batch_size // jax.process_count(),
            shuffle=False,
            num_epochs=1,
            shard=(jax.process_index(), jax.process_count()),
            transforms=task.transforms,
        )
        values = []
        eval_key = prng_streams(config.seed)["eval"]
        for k, batch in enumerate(batches):
            if config.eval_batches is not None and k >= config.eval_batches:
                break
            key = jax.random.fold_in(eval_key, k)
            values.append(
                eval_fn(state["model_opt"], params, distributed.put_batch(batch, mesh), key)
            )
        if values:
            results.update(_mean(values))
    if hooks:
        model = nnx.clone(nnx.merge(graphdef, state["model_opt"])[0])  # never alias the state
        nnx.update(model, params)
        for hook in hooks:
            results.update({k: float(v) for k, v in (hook(step, model) or {}).items()})
    return results


def _mean(metrics: Sequence[Mapping[str, jax.Array]]) -> dict[str, float]:
    host = jax.device_get(list(metrics))
    return {name: float(np.mean([m[name] for m in host])) for name in host[0]}


def _raise_if_nonfinite(state: dict, checkpointer: Checkpointer) -> None:
    """Raises `NonFiniteLossError` if a step went non-finite, naming the newest checkpoint
    that reads back equal to its digests (never one merely present on disk)."""
    bad = int(jax.device_get(state["nonfinite_step"]))
    if bad < 0:
        return
    checkpointer.wait()  # let the last good checkpoint finish before reporting it
    good = checkpointer.newest_verified(abstract_like(state))
    where = (
        f"The newest checkpoint that verifies is step {good} in {checkpointer.directory}."
        if good is not None
        else f"No checkpoint in {checkpointer.directory} verifies: none was written, or "
        "all are damaged or older than digests."
    )
    raise NonFiniteLossError(
        f"the loss or its gradients became non-finite at step {bad}; stopping without "
        f"saving. {where} Lower the learning rate, clip gradients (trainer.grad_clip_norm) "
        "or check the data."
    )


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag, so the loop saves a checkpoint and exits cleanly."""

    def __init__(self):
        self.requested = False

    def on_signals(self):
        @contextlib.contextmanager
        def handlers():
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

            def request(signum, frame):
                if self.requested:  # a second signal: stop at once
                    signal.signal(signum, previous[signum])
                    raise KeyboardInterrupt
                self.requested = True

            for s in previous:
                signal.signal(s, request)
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

        return handlers()
