"""Counterfactual audits of image classifiers: does a prediction depend on an attribute?

A classifier here is any function from images `(N, H, W, C)` float32 on the dataset's uint8
storage grid (e.g. [0, 255]) to class probabilities `(N, K)` (`as_classifier` wraps an NNX
module, a trained `attribute_predictor` run, or a callable, and checks what it returns). For a
unit n with factual image x_n and its counterfactual x*_n under an intervention do(A = a)
(from a trained deep SCM through the SCM engine, or the generator's exact one), with
p = classifier(x), p* = classifier(x*):

- flip rate        F   = mean_n [argmax p*_n != argmax p_n]
- effect on class k ACE_k = mean_n (p*_nk − p_nk)    (the average causal effect of do(A = a)
                                                       on the probability of class k, relative
                                                       to each unit's factual world)
- on the factual class    mean_n (p*_nĉ − p_nĉ), ĉ_n = argmax p_n: each unit's own answer
                          (per-class effects of opposite sign in different groups of units
                          cancel in ACE_k; they add up here)
- direct part      ACE_k^direct with the image's other parents that descend from A (the
                   mediators, e.g. intensity under do(thickness)) held at their factual
                   values: the unit-level natural direct effect, the factual being the
                   baseline world (`SCM.nde`'s contrast, unit by unit);
  mediated part    ACE_k − ACE_k^direct (the effect that travels through the mediators).

Intervals are percentile bootstrap intervals over units (`num_bootstrap` resamples of the N
units with replacement, the `(1 − level)/2` and `(1 + level)/2` quantiles of the resampled
means; the key is the caller's). Where the dataset renders exact counterfactuals, each number
is also computed on them, and `generator_error` = model − exact says how much of an effect is
the deep SCM's error rather than the classifier's dependence.

`effect_map` is a causal effect map in the spirit of CEM (Hu et al. 2024, REFERENCE §7): the
image is cut into `patch` x `patch` blocks; block b of each factual image is replaced by the
same block of its counterfactual (do(block = its counterfactual content)) and the map holds
the mean total-variation change of the class distribution, ½ Σ_k |p_k(x with b) − p_k(x)|:
which regions carry the effect.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from causalvision.data import Dataset, check_attributes
from causalvision.metrics import batched
from causalvision.scm import SCM
from causalvision.validation import check_int, check_key, check_real

__all__ = [
    "ClassifierFn",
    "as_classifier",
    "audit_classifier",
    "bootstrap_mean",
    "effect_curve",
    "effect_map",
    "exact_counterfactuals",
    "mediators",
    "scm_counterfactuals",
]

#: A checked classifier: images `(N, H, W, C)` float32 on the storage grid -> class
#: probabilities `(N, K)` (what `as_classifier` returns and the audits call).
ClassifierFn = Callable[[np.ndarray], np.ndarray]
CHUNK = 64  # counterfactuals per compiled chunk (the SCM engine's; see counterfactuals.CHUNK)
CLASSIFIER_BATCH = 256  # images per classifier call
PROBABILITY_TOLERANCE = 1e-3  # |Σ_k p_k − 1| allowed in a classifier's output


def as_classifier(
    classifier: Any,
    *,
    num_classes: int | None = None,
    attribute: str | None = None,
    batch_size: int = CLASSIFIER_BATCH,
) -> ClassifierFn:
    """A checked `images (N, H, W, C) -> probabilities (N, K)` numpy function.

    Args:
      classifier: a callable from images to probabilities (a function or an NNX module
        whose `__call__` returns them), or the workdir (str or path) of a trained
        `attribute_predictor` run, whose softmax over `attribute`'s logits is used (its
        images are divided by 255, as that task trains).
      num_classes: K, checked against every output when given.
      attribute: the categorical attribute of a run to read (default: its only one).
      batch_size: images per call.

    Every output is checked: shape `(N, K)`, finite, in [0, 1], rows summing to 1 (within
    1e-3); anything else raises a `ValueError` naming `classifier`.
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", 2)
    if isinstance(classifier, str | pathlib.Path):
        fn = _run_classifier(classifier, attribute)
    elif callable(classifier):
        if attribute is not None:
            raise ValueError("attribute: names the class attribute of a run, not of a callable")
        fn = classifier
    else:
        raise ValueError(
            f"classifier: expected a callable from images to class probabilities or a run "
            f"directory, got {type(classifier).__name__}"
        )

    def predict(images: Any) -> np.ndarray:
        images = np.asarray(images, np.float32)
        parts = [
            _checked(fn(images[s : s + batch_size]), len(images[s : s + batch_size]), num_classes)
            for s in range(0, len(images), batch_size)
        ]
        widths = {p.shape[1] for p in parts}
        if len(widths) > 1:
            raise ValueError(f"classifier: returned {sorted(widths)} classes on different calls")
        return np.concatenate(parts)

    return predict


