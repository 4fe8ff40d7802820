"""Counterfactual quality metrics: composition, reversibility, effectiveness, commutativity and
the error against the exact ground-truth counterfactual of a synthetic dataset.

Every metric takes a *counterfactual function*

    cf_fn(images, parents, do) -> counterfactual images

with `images` `(N, H, W, C)` float in [0, 255], `parents` a dict of `(N,)` arrays (the factual
value of every parent of the image: int32 classes or float32 values), `do`
a dict node -> `(N,)` values, and the result `(N, H, W, C)` in [0, 255]. A deep SCM gives one
as `lambda x, pa, do: scm.counterfactual({**pa, "image": x}, do)["image"]`.

Several metrics chain interventions and must know the counterfactual *parents* too. They take
an optional `parents_fn(parents, do) -> counterfactual parents`; the default,
`update_parents`, only overwrites the intervened nodes. Where an intervention also moves a
descendant parent, pass `scm_parents_fn(dataset.scm)` (the exact attribute SCM) or the
model's own attribute SCM.

Definitions (REFERENCE §3; Monteiro et al., ICLR 2023, `identifiability_tests.py`;
Melistas et al., NeurIPS 2024; causal-gen's evaluation protocol):

- distance: l1(x1, x2) = mean over H, W, C of |clip(x1) - clip(x2)| per image, with both
  images clipped to [0, 255] (Monteiro's dec(x)); reported as mean and (population) std over
  images. `ground_truth_error` also reports the per-image RMSE on the same scale.
- composition: x_{k+1} = f(x_k, pa, do=pa), d_k = l1(x_0, x_k), k = 1..cycles.
- reversibility: one cycle is x -> f(x, pa, do) -> f(x*, pa*, do=pa) with pa* =
  parents_fn(pa, do); d after each cycle. The way back intervenes on *every* parent with its
  factual value (Monteiro's f(x*, pa*, pa), a full parent vector) so the cycle returns to
  exactly pa whatever the attribute mechanisms do, and only the image mechanism is measured.
- effectiveness: an oracle reads every attribute off f(x, pa, do) and is compared with the
  counterfactual parents parents_fn(pa, do): absolute error for continuous attributes,
  accuracy for categorical ones (argmax of `(N, K)` logits).
- commutativity: l1(f(f(x, pa, a), pa_a, b), f(f(x, pa, b), pa_b, a)).

Everything inside is pure JAX and vectorised over the batch: given a traceable `cf_fn`,
`parents_fn` and oracle, `composition`, `reversibility`, `effectiveness`, `commutativity` and
`sample_interventions` can be wrapped in `jax.jit` whole (the cycles are a Python loop over a
small static count, so each step calls `cf_fn` once; jit `cf_fn` itself to compile it once).
`ground_truth_error` and `evaluate_counterfactuals` run on the host (the dataset renderer
validates its inputs there) and call the jitted pieces; `flatten_metrics` turns results into
plain floats for metrics.json.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.validation import check_int

Array = jax.Array
CounterfactualFn = Callable[[Array, Mapping[str, Array], Mapping[str, Array]], Array]
ParentsFn = Callable[[Mapping[str, Array], Mapping[str, Array]], Mapping[str, Array]]
Oracle = Callable[[Array], Mapping[str, Any]]

__all__ = [
    "batched",
    "commutativity",
    "composition",
    "effectiveness",
    "flatten_metrics",
    "ground_truth_error",
    "quantile_bins",
    "reversibility",
    "sample_interventions",
    "scm_parents_fn",
    "update_parents",
]

PIXEL_MAX = 255.0


# -------------------------------------------------------------------------------------------
# Validation at the public boundary (static: shapes, dtypes and keys only, so it also runs
# under jit).


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_images(images: Any, argument: str = "images") -> Array:
    """`(N, H, W, C)` real images as float32 (uint8 storage images are cast, not rescaled)."""
    x = jnp.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"{argument}: expected shape (N, H, W, C), got {x.shape}")
    if x.shape[0] < 1:
        raise ValueError(f"{argument}: expected at least one image, got shape {x.shape}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise ValueError(f"{argument}: expected real-valued images, got dtype {x.dtype}")
    return x.astype(jnp.float32)


def _check_parents(parents: Any, num: int, argument: str = "parents") -> dict[str, Array]:
    """A dict of `(num,)` arrays; floats become float32, integers int32 (jnp defaults)."""
    if not isinstance(parents, Mapping) or not parents:
        raise ValueError(
            f"{argument}: expected a non-empty dict node -> (N,) array, got {parents!r}"
        )
    out = {}
    for name, value in parents.items():
        v = jnp.asarray(value)
        if v.shape != (num,):
            raise ValueError(
                f"{argument}[{name!r}]: expected shape ({num},) (one value per image), "
                f"got {v.shape}"
            )
        if jnp.issubdtype(v.dtype, jnp.floating):
            v = v.astype(jnp.float32)
        out[name] = v
    return out


def _check_do(
    do: Any, parents: Mapping[str, Array], num: int, argument: str = "do"
) -> dict[str, Array]:
    """Intervention values, each `(num,)` (a scalar is broadcast) in its parent's dtype."""
    if not isinstance(do, Mapping) or not do:
        raise ValueError(
            f"{argument}: expected a non-empty dict node -> (N,) values, got {type(do)}"
        )
    out = {}
    for name, value in do.items():
        if name not in parents:
            raise ValueError(
                f"{argument}: unknown node {name!r}; the parents are {sorted(parents)}"
            )
        v = jnp.asarray(value)
        if v.ndim == 0:
            v = jnp.broadcast_to(v, (num,))  # one value for every unit, as do={"t": 4.0}
        if v.shape != (num,):
            raise ValueError(
                f"{argument}[{name!r}]: expected a scalar or shape ({num},), got {v.shape}"
            )
        target = parents[name].dtype
        if jnp.issubdtype(target, jnp.integer) and not jnp.issubdtype(v.dtype, jnp.integer):
            # A float would be truncated silently into a class index.
            raise ValueError(
                f"{argument}[{name!r}]: expected integer values (the parent is {target}), "
                f"got {v.dtype}"
            )
        out[name] = v.astype(target)
    return out


