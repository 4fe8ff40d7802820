"""Counterfactual images from a trained deep SCM run: load it, pick examples, intervene."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.data import GeneratedSource, MorphoDigits, quantize_image, stack_examples
from causalvision.metrics import batched, evaluate_counterfactuals
from causalvision.scm import SCM
from causalvision.train import Config, load_run

ATTRIBUTES = ("digit", "thickness", "intensity")


def load_deep_scm(
    workdir: str | pathlib.Path, pixel_noise: str = "abduct"
) -> tuple[Config, Any, SCM]:
    """(config, trained `DeepSCM` — EMA weights if kept —, its `SCM`) of a run in `workdir`.

    `pixel_noise` ("abduct" or "mean") is passed to the image mechanism.
    """
    config, result = load_run(workdir)
    if config.task not in ("deep_scm", "deep_scm_cf"):
        raise ValueError(f"workdir: holds a {config.task!r} run, not a deep_scm one")
    model = result.ema_model if result.ema_model is not None else result.model
    if config.task == "deep_scm_cf":  # counterfactually fine-tuned: the tuner wraps the SCM
        model = model.deep
    return config, model, model.scm(pixel_noise)


def held_out_examples(config: Config, num: int, seed_offset: int = 2) -> dict[str, Any]:
    """`num` Morpho examples the run never saw (seed `data.seed + 2`: train used +0, eval +1).

    Returns attributes `(N,)`, "style" and "image" `(N, 32, 32, 1)` float32 on the uint8 grid.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"n: expected a positive int, got {num!r}")
    source = GeneratedSource(MorphoDigits(), num, seed=config.data.seed + seed_offset)
    batch = stack_examples([source[i] for i in range(num)])
    batch["image"] = batch["image"].astype(np.float32)
    return batch


def parse_do(text: str) -> dict[str, float]:
    """ "thickness=4.0,digit=3" -> {"thickness": 4.0, "digit": 3.0}."""
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in ATTRIBUTES:
            raise ValueError(f"--do: expected NODE=VALUE with NODE in {ATTRIBUTES}, got {part!r}")
        try:
            out[name] = float(value)
        except ValueError as error:
            raise ValueError(f"--do: {name}={value!r} is not a number") from error
    return out


def _do_arrays(do: Mapping[str, float], num: int) -> dict[str, jax.Array]:
    return {
        name: jnp.full((num,), value, jnp.int32 if name == "digit" else jnp.float32)
        for name, value in do.items()
    }


def model_counterfactual(scm: SCM, examples: Mapping[str, Any], do: Mapping[str, float]) -> dict:
    """The deep SCM's counterfactual of `examples` under `do` (attributes and image).

    Runs in the same padded chunks as `image_counterfactual_fn`, so both share compilations.
    """
    num = len(examples["image"])
    parents = {n: examples[n] for n in ATTRIBUTES}
    return batched(_world(scm), 64)(examples["image"], parents, _do_arrays(do, num))


def true_counterfactual(examples: Mapping[str, Any], do: Mapping[str, float]) -> dict:
    """The generator's exact counterfactual, image on the uint8 grid as float32."""
    cf = MorphoDigits().counterfactual(examples, _do_arrays(do, len(examples["digit"])))
    cf["image"] = quantize_image("morpho_digits", cf["image"]).astype(np.float32)
    return cf


def label(do: Mapping[str, float]) -> str:
    return "do(" + ", ".join(f"{k}={v:g}" for k, v in do.items()) + ")"


def _world(scm: SCM) -> Any:
    """`(images, parents, do) -> counterfactual world` (every node) for one chunk."""

    def world(images, parents, do):
        factual = {**{n: parents[n] for n in ATTRIBUTES}, "image": images}
        factual["digit"] = jnp.asarray(factual["digit"]).astype(jnp.int32)
        return scm.counterfactual(factual, dict(do))

    return world


def image_counterfactual_fn(
    scm: SCM, batch_size: int = 64
) -> Callable[[Any, Mapping[str, Any], Mapping[str, Any]], jax.Array]:
    """`cf_fn(images, parents, do) -> counterfactual images` of a deep SCM (the metrics' form).

    It runs in chunks padded to `batch_size` (`causalvision.metrics.batched`): one compiled
    counterfactual per set of intervened nodes serves every number of images, so metrics,
    grids and commands on the same run share it (with `model_counterfactual` too: both call
    the same jitted `scm.counterfactual` on the same chunks).
    """
    world = _world(scm)
    return batched(lambda images, parents, do: world(images, parents, do)["image"], batch_size)


def counterfactual_rows(
    scm: SCM, examples: Mapping[str, Any], interventions: Sequence[Mapping[str, float]]
) -> dict[str, np.ndarray]:
    """Grid rows: for each intervention the model's and the true counterfactual images."""
    rows = {}
    for do in interventions:
        rows[f"model {label(do)}"] = np.asarray(model_counterfactual(scm, examples, do)["image"])
        rows[f"true {label(do)}"] = true_counterfactual(examples, do)["image"]
    return rows


def attribute_oracle(workdir: str | pathlib.Path):
    """`images (N, 32, 32, 1) in [0, 255] -> {attribute: (N,)}` from a trained predictor run."""
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
    grid_size: int = 12,
    pixel_noise: str = "abduct",
) -> dict[str, float]:
    """Scores a deep SCM run's counterfactuals and writes `metrics.json` and grids to `out`.

    Metrics (REFERENCE §3, `causalvision.metrics.evaluate_counterfactuals`) on `num` held-out
    examples: composition, reversibility, effectiveness under do(thickness), do(intensity),
    do(digit) and a random subset — measured by exact morphometry and, with
    `oracle_workdir`, by a trained attribute predictor — commutativity, and the error against
    the generator's exact counterfactuals.
    """
    import json

    from causalvision.audit.grids import counterfactual_grid

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config, _, scm = load_deep_scm(workdir, pixel_noise)
    examples = held_out_examples(config, num)
    oracles = {"measured": MorphoDigits.measure}
    if oracle_workdir is not None:
        oracles["predicted"] = attribute_oracle(oracle_workdir)

    metrics = evaluate_counterfactuals(
        image_counterfactual_fn(scm),
        {k: examples[k] for k in (*ATTRIBUTES, "style", "image")},
        key=jax.random.key(seed),
        dataset=MorphoDigits(),
        oracle=oracles,
    )
    metrics = {"run": str(workdir), "pixel_noise": pixel_noise, "num_examples": num, **metrics}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    shown = {k: v[:grid_size] for k, v in examples.items() if k != "style"}
    shown["style"] = {k: v[:grid_size] for k, v in examples["style"].items()}
    for do in ({"thickness": 4.5}, {"thickness": 1.5}, {"intensity": 110.0}, {"digit": 3.0}):
        name = "_".join(f"{k}{v:g}" for k, v in do.items())
        counterfactual_grid(
            shown["image"],
            counterfactual_rows(scm, shown, [do]),
            out / f"counterfactuals_{name}.png",
            title=f"{label(do)}: model vs exact ground truth",
        )
    return metrics