def _checked(probabilities: Any, num: int, num_classes: int | None) -> np.ndarray:
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or p.shape[0] != num or p.shape[1] < 2:
        raise ValueError(
            f"classifier: expected class probabilities of shape ({num}, K) with K >= 2 for "
            f"{num} images, got shape {p.shape}"
        )
    if num_classes is not None and p.shape[1] != num_classes:
        raise ValueError(f"classifier: expected {num_classes} classes, got {p.shape[1]}")
    if not np.isfinite(p).all():
        raise ValueError("classifier: returned non-finite probabilities (NaN or inf)")
    error = np.abs(p.sum(axis=1) - 1.0).max()
    if p.min() < 0 or p.max() > 1 or error > PROBABILITY_TOLERANCE:
        raise ValueError(
            f"classifier: expected probabilities (in [0, 1], rows summing to 1), got values in "
            f"[{p.min():.3g}, {p.max():.3g}] with rows off 1 by up to {error:.3g}; apply a "
            f"softmax to logits"
        )
    return p


def _run_classifier(workdir: str | pathlib.Path, attribute: str | None) -> Callable:
    from flax import nnx

    from causalvision.train import load_run

    if not (pathlib.Path(workdir) / "config.json").exists():
        raise ValueError(f"classifier: {str(workdir)!r} holds no run (no config.json)")
    config, result = load_run(workdir)
    model = result.ema_model if result.ema_model is not None else result.model
    classes = getattr(model, "num_classes", None)
    if config.task != "attribute_predictor" or not classes:
        raise ValueError(
            f"classifier: {str(workdir)!r} holds a {config.task!r} run, not an attribute "
            f"predictor of a categorical attribute"
        )
    if attribute is None:
        if len(classes) != 1:
            raise ValueError(f"attribute: the run predicts {sorted(classes)}; name one")
        (attribute,) = classes
    if attribute not in classes:
        raise ValueError(f"attribute: expected one of {sorted(classes)}, got {attribute!r}")
    graphdef, state = nnx.split(model)

    @jax.jit
    def probabilities(images):
        logits = nnx.merge(graphdef, state)(images / jnp.float32(255.0))[attribute]
        return jax.nn.softmax(logits, axis=-1)

    return lambda images: np.asarray(probabilities(jnp.asarray(images)))


def bootstrap_mean(
    values: Any, *, key: jax.Array, num_bootstrap: int = 1000, level: float = 0.95
) -> dict[str, Any]:
    """Mean over units (axis 0) of `values` `(N, ...)` and its percentile bootstrap interval.

    Returns {"mean", "low", "high"} (floats, or lists for trailing axes): resampling the N
    units with replacement `num_bootstrap` times (indices from `key`), the `(1 − level)/2`
    and `(1 + level)/2` quantiles of the resampled means.
    """
    v = np.asarray(values, np.float64)
    if v.ndim < 1 or v.shape[0] < 1 or not np.isfinite(v).all():
        raise ValueError(f"values: expected finite values (N, ...) with N >= 1, got {v.shape}")
    num_bootstrap = check_int(num_bootstrap, "num_bootstrap", 1)
    level = check_real(level, "level", 0.0, 1.0, open_low=True, open_high=True)
    rows = np.asarray(jax.random.randint(check_key(key), (num_bootstrap, len(v)), 0, len(v)))
    means = v[rows].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {"mean": _plain(v.mean(axis=0)), "low": _plain(low), "high": _plain(high)}


def _plain(x: np.ndarray) -> Any:
    return float(x) if np.ndim(x) == 0 else np.asarray(x, float).tolist()


def _effects(p: np.ndarray, p_cf: np.ndarray, key: jax.Array, **bootstrap: Any) -> dict:
    """Flip rate and per-class ACE of one set of counterfactual predictions, with intervals."""
    flip_key, ace_key, own_key = jax.random.split(key, 3)
    factual_class = p.argmax(axis=1)
    flips = (p_cf.argmax(axis=1) != factual_class).astype(np.float64)
    rows = np.arange(len(p))
    own = p_cf[rows, factual_class] - p[rows, factual_class]
    return {
        "flip_rate": bootstrap_mean(flips, key=flip_key, **bootstrap),
        "ace": bootstrap_mean(p_cf - p, key=ace_key, **bootstrap),
        "ace_factual_class": bootstrap_mean(own, key=own_key, **bootstrap),
    }