def _call_cf(
    cf_fn: CounterfactualFn, images: Array, parents: Mapping[str, Array], do: Mapping[str, Array]
) -> Array:
    out = jnp.asarray(cf_fn(images, dict(parents), dict(do)))
    if out.shape != images.shape:
        raise ValueError(
            f"cf_fn: expected counterfactual images of the input shape {images.shape}, "
            f"got {out.shape}"
        )
    return out.astype(jnp.float32)


def _call_parents_fn(
    parents_fn: ParentsFn, parents: Mapping[str, Array], do: Mapping[str, Array]
) -> dict[str, Array]:
    out = parents_fn(dict(parents), dict(do))
    if not isinstance(out, Mapping):
        raise ValueError(f"parents_fn: expected a dict of counterfactual parents, got {type(out)}")
    missing = [n for n in parents if n not in out]
    if missing:
        raise ValueError(f"parents_fn: returned no counterfactual value for {missing}")
    num = next(iter(parents.values())).shape[0]
    result = {}
    for name, value in parents.items():
        v = jnp.asarray(out[name])
        if v.shape != (num,):
            raise ValueError(f"parents_fn: expected {name!r} of shape ({num},), got {v.shape}")
        result[name] = v.astype(value.dtype)
    return result


def _inputs(images: Any, parents: Any) -> tuple[Array, dict[str, Array]]:
    x = _check_images(images)
    return x, _check_parents(parents, x.shape[0])


def _check_cycles(cycles: Any) -> int:
    return check_int(cycles, "cycles", 1)


# -------------------------------------------------------------------------------------------
# Parents functions.


def update_parents(parents: Mapping[str, Array], do: Mapping[str, Array]) -> dict[str, Array]:
    """The default `parents_fn`: the intervened nodes take their `do` values, the rest stay.

    Right when no intervened node has a descendant among the parents; otherwise use
    `scm_parents_fn`.
    """
    return {**parents, **{n: v for n, v in do.items() if n in parents}}


def scm_parents_fn(scm: Any, key: Array | None = None) -> ParentsFn:
    """A `parents_fn` from an attribute SCM: abduction-action-prediction over the parents.

    `scm_parents_fn(dataset.scm)` gives the exact counterfactual attributes (an intervened
    node moves its descendants through their abducted noise); a trained attribute SCM gives
    the model's. `key` is needed only where a mechanism abducts by posterior draws (the SCM
    refuses to go on without one). Pure JAX: jit-friendly.
    """

    def parents_fn(parents: Mapping[str, Array], do: Mapping[str, Array]) -> dict[str, Array]:
        values = scm.counterfactual(dict(parents), dict(do), key=key)
        return {n: jnp.asarray(values[n]) for n in parents}

    return parents_fn


