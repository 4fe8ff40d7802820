"""Counterfactual images from a trained deep SCM run: load it, pick examples, intervene, score.

Works on a run of any dataset and any image model: the dataset (`config.data`) says which
attributes exist and renders the exact counterfactuals, the run's model is an ordinary SCM.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.audit.objects import ModelSubject
from causalvision.data import (
    Dataset,
    GeneratedSource,
    check_attributes,
    quantize_image,
    stack_examples,
)
from causalvision.metrics import CounterfactualSubject, batched, run_evaluators
from causalvision.scm import SCM
from causalvision.train import Config, get_task, load_run
from causalvision.train.data import dataset_of
from causalvision.validation import check_int

#: Chunk of every model counterfactual: one compilation per intervention serves any count.
CHUNK = 64


def load_deep_scm(workdir: str | pathlib.Path, **image_options: Any) -> tuple[Config, Any, SCM]:
    """(config, trained model — EMA weights if kept —, its `SCM`) of a deep SCM run.

    The model is anything with `scm(**image_options)` (a `DeepSCM`, or a counterfactually
    tuned one); `image_options` go to the image model's mechanism (e.g. `pixel_noise`).
    """
    config, result = load_run(workdir)
    model = result.ema_model if result.ema_model is not None else result.model
    if not callable(getattr(model, "scm", None)):
        raise ValueError(f"workdir: holds a {config.task!r} run, not a deep SCM")
    return config, model, model.scm(**image_options)


def held_out_examples(config: Config, num: int, seed_offset: int = 2) -> dict[str, Any]:
    """`num` examples the run never saw (seed `data.seed + 2`: train used +0, eval +1).

    Returns the attributes `(N,)`, the dataset's exogenous fields and "image" `(N, H, W, C)`
    float32 on the uint8 storage grid.
    """
    batch = _stored_held_out(config, num, seed_offset)
    batch["image"] = batch["image"].astype(np.float32)
    return batch


def _stored_held_out(config: Config, num: int, seed_offset: int = 2) -> dict[str, Any]:
    """`held_out_examples` as stored: uint8 images."""
    num = check_int(num, "n", 1)
    source = GeneratedSource(dataset_of(config.data), num, seed=config.data.seed + seed_offset)
    return stack_examples([source[i] for i in range(num)])


def parse_do(text: str, dataset: Dataset) -> dict[str, float]:
    """ "a=4.0,b=3" -> {"a": 4.0, "b": 3.0}, where a and b are attributes of `dataset`."""
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in dataset.attributes:
            raise ValueError(
                f"--do: expected NODE=VALUE with NODE in {dataset.attributes}, got {part!r}"
            )
        try:
            out[name] = float(value)
        except ValueError as error:
            raise ValueError(f"--do: {name}={value!r} is not a number") from error
    check_attributes(dataset.attribute_specs, out, "--do")  # e.g. digit=3.7 is no class
    return out


def _do_arrays(do: Mapping[str, float], num: int, dataset: Dataset) -> dict[str, jax.Array]:
    specs = {spec.name: spec for spec in dataset.attribute_specs}
    return {
        name: jnp.full((num,), value, jnp.int32 if specs[name].categorical else jnp.float32)
        for name, value in do.items()
    }


def _world(scm: SCM, dataset: Dataset) -> Callable:
    """`(images, parents, do) -> counterfactual world` (every node) for one chunk."""
    categorical = {spec.name for spec in dataset.attribute_specs if spec.categorical}

    def world(images, parents, do):
        factual = {n: parents[n] for n in dataset.attributes}
        for name in categorical:
            factual[name] = jnp.asarray(factual[name]).astype(jnp.int32)
        return scm.counterfactual({**factual, "image": images}, dict(do))

    return world


def model_counterfactual(
    scm: SCM, examples: Mapping[str, Any], do: Mapping[str, float], dataset: Dataset
) -> dict:
    """The deep SCM's counterfactual of `examples` under `do` (attributes and image).

    Runs in the same padded chunks as `image_counterfactual_fn`, so both share compilations.
    """
    num = len(examples["image"])
    parents = {n: examples[n] for n in dataset.attributes}
    return batched(_world(scm, dataset), CHUNK)(
        examples["image"], parents, _do_arrays(do, num, dataset)
    )


def true_counterfactual(
    examples: Mapping[str, Any], do: Mapping[str, float], dataset: Dataset
) -> dict:
    """The generator's exact counterfactual, image on the uint8 grid as float32."""
    num = len(examples["image"])
    cf = dict(dataset.counterfactual(examples, _do_arrays(do, num, dataset)))
    cf["image"] = quantize_image(dataset, cf["image"]).astype(np.float32)
    return cf


def label(do: Mapping[str, float]) -> str:
    return "do(" + ", ".join(f"{k}={v:g}" for k, v in do.items()) + ")"