def _do_arrays(do: Mapping[str, Any], num: int, dataset: Dataset) -> dict[str, jax.Array]:
    """Interventions as `(num,)` arrays: a scalar for every unit, or one value per unit."""
    specs = {spec.name: spec for spec in dataset.attribute_specs}
    out = {}
    for name, value in do.items():
        dtype = jnp.int32 if specs[name].categorical else jnp.float32
        out[name] = jnp.broadcast_to(jnp.asarray(value, dtype), (num,))
    return out


CounterfactualImages = Callable[[Mapping[str, Any], Mapping[str, Any]], np.ndarray]


def scm_counterfactuals(scm: SCM, dataset: Dataset) -> CounterfactualImages:
    """`(examples, do) -> counterfactual images (N, H, W, C)` of a deep SCM, through the SCM
    engine in compiled chunks; `do` values are scalars or one value per unit `(N,)`."""
    from causalvision.audit.counterfactuals import _world

    world = batched(_world(scm, dataset), CHUNK)

    def images(examples: Mapping[str, Any], do: Mapping[str, Any]) -> np.ndarray:
        num = len(examples["image"])
        parents = {n: jnp.asarray(examples[n]) for n in dataset.attributes}
        x = jnp.asarray(examples["image"], jnp.float32)
        return np.asarray(world(x, parents, _do_arrays(do, num, dataset))["image"], np.float32)

    return images


def exact_counterfactuals(dataset: Dataset) -> CounterfactualImages:
    """`(examples, do) -> the generator's exact counterfactual images`, on the storage grid."""
    from causalvision.data import quantize_image

    def images(examples: Mapping[str, Any], do: Mapping[str, Any]) -> np.ndarray:
        num = len(examples["image"])
        cf = dataset.counterfactual(examples, _do_arrays(do, num, dataset))
        return quantize_image(dataset, cf["image"]).astype(np.float32)

    return images


def mediators(dataset: Dataset, node: str) -> tuple[str, ...]:
    """The attributes that descend from `node` in the dataset's SCM (every attribute is a
    parent of the image): held at their factual values for the direct part of do(node)."""
    below = dataset.scm.graph.descendants([node]) - {node}
    return tuple(a for a in dataset.attributes if a in below)


def _check_interventions(
    interventions: Sequence[Mapping[str, Any]], dataset: Dataset
) -> list[dict[str, float]]:
    if isinstance(interventions, Mapping) or not len(interventions):
        raise ValueError(
            "interventions: expected a non-empty list of {node: value} dicts, got "
            f"{interventions!r}"
        )
    out = []
    for do in interventions:
        if not isinstance(do, Mapping) or not do:
            raise ValueError(f"interventions: expected {{node: value}} dicts, got {do!r}")
        unknown = sorted(set(do) - set(dataset.attributes))
        if unknown:
            raise ValueError(
                f"interventions: {unknown} not among the dataset's attributes {dataset.attributes}"
            )
        do = {k: float(v) for k, v in do.items()}
        check_attributes(dataset.attribute_specs, do, "interventions")
        out.append(do)
    return out


def _label(do: Mapping[str, float]) -> str:
    return "do(" + ", ".join(f"{k}={v:g}" for k, v in do.items()) + ")"