def batched(cf_fn: CounterfactualFn, batch_size: int) -> CounterfactualFn:
    """`cf_fn` run on consecutive chunks of exactly `batch_size` images (bounded memory).

    A short last chunk (or a batch of fewer than `batch_size` images) is padded by repeating
    its last image and the padding's output dropped, so a jitted `cf_fn` compiles once per
    intervention whatever the number of images, at the price of computing up to
    `batch_size - 1` extra counterfactuals. `cf_fn` must treat images independently. The
    result is the concatenation, so the metrics see one `(N, H, W, C)` batch; `cf_fn` may
    also return a pytree of such arrays (say, every node of a counterfactual world).
    """
    check_int(batch_size, "batch_size", 1)

    def run(images: Array, parents: Mapping[str, Array], do: Mapping[str, Array]) -> Array:
        num = images.shape[0]
        chunks = []
        for start in range(0, num, batch_size):
            stop = min(start + batch_size, num)
            rows = slice(start, stop)
            if stop - start < batch_size:
                rows = np.minimum(np.arange(start, start + batch_size), num - 1)
            out = cf_fn(
                images[rows],
                {n: v[rows] for n, v in parents.items()},
                {n: v[rows] for n, v in do.items()},
            )
            chunks.append(jax.tree.map(lambda leaf, n=stop - start: leaf[:n], out))
        return jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=0), *chunks)

    return run


# -------------------------------------------------------------------------------------------
# Distances and summaries (jit-compiled).


@jax.jit
def _l1(a: Array, b: Array) -> Array:
    """Per-image 0-255 L1 `(N,)` of `(N, H, W, C)` images, both clipped to [0, 255]."""
    diff = jnp.abs(jnp.clip(a, 0.0, PIXEL_MAX) - jnp.clip(b, 0.0, PIXEL_MAX))
    return jnp.mean(diff, axis=(1, 2, 3))


@jax.jit
def _rmse(a: Array, b: Array) -> Array:
    """Per-image 0-255 root-mean-square error `(N,)`, both images clipped to [0, 255]."""
    diff = jnp.clip(a, 0.0, PIXEL_MAX) - jnp.clip(b, 0.0, PIXEL_MAX)
    return jnp.sqrt(jnp.mean(diff * diff, axis=(1, 2, 3)))


def _summary(name: str, per_image: Array) -> dict[str, Array]:
    """Mean and population std over the last (image) axis."""
    return {name: jnp.mean(per_image, axis=-1), f"{name}_std": jnp.std(per_image, axis=-1)}


def _score_attributes(
    predictions: Mapping[str, Any],
    truth: Mapping[str, Array],
    names: Sequence[str],
    num: int,
) -> tuple[dict[str, Array], dict[str, Array]]:
    """Per-attribute `{name}_acc` / `{name}_mae` (mean, std) and per-image scores `(N,)`.

    Categorical: predictions `(N, K)` (logits or probabilities, argmax) or an integer target
    (predictions `(N,)` rounded). Continuous: absolute error.
    """
    scores: dict[str, Array] = {}
    per_image: dict[str, Array] = {}
    for name in names:
        pred = jnp.asarray(predictions[name])
        target = truth[name]
        if pred.ndim not in (1, 2) or pred.shape[0] != num:
            raise ValueError(
                f"oracle: expected {name!r} of shape ({num},) or ({num}, K), got {pred.shape}"
            )
        categorical = pred.ndim == 2 or jnp.issubdtype(target.dtype, jnp.integer)
        if categorical:
            if pred.ndim == 2:
                label = jnp.argmax(pred, axis=-1).astype(jnp.int32)
            elif jnp.issubdtype(pred.dtype, jnp.integer):
                label = pred.astype(jnp.int32)
            else:
                label = jnp.round(pred).astype(jnp.int32)
            score = (label == target.astype(jnp.int32)).astype(jnp.float32)
            key = f"{name}_acc"
        else:
            score = jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32))
            key = f"{name}_mae"
        scores.update(_summary(key, score))
        per_image[key] = score
    return scores, per_image