def image_counterfactual_fn(
    scm: SCM, dataset: Dataset, batch_size: int = CHUNK
) -> Callable[[Any, Mapping[str, Any], Mapping[str, Any]], jax.Array]:
    """`cf_fn(images, parents, do) -> counterfactual images` of a deep SCM (the metrics' form).

    It runs in chunks padded to `batch_size` (`causalvision.metrics.batched`): one compiled
    counterfactual per set of intervened nodes serves every number of images, so metrics,
    grids and commands on the same run share it (with `model_counterfactual` too: both call
    the same jitted `scm.counterfactual` on the same chunks).
    """
    world = _world(scm, dataset)
    return batched(lambda images, parents, do: world(images, parents, do)["image"], batch_size)


def counterfactual_rows(
    scm: SCM,
    examples: Mapping[str, Any],
    interventions: Sequence[Mapping[str, float]],
    dataset: Dataset,
) -> dict[str, np.ndarray]:
    """Grid rows: for each intervention the model's and the true counterfactual images."""
    rows = {}
    for do in interventions:
        model = model_counterfactual(scm, examples, do, dataset)
        rows[f"model {label(do)}"] = np.asarray(model["image"])
        rows[f"true {label(do)}"] = true_counterfactual(examples, do, dataset)["image"]
    return rows


def attribute_oracle(workdir: str | pathlib.Path) -> Callable[[Any], dict[str, jax.Array]]:
    """`images (N, H, W, C) in [0, 255] -> {attribute: (N,)}` from a trained predictor run."""
    from flax import nnx

    config, result = load_run(workdir)
    if config.task != "attribute_predictor":
        raise ValueError(f"oracle: {str(workdir)!r} holds a {config.task!r} run")
    model = result.ema_model if result.ema_model is not None else result.model
    graphdef, state = nnx.split(model)

    @jax.jit
    def predict(images):
        predictor = nnx.merge(graphdef, state)
        return predictor.natural(predictor(images.astype(jnp.float32) / 255.0))

    return predict


def evaluate_run(
    workdir: str | pathlib.Path,
    out: str | pathlib.Path,
    *,
    oracle_workdir: str | pathlib.Path | None = None,
    num: int = 256,
    seed: int = 0,
    evals: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[str, str, float], None] | None = None,
    **image_options: Any,
) -> dict[str, Any]:
    """Runs a trained run's evaluators and writes `metrics.json` (and their images) to `out`.

    A deep SCM's evaluators receive a `CounterfactualSubject`; any other run's (e.g. a slot
    autoencoder's object discovery) a `ModelSubject` with its model and held-out examples.

    The evaluators are `evals`, else the run's `config.evals`, else its task's defaults (for
    deep SCMs the counterfactual protocol of REFERENCE §3 and image grids). They score
    `num` held-out examples; effectiveness reads attributes with the dataset's exact
    `measure` (if it has one) and, with `oracle_workdir`, a trained attribute predictor.
    `progress(evaluator, name, value)` is called as each value comes.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config, result = load_run(workdir)
    model = result.ema_model if result.ema_model is not None else result.model
    if not callable(getattr(model, "scm", None)):
        if oracle_workdir is not None:
            raise ValueError(
                f"oracle: an attribute oracle scores deep SCM counterfactuals, but "
                f"{str(workdir)!r} holds a {config.task!r} run"
            )
        if image_options:
            raise ValueError(
                f"{sorted(image_options)}: options of a deep SCM's image mechanism, but "
                f"{str(workdir)!r} holds a {config.task!r} run"
            )
        subject = ModelSubject(
            model,
            _stored_held_out(config, num),
            dataset_of(config.data),
            jax.random.key(seed),
            out,
        )
        return _run_and_write(
            evals or config.evals or _default_evals(config),
            subject,
            out,
            {"run": str(workdir), "num_examples": num},
            progress,
        )
    scm = model.scm(**image_options)
    dataset = dataset_of(config.data)
    # Stored uint8 images: float ones would be read as renders on the dataset's own scale.
    examples = _stored_held_out(config, num)
    oracles = {}
    if dataset.measure is not None:
        oracles["measured"] = dataset.measure
    if oracle_workdir is not None:
        oracles["predicted"] = attribute_oracle(oracle_workdir)
    evals = evals or config.evals or _default_evals(config)
    subject = CounterfactualSubject(
        image_counterfactual_fn(scm, dataset),
        examples,
        key=jax.random.key(seed),
        dataset=dataset,
        oracle=oracles or None,
        out=out,
        context={"scm": scm, "title": str(workdir)},
    )
    metrics: dict[str, Any] = {"run": str(workdir), **image_options, "num_examples": num}
    return _run_and_write(evals, subject, out, metrics, progress)


def _run_and_write(evals, subject, out: pathlib.Path, metrics: dict, progress) -> dict[str, Any]:
    """Runs `evals` on `subject`, adding each value to `metrics`; writes `out/metrics.json`."""
    for evaluator, name, value in run_evaluators(evals, subject):
        metrics[name] = value
        if progress is not None:
            progress(evaluator, name, value)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _default_evals(config: Config) -> dict[str, dict[str, Any]]:
    task = get_task(config.task)
    if task.evals is None:
        raise ValueError(f"evals: the {config.task!r} task has no default evaluators; name some")
    return task.evals(config)