def audit_classifier(
    model: SCM | CounterfactualImages,
    dataset: Dataset,
    examples: Mapping[str, Any],
    classifier: ClassifierFn,
    interventions: Sequence[Mapping[str, float]],
    *,
    key: jax.Array,
    num_bootstrap: int = 1000,
    level: float = 0.95,
    exact: bool | None = None,
    top_k: int = 8,
    patch: int | None = None,
    progress: Callable[[str], None] | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Audit `classifier` under each intervention of a deep SCM's counterfactuals.

    Args:
      model: the trained deep SCM's `SCM` (e.g. `load_deep_scm(run)[2]`; any image
        mechanism), or any `(examples, do) -> images` function (`exact_counterfactuals`).
      dataset: the run's dataset (attributes, supports, exact counterfactuals).
      examples: the units: attributes `(N,)`, exogenous fields, "image" `(N, H, W, C)` on the
        storage grid (`held_out_examples`).
      classifier: images -> probabilities `(N, K)` (wrap anything with `as_classifier`).
      interventions: `[{node: value}, ...]`, each node an attribute, each value in its
        support (checked before any work).
      key: the bootstrap's randomness.
      num_bootstrap, level: the intervals (module docstring).
      exact: also audit the generator's exact counterfactuals (default: when the dataset
        renders them).
      top_k: the most affected units listed per intervention.
      patch: block size of the effect maps (default: none computed).
      progress: called with a line per stage.
      show_progress: show a tqdm bar over the units (of every intervention).

    Returns a JSON-ready dict: "classes" K, "units" N, "factual_accuracy" where the dataset
    has a categorical label the classifier predicts (None otherwise), and per intervention
    (in order) under "interventions": its "label", "do", "model" (flip rate, ACE with
    intervals, "most_affected" unit indices and total-variation changes), "direct" and
    "mediated" parts (None without mediators), "mediators", "exact" and "generator_error"
    (model − exact, per number; None without exact counterfactuals), and "effect_map" (a
    list of rows, when `patch`). Images are returned apart, under "images": per label the
    model's (and exact) counterfactuals, for reports.
    """
    interventions = _check_interventions(interventions, dataset)
    key = check_key(key)
    top_k = check_int(top_k, "top_k", 1)
    if patch is not None:
        patch = check_int(patch, "patch", 1)
    bootstrap = {"num_bootstrap": num_bootstrap, "level": level}
    bootstrap_mean(np.zeros(1), key=key, **bootstrap)  # check the settings before any work
    if exact is None:
        exact = callable(getattr(dataset, "counterfactual", None))
    say = progress or (lambda line: None)
    model_images = scm_counterfactuals(model, dataset) if isinstance(model, SCM) else model
    exact_images = exact_counterfactuals(dataset) if exact else None
    images = np.asarray(examples["image"], np.float32)
    p = classifier(images)
    record: dict[str, Any] = {
        "classes": int(p.shape[1]),
        "units": len(images),
        "level": level,
        "num_bootstrap": num_bootstrap,
        "interval": "percentile bootstrap over units",
        "factual_accuracy": _accuracy(p, examples, dataset),
        "interventions": [],
        "images": {"factual": images},
    }
    bar = tqdm(
        total=len(images) * len(interventions), desc="audit", unit=" units",
        disable=not show_progress,
    )  # fmt: skip
    for index, do in enumerate(interventions):
        label = _label(do)
        say(f"[{index + 1}/{len(interventions)}] {label}: counterfactuals of {len(images)} units")
        keys = jax.random.split(jax.random.fold_in(key, index), 4)
        held = _mediators_held(dataset, do)
        worlds = _unit_chunks(examples, do, held, model_images, exact_images, on_chunk=bar.update)
        cf_images = worlds["model"]
        p_cf = classifier(cf_images)
        row: dict[str, Any] = {"label": label, "do": do}
        row["model"] = _effects(p, p_cf, keys[0], **bootstrap)
        change = 0.5 * np.abs(p_cf - p).sum(axis=1)
        order = np.argsort(-change, kind="stable")[:top_k]
        row["model"]["most_affected"] = {
            "units": order.tolist(),
            "tv_change": change[order].tolist(),
            "factual_class": p[order].argmax(axis=1).tolist(),
            "counterfactual_class": p_cf[order].argmax(axis=1).tolist(),
        }
        row["mediators"] = list(held)
        row["direct"] = row["mediated"] = None
        if held:
            p_direct = classifier(worlds["direct"])
            row["direct"] = _effects(p, p_direct, keys[1], **bootstrap)
            row["mediated"] = {"ace": bootstrap_mean(p_cf - p_direct, key=keys[2], **bootstrap)}
        row["exact"] = row["generator_error"] = None
        record["images"][label] = {"model": cf_images}
        if exact_images is not None:
            truth = worlds["exact"]
            p_exact = classifier(truth)
            row["exact"] = _effects(p, p_exact, keys[3], **bootstrap)
            row["generator_error"] = {
                "flip_rate": row["model"]["flip_rate"]["mean"] - row["exact"]["flip_rate"]["mean"],
                "ace": (
                    np.asarray(row["model"]["ace"]["mean"]) - row["exact"]["ace"]["mean"]
                ).tolist(),
                "decision_agreement": float((p_cf.argmax(1) == p_exact.argmax(1)).mean()),
            }
            record["images"][label]["exact"] = truth
        if patch is not None:
            say(f"[{index + 1}/{len(interventions)}] {label}: effect map, {patch}-px blocks")
            row["effect_map"] = effect_map(classifier, images, cf_images, patch=patch).tolist()
        record["interventions"].append(row)
    bar.close()
    return record


def _mediators_held(dataset: Dataset, do: Mapping[str, Any]) -> tuple[str, ...]:
    """The mediators of an intervention: attributes below its nodes, not intervened on."""
    return tuple(dict.fromkeys(m for node in do for m in mediators(dataset, node) if m not in do))


def _unit_chunks(
    examples: Mapping[str, Any],
    do: Mapping[str, Any],
    held: Sequence[str],
    model_images: CounterfactualImages,
    exact_images: CounterfactualImages | None,
    *,
    on_chunk: Callable[[int], Any],
) -> dict[str, np.ndarray]:
    """The model's counterfactual images under `do`, its images with the mediators `held` at
    their factual values ("direct"; when there are any) and the exact ones (when given),
    computed `CHUNK` units at a time so progress can be shown over units."""
    num = len(examples["image"])
    parts: dict[str, list[np.ndarray]] = {"model": [], "direct": [], "exact": []}
    for start in range(0, num, CHUNK):
        rows = slice(start, min(start + CHUNK, num))
        units = jax.tree.map(lambda v, rows=rows: v[rows], dict(examples))
        parts["model"].append(model_images(units, do))
        if held:
            fixed = {m: np.asarray(units[m]) for m in held}
            parts["direct"].append(model_images(units, {**do, **fixed}))
        if exact_images is not None:
            parts["exact"].append(exact_images(units, do))
        on_chunk(rows.stop - rows.start)
    return {kind: np.concatenate(p) for kind, p in parts.items() if p}


def _accuracy(p: np.ndarray, examples: Mapping[str, Any], dataset: Dataset) -> Any:
    """Accuracy on the first categorical attribute with as many classes as the classifier."""
    for spec in dataset.attribute_specs:
        if spec.categorical and spec.num_classes == p.shape[1] and spec.name in examples:
            truth = np.asarray(examples[spec.name])
            return {"attribute": spec.name, "accuracy": float((p.argmax(1) == truth).mean())}
    return None


def effect_curve(
    model: SCM | CounterfactualImages,
    dataset: Dataset,
    examples: Mapping[str, Any],
    classifier: ClassifierFn,
    node: str,
    values: Sequence[float],
    *,
    key: jax.Array,
    num_bootstrap: int = 1000,
    level: float = 0.95,
) -> dict[str, Any]:
    """The flip rate and per-class ACE (with intervals) of do(`node` = v) for each v of
    `values`, on the model's counterfactuals: {"node", "values", "flip_rate": [...],
    "ace": [...]} (one interval dict per value)."""
    values = [float(v) for v in values]
    interventions = _check_interventions([{node: v} for v in values], dataset)
    key = check_key(key)
    model_images = scm_counterfactuals(model, dataset) if isinstance(model, SCM) else model
    p = classifier(np.asarray(examples["image"], np.float32))
    out: dict[str, Any] = {"node": node, "values": values, "flip_rate": [], "ace": []}
    for index, do in enumerate(interventions):
        p_cf = classifier(model_images(examples, do))
        effects = _effects(
            p, p_cf, jax.random.fold_in(key, index), num_bootstrap=num_bootstrap, level=level
        )
        out["flip_rate"].append(effects["flip_rate"])
        out["ace"].append(effects["ace"])
    return out


def effect_map(
    classifier: ClassifierFn, images: Any, counterfactuals: Any, *, patch: int = 4
) -> np.ndarray:
    """Mean change of the class distribution when one block takes its counterfactual content.

    Args:
      classifier: images -> probabilities.
      images, counterfactuals: `(N, H, W, C)`, the factual images and their counterfactuals.
      patch: block side in pixels; H and W need not be multiples (edge blocks are smaller).

    Returns:
      `(ceil(H / patch), ceil(W / patch))` float: for block b, mean_n ½ Σ_k |p_k(x_n with
      block b from x*_n) − p_k(x_n)|, in [0, 1].
    """
    x = np.asarray(images, np.float32)
    x_cf = np.asarray(counterfactuals, np.float32)
    if x.ndim != 4 or x.shape != x_cf.shape:
        raise ValueError(
            f"counterfactuals: expected the images' shape (N, H, W, C), got {x_cf.shape} "
            f"against {x.shape}"
        )
    patch = check_int(patch, "patch", 1)
    height, width = x.shape[1:3]
    p = classifier(x)
    rows, cols = -(-height // patch), -(-width // patch)
    out = np.zeros((rows, cols))
    for i in range(rows):
        for j in range(cols):
            mixed = x.copy()
            block = (
                slice(None),
                slice(i * patch, (i + 1) * patch),
                slice(j * patch, (j + 1) * patch),
            )
            mixed[block] = x_cf[block]
            out[i, j] = 0.5 * np.abs(classifier(mixed) - p).sum(axis=1).mean()
    return out