def _oracle_names(
    predictions: Any, truth: Mapping[str, Array], targets: Sequence[str] | None
) -> list[str]:
    if not isinstance(predictions, Mapping):
        raise ValueError(f"oracle: expected a dict of predictions, got {type(predictions)}")
    if targets is None:
        names = [n for n in predictions if n in truth]
        if not names:
            raise ValueError(
                f"oracle: predicts {sorted(predictions)}, none of the parents {sorted(truth)}"
            )
        return names
    if isinstance(targets, str):
        targets = (targets,)
    for name in targets:
        if name not in truth:
            raise ValueError(f"targets: unknown node {name!r}; the parents are {sorted(truth)}")
        if name not in predictions:
            raise ValueError(
                f"targets: the oracle predicts no {name!r} (it predicts {sorted(predictions)})"
            )
    return list(targets)


# -------------------------------------------------------------------------------------------
# Axiomatic soundness metrics.


def composition(
    cf_fn: CounterfactualFn, images: Any, parents: Mapping[str, Any], cycles: int = 10
) -> dict[str, Array]:
    """Composition: l1 to x_0 after k null interventions x_{k+1} = f(x_k, pa, do=pa).

    Args:
      cf_fn: the counterfactual function (module docstring).
      images: `(N, H, W, C)` factual images in [0, 255].
      parents: factual parents, each `(N,)`.
      cycles: number of null interventions (Melistas et al. report d_1 and d_10).

    Returns:
      "l1" `(cycles,)`: d_k, the mean over images, k = 1..cycles (index k - 1); "l1_std"
      `(cycles,)`: its std over images; "per_image" `(cycles, N)`.
    """
    x0, pa = _inputs(images, parents)
    cycles = _check_cycles(cycles)
    x, distances = x0, []
    for _ in range(cycles):
        x = _call_cf(cf_fn, x, pa, pa)
        distances.append(_l1(x0, x))
    per_image = jnp.stack(distances)
    return {**_summary("l1", per_image), "per_image": per_image}


def _reversibility(
    cf_fn: CounterfactualFn,
    x0: Array,
    pa: dict[str, Array],
    do: dict[str, Array],
    cycles: int,
    parents_fn: ParentsFn,
    first: Array | None = None,
) -> dict[str, Array]:
    pa_star = _call_parents_fn(parents_fn, pa, do)
    x, distances = x0, []
    for cycle in range(cycles):
        # The first forward step may be shared with effectiveness (same x0, pa, do).
        forward = first if (cycle == 0 and first is not None) else _call_cf(cf_fn, x, pa, do)
        x = _call_cf(cf_fn, forward, pa_star, pa)
        distances.append(_l1(x0, x))
    per_image = jnp.stack(distances)
    return {**_summary("l1", per_image), "per_image": per_image}


def reversibility(
    cf_fn: CounterfactualFn,
    images: Any,
    parents: Mapping[str, Any],
    do_values: Mapping[str, Any],
    cycles: int = 5,
    *,
    parents_fn: ParentsFn | None = None,
) -> dict[str, Array]:
    """Reversibility: intervene to pa* = parents_fn(pa, do_values), then back to pa.

    One cycle is x -> x* = f(x, pa, do_values) -> f(x*, pa*, do=pa): the way back sets every
    parent to its factual value (Monteiro's f(x*, pa*, pa)), so it undoes downstream changes
    too. Monteiro et al. report d after 1 and 5 cycles (their d_2 and d_10 in steps).

    Args:
      do_values: the forward intervention, node -> `(N,)` (or scalar) values.
      cycles: number of there-and-back cycles.
      parents_fn: counterfactual parents (default `update_parents`).

    Returns:
      "l1" `(cycles,)` mean l1 to x_0 after each cycle, "l1_std" `(cycles,)`, "per_image"
      `(cycles, N)`.
    """
    x0, pa = _inputs(images, parents)
    do = _check_do(do_values, pa, x0.shape[0], "do_values")
    return _reversibility(cf_fn, x0, pa, do, _check_cycles(cycles), parents_fn or update_parents)


def effectiveness(
    cf_fn: CounterfactualFn,
    images: Any,
    parents: Mapping[str, Any],
    do: Mapping[str, Any],
    oracle: Oracle,
    targets: Sequence[str] | None = None,
    *,
    parents_fn: ParentsFn | None = None,
) -> dict[str, Any]:
    """Effectiveness: does the counterfactual image show the counterfactual parents?

    The oracle reads every attribute off x* = f(x, pa, do) and is compared with the target
    counterfactual parents parents_fn(pa, do): the intervened value, and for a downstream
    attribute its counterfactual value.

    Args:
      oracle: `oracle(images) -> dict` of `(N,)` values (e.g. a dataset's `measure`) or
        `(N, K)` logits / probabilities for categorical attributes.
      targets: attribute names to score; default every oracle output that is a parent.
      parents_fn: counterfactual parents (default `update_parents`).

    Returns:
      For each scored attribute `a`: "a_mae" (continuous: mean absolute error, in the
      attribute's units) or "a_acc" (categorical: accuracy as a fraction), each with "_std"
      over images; "per_image": `{"a_mae" | "a_acc": (N,)}`.
    """
    x0, pa = _inputs(images, parents)
    do = _check_do(do, pa, x0.shape[0])
    x_cf = _call_cf(cf_fn, x0, pa, do)
    truth = _call_parents_fn(parents_fn or update_parents, pa, do)
    predictions = oracle(x_cf)
    names = _oracle_names(predictions, truth, targets)
    scores, per_image = _score_attributes(predictions, truth, names, x0.shape[0])
    return {**scores, "per_image": per_image}


def _commutativity(cf_fn, x0, pa, do_a, do_b, parents_fn, first_a=None, first_b=None):
    x_a = _call_cf(cf_fn, x0, pa, do_a) if first_a is None else first_a
    x_b = _call_cf(cf_fn, x0, pa, do_b) if first_b is None else first_b
    x_ab = _call_cf(cf_fn, x_a, _call_parents_fn(parents_fn, pa, do_a), do_b)
    x_ba = _call_cf(cf_fn, x_b, _call_parents_fn(parents_fn, pa, do_b), do_a)
    per_image = _l1(x_ab, x_ba)
    return {**_summary("l1", per_image), "per_image": per_image}


def commutativity(
    cf_fn: CounterfactualFn,
    images: Any,
    parents: Mapping[str, Any],
    do_a: Mapping[str, Any],
    do_b: Mapping[str, Any],
    *,
    parents_fn: ParentsFn | None = None,
) -> dict[str, Array]:
    """Commutativity: l1 between do(a)-then-do(b) and do(b)-then-do(a).

    The second step starts from the first's counterfactual parents (`parents_fn`). Only
    interventions that commute in the true SCM should score 0: two roots do, but not a node
    and its ancestor (setting the child, then the ancestor, moves the child again).

    Returns:
      "l1" `()` mean over images, "l1_std" `()`, "per_image" `(N,)`.
    """
    x0, pa = _inputs(images, parents)
    a = _check_do(do_a, pa, x0.shape[0], "do_a")
    b = _check_do(do_b, pa, x0.shape[0], "do_b")
    return _commutativity(cf_fn, x0, pa, a, b, parents_fn or update_parents)


# -------------------------------------------------------------------------------------------
# Ground truth.


def _scale_to_255(dataset: Any) -> float:
    """Multiplier from a dataset's float renders to 0-255: its `pixel_scale` (default 1)."""
    return float(getattr(dataset, "pixel_scale", 1.0))


def _dataset_images(images: Any, dataset: Any, argument: str) -> Array:
    """Images on the 0-255 scale: uint8 storage images as they are, float renders rescaled."""
    raw = jnp.asarray(images)
    x = _check_images(raw, argument)
    if jnp.issubdtype(raw.dtype, jnp.floating):
        x = x * jnp.float32(_scale_to_255(dataset))
    return x


def _true_image(true_cf: Array, dataset: Any, quantize: bool) -> Array:
    """The dataset's exact counterfactual on the 0-255 scale, on the uint8 grid if `quantize`."""
    if not quantize:
        return _dataset_images(true_cf, dataset, "dataset.counterfactual(...)['image']")
    # `quantize_image`'s grid, for any dataset with a `pixel_scale` (or renders in 0-255).
    scaled = np.asarray(true_cf, np.float32) * np.float32(_scale_to_255(dataset))
    return jnp.asarray(np.rint(np.clip(scaled, 0.0, PIXEL_MAX)))


def _dataset_parents(examples: Mapping[str, Any], dataset: Any, argument: str) -> list[str]:
    names = getattr(dataset, "attributes", None)
    if names is None:
        raise ValueError(f"dataset: expected a dataset with `.attributes`, got {dataset!r}")
    missing = [n for n in names if n not in examples]
    if missing:
        raise ValueError(f"{argument}: missing attribute(s) {missing}; need {tuple(names)}")
    return list(names)


def _ground_truth(
    cf_fn: CounterfactualFn,
    example: Mapping[str, Any],
    x0: Array,
    pa: dict[str, Array],
    do: dict[str, Array],
    dataset: Any,
    quantize: bool,
    model_cf: Array | None = None,
) -> tuple[dict[str, Array], Array, Array, dict[str, Array]]:
    """Image errors plus the model's and the true counterfactual images and attributes."""
    truth = dataset.counterfactual(example, do)
    x_true = _true_image(truth["image"], dataset, quantize)
    if x_true.shape != x0.shape:
        raise ValueError(
            f"dataset: its counterfactual images have shape {x_true.shape}, the examples {x0.shape}"
        )
    x_model = _call_cf(cf_fn, x0, pa, do) if model_cf is None else model_cf
    l1, rmse = _l1(x_model, x_true), _rmse(x_model, x_true)
    scores = {**_summary("l1", l1), **_summary("rmse", rmse), "per_image": {"l1": l1, "rmse": rmse}}
    true_parents = {n: jnp.asarray(truth[n]).astype(pa[n].dtype) for n in pa}
    return scores, x_model, x_true, true_parents


def _oracle_errors(
    oracle: Oracle, x_model: Array, x_true: Array, true_parents: Mapping[str, Array]
) -> dict[str, Any]:
    """Attribute errors of the model's counterfactual, and the oracle's own on the truth."""
    num = x_model.shape[0]
    predictions = oracle(x_model)
    names = _oracle_names(predictions, true_parents, None)
    scores, per_image = _score_attributes(predictions, true_parents, names, num)
    # The oracle's error on the exact counterfactual: the floor a perfect model would reach.
    floor, _ = _score_attributes(oracle(x_true), true_parents, names, num)
    scores.update({f"{k}_floor": v for k, v in floor.items() if not k.endswith("_std")})
    return {**scores, "per_image": per_image}


def ground_truth_error(
    cf_fn: CounterfactualFn,
    example: Mapping[str, Any],
    do: Mapping[str, Any],
    dataset: Any,
    *,
    oracle: Oracle | None = None,
    quantize: bool = True,
) -> dict[str, Any]:
    """Error of the model's counterfactual against the dataset's exact counterfactual.

    The truth is `dataset.counterfactual(example, do)`: the same example (same exogenous noise
    and style) re-rendered under `do`. The model's counterfactual is
    `cf_fn(example["image"], parents, do)` with the dataset's attributes as parents.

    Quantisation: with `quantize=True` (default) the true image is put on the uint8 storage
    grid with `quantize_image` (round(clip(x, 0, 255))), the grid every stored example and
    therefore every training image lives on: a model can only learn that grid, and a perfect
    model of the stored data scores 0. The model's image is only clipped to [0, 255] (not
    rounded), so sub-level errors still count. `quantize=False` compares with the float render.

    Args:
      example: a batch of dataset examples: the attributes `(N,)`, what the dataset needs to
        re-render (its `exogenous` fields) and "image" `(N, H, W, C)`, uint8 or float renders
        on the dataset's own scale (scaled to 0-255 by its `pixel_scale`).
      do: node -> `(N,)` (or scalar) values; nodes must be dataset attributes.
      dataset: a `causalvision.data.Dataset`, or anything with `.attributes` and
        `.counterfactual(example, do) -> dict` with attributes and "image".
      oracle: reads attributes off images (default: `dataset.measure` if it has one; None
        and no `measure`: no attribute errors).
      quantize: compare with the quantised (True) or the float (False) true image.

    Returns:
      "l1", "rmse" (0-255, mean over images) with "_std"; for each attribute `a` the oracle
      reads: "a_mae" / "a_acc" (and "_std") against the true counterfactual attribute, and
      "a_mae_floor" / "a_acc_floor": the oracle's own score on the true image; "per_image".
    """
    if not isinstance(example, Mapping) or "image" not in example:
        raise ValueError("example: expected a dict of attributes and 'image'")
    names = _dataset_parents(example, dataset, "example")
    x0 = _dataset_images(example["image"], dataset, "example['image']")
    pa = _check_parents({n: example[n] for n in names}, x0.shape[0], "example")
    do = _check_do(do, pa, x0.shape[0])
    scores, x_model, x_true, true_parents = _ground_truth(
        cf_fn, example, x0, pa, do, dataset, bool(quantize)
    )
    oracle = oracle if oracle is not None else getattr(dataset, "measure", None)
    if oracle is None:
        return scores
    attributes = _oracle_errors(oracle, x_model, x_true, true_parents)
    per_image = {**scores.pop("per_image"), **attributes.pop("per_image")}
    return {**scores, **attributes, "per_image": per_image}


# -------------------------------------------------------------------------------------------
# Interventions.


def _check_num_bins(num_bins: Any) -> int:
    return check_int(num_bins, "bins", 2)


@partial(jax.jit, static_argnames=("num_bins",))
def _quantile_edges(values: Array, num_bins: int) -> Array:
    levels = jnp.arange(1, num_bins, dtype=jnp.float32) / jnp.float32(num_bins)
    return jnp.quantile(values, levels)


def quantile_bins(marginal_values: Any, num_bins: int = 10) -> Array:
    """Interior edges `(num_bins - 1,)` of `num_bins` equal-mass bins of a marginal `(M,)`.

    A value v lies in bin `searchsorted(edges, v, side="right")`, 0..num_bins - 1.
    """
    values = jnp.asarray(marginal_values)
    if values.ndim != 1 or values.shape[0] < 1:
        raise ValueError(f"marginal_values: expected shape (M,) with M >= 1, got {values.shape}")
    return _quantile_edges(values.astype(jnp.float32), _check_num_bins(num_bins))


def sample_interventions(
    key: Array,
    parents: Mapping[str, Any],
    node: str,
    marginal_values: Any = None,
    force_different: bool = True,
    *,
    bins: int | Any = 10,
) -> Array:
    """Intervention values `(N,)` for `node`, drawn from its marginal.

    Each unit draws uniformly from the entries of `marginal_values` (so values follow the
    empirical marginal: the shuffled-marginal draws of causal-gen and Melistas et al.). With
    `force_different`, only entries unlike the unit's factual value are eligible (sampled
    exactly, with no rejection loop):

    - categorical node (integer dtype): a different class;
    - continuous node: a value in a different bin. Melistas et al. (§3.2) bin min-max
      normalised attributes with edges at the within-interval means of 9 equal-width
      intervals on [-1, 1]; here the default `bins=10` uses 10 equal-mass (quantile) bins of
      the given marginal (`quantile_bins`): each bin holds 10% of the mass, so a draw always
      excludes about 10% of the marginal whatever its skew (a Gamma-shaped one, or one piled
      up at a bound) and no normalisation is involved. Pass an array of increasing interior
      edges to use other bins (e.g. Melistas' edges).

    Args:
      key: PRNG key; the draw is a pure function of it (deterministic).
      parents: factual parents, each `(N,)`; `parents[node]` gives the factual values.
      node: the node to intervene on.
      marginal_values: `(M,)` values to draw from (e.g. the training set's); default the
        batch's own `parents[node]`.
      force_different: exclude the factual class / bin.
      bins: number of quantile bins or interior edges (continuous nodes only).

    Returns:
      `(N,)` values in the parent's dtype.
    """
    if not isinstance(parents, Mapping) or node not in parents:
        known = sorted(parents) if isinstance(parents, Mapping) else type(parents)
        raise ValueError(f"node: unknown node {node!r}; the parents are {known}")
    factual = jnp.asarray(parents[node])
    if factual.ndim != 1:
        raise ValueError(f"parents[{node!r}]: expected shape (N,), got {factual.shape}")
    marginal = factual if marginal_values is None else jnp.asarray(marginal_values)
    if marginal.ndim != 1 or marginal.shape[0] < 1:
        raise ValueError(f"marginal_values: expected shape (M,) with M >= 1, got {marginal.shape}")
    categorical = jnp.issubdtype(factual.dtype, jnp.integer)
    if categorical and not jnp.issubdtype(marginal.dtype, jnp.integer):
        raise ValueError(
            f"marginal_values: expected integer values for the categorical node {node!r}, "
            f"got {marginal.dtype}"
        )
    marginal = marginal.astype(factual.dtype)
    num, size = factual.shape[0], marginal.shape[0]
    if not force_different:
        return marginal[jax.random.randint(key, (num,), 0, size)]

    edges, num_bins = None, None
    if not categorical:
        if isinstance(bins, int | np.integer) and not isinstance(bins, bool):
            num_bins = _check_num_bins(bins)
        else:
            edges = jnp.asarray(bins)
            if edges.ndim != 1 or edges.shape[0] < 1:
                raise ValueError(f"bins: expected an int or (B,) edges, got shape {edges.shape}")
            edges = edges.astype(jnp.float32)
    values, available = _draw_outside_bin(key, factual, marginal, edges, num_bins)
    if not _is_tracer(available) and bool(jnp.any(available == 0)):
        unit = int(jnp.argmax(available == 0))
        raise ValueError(
            f"marginal_values: every value lies in the factual {'class' if categorical else 'bin'}"
            f" of unit {unit} ({node}={float(factual[unit])}); nothing different to draw"
        )
    return values


@partial(jax.jit, static_argnames=("num_bins",))
def _draw_outside_bin(
    key: Array, factual: Array, marginal: Array, edges: Array | None, num_bins: int | None
) -> tuple[Array, Array]:
    """Uniform draws among marginal entries whose bin differs from each unit's factual bin.

    Bins: the classes themselves (no `edges`, no `num_bins`), `num_bins` quantile bins, or
    the given interior `edges`. Sorting the marginal by bin puts each bin in one block
    [start, stop); a uniform index r over the `size - (stop - start)` eligible entries skips
    that block. Returns the draws and the eligible count per unit.
    """
    if edges is None and num_bins is None:
        factual_bin, marginal_bin = factual.astype(jnp.int32), marginal.astype(jnp.int32)
    else:
        if edges is None:
            edges = _quantile_edges(marginal.astype(jnp.float32), num_bins)
        factual_bin = jnp.searchsorted(edges, factual.astype(jnp.float32), side="right")
        marginal_bin = jnp.searchsorted(edges, marginal.astype(jnp.float32), side="right")
    size = marginal.shape[0]
    order = jnp.argsort(marginal_bin, stable=True)
    sorted_values, sorted_bins = marginal[order], marginal_bin[order]
    start = jnp.searchsorted(sorted_bins, factual_bin, side="left").astype(jnp.int32)
    stop = jnp.searchsorted(sorted_bins, factual_bin, side="right").astype(jnp.int32)
    available = jnp.int32(size) - (stop - start)
    r = jax.random.randint(key, factual_bin.shape, 0, jnp.maximum(available, 1), dtype=jnp.int32)
    index = jnp.where(r < start, r, r + (stop - start))
    return sorted_values[jnp.clip(index, 0, size - 1)], available


# -------------------------------------------------------------------------------------------
# The evaluation protocol.


def flatten_metrics(result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Plain floats from a metric result: scalars as `prefix + name`, curves `(K,)` as
    `prefix + name_k` (k = 1..K, e.g. "composition_l1_10", std as "composition_l1_10_std").
    "per_image" entries are left out."""
    out: dict[str, float] = {}
    for name, value in result.items():
        if name == "per_image":
            continue
        v = np.asarray(value, np.float64)
        if v.ndim == 0:
            out[f"{prefix}{name}"] = float(v)
            continue
        base, std = (name[:-4], "_std") if name.endswith("_std") else (name, "")
        for k, item in enumerate(v.reshape(-1), start=1):
            out[f"{prefix}{base}_{k}{std}"] = float(item)
    return out


def _oracles(oracle: Any, dataset: Any) -> dict[str, Oracle]:
    """Named oracles: "" for a single one (no extra name level), or the mapping's names."""
    if oracle is None:
        oracle = getattr(dataset, "measure", None)
        if oracle is None:
            raise ValueError("oracle: expected a callable (or dict of them); no dataset.measure")
    if isinstance(oracle, Mapping):
        if not oracle or not all(callable(o) for o in oracle.values()):
            raise ValueError(f"oracle: expected a non-empty dict of callables, got {oracle!r}")
        return {f"{name}/": o for name, o in oracle.items()}
    if not callable(oracle):
        raise ValueError(f"oracle: expected a callable or a dict of callables, got {oracle!r}")
    return {"": oracle}
