"""Evaluators: named pieces of an evaluation protocol, each yielding named values.

A config names its evaluators, `evals = {name: {"type": ..., **settings}}`, as big_vision
does; `type` is an `EVALUATORS` name or "package.module:Class" (the lookup rule of
`causalvision.lookup`). Each evaluator is built as `Evaluator(**settings)` and run as
`evaluator.run(subject)`, an iterator of `(name, value)` pairs: floats go to metrics.json and
are printed by `causalvision evaluate`, whatever they are named. A new metric is one class
plus one config line.

The counterfactual protocol (REFERENCE §3) is five of them — composition, effectiveness,
reversibility, ground truth, commutativity — over one `CounterfactualSubject`: a model's
counterfactual function on held-out examples, with the interventions drawn once and every
first counterfactual computed once, whichever evaluators run.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from causalvision.lookup import resolve
from causalvision.metrics.counterfactual import (
    CounterfactualFn,
    Oracle,
    ParentsFn,
    _call_cf,
    _call_parents_fn,
    _check_cycles,
    _check_parents,
    _commutativity,
    _dataset_images,
    _dataset_parents,
    _ground_truth,
    _oracle_errors,
    _oracle_names,
    _oracles,
    _reversibility,
    _score_attributes,
    batched,
    composition,
    flatten_metrics,
    sample_interventions,
    scm_parents_fn,
    update_parents,
)

Array = jax.Array

__all__ = [
    "EVALUATORS",
    "Commutativity",
    "Composition",
    "CounterfactualSubject",
    "Effectiveness",
    "Evaluator",
    "GroundTruth",
    "Reversibility",
    "evaluate_counterfactuals",
    "get_evaluator",
    "run_evaluators",
]

#: Built-in evaluators by name (module paths, imported when first looked up).
EVALUATORS: dict[str, str] = {
    "composition": "causalvision.metrics.evaluators:Composition",
    "effectiveness": "causalvision.metrics.evaluators:Effectiveness",
    "reversibility": "causalvision.metrics.evaluators:Reversibility",
    "ground_truth": "causalvision.metrics.evaluators:GroundTruth",
    "commutativity": "causalvision.metrics.evaluators:Commutativity",
    "grids": "causalvision.audit.evaluators:Grids",
    "object_discovery": "causalvision.audit.objects:ObjectDiscovery",
}


class Evaluator(Protocol):
    """Built from its config settings; `run(subject)` yields `(name, value)` pairs."""

    def run(self, subject: Any) -> Iterator[tuple[str, float]]: ...


def get_evaluator(name: str, settings: Mapping[str, Any], argument: str) -> Evaluator:
    """The evaluator `name` (an `EVALUATORS` name or module path) built with `settings`."""
    factory = resolve(name, EVALUATORS, f"{argument}.type")
    try:
        return factory(**settings)
    except TypeError as error:
        raise ValueError(
            f"{argument}: {name!r} does not take {sorted(settings)} ({error})"
        ) from None


def run_evaluators(
    evals: Mapping[str, Mapping[str, Any]], subject: Any
) -> Iterator[tuple[str, str, float]]:
    """`(evaluator name, value name, value)` of every configured evaluator, in order.

    A value is named as its evaluator yields it; when an evaluator's config name differs
    from its type, the name is prefixed with "config name/" so two evaluators of one type
    never collide.
    """
    for name, config in evals.items():
        argument = f"evals[{name!r}]"
        if not isinstance(config, Mapping) or "type" not in config:
            raise ValueError(f"{argument}: expected a dict with a 'type', got {config!r}")
        settings = {k: v for k, v in config.items() if k != "type"}
        evaluator = get_evaluator(config["type"], settings, argument)
        prefix = "" if name == config["type"] else f"{name}/"
        for key, value in evaluator.run(subject):
            yield name, f"{prefix}{key}", value


class CounterfactualSubject:
    """A counterfactual function on a batch of examples: what counterfactual evaluators score.

    Args:
      cf_fn: `cf_fn(images, parents, do) -> images` (see `causalvision.metrics`).
      examples: "image" `(N, H, W, C)` (uint8 or float 0-255; float renders of a dataset are
        scaled by its `pixel_scale`) and the parents `(N,)`: `dataset.attributes`, or else
        every other `(N,)` entry ("style" is never a parent); plus what
        `dataset.counterfactual` needs.
      key: PRNG key of the interventions (run several keys for seeds; the reference uses 3).
      dataset: the synthetic dataset with exact counterfactuals (enables ground truth).
      oracle: `oracle(images) -> dict` or a dict of named oracles (e.g. {"measured":
        dataset.measure, "predicted": predictor}); default `dataset.measure`; None when
        there is neither (effectiveness then yields nothing).
      parents_fn: counterfactual parents; default the dataset's exact attribute SCM
        (`scm_parents_fn(dataset.scm)`) when there is one, else `update_parents`.
      interventions: nodes intervened on one at a time (default every parent).
      random_subset: also intervene on one random subset of them (one fair coin per node,
        at least one kept), named "random".
      marginals: node -> `(M,)` values to draw interventions from (default the batch's).
      bins: quantile bins (or edges) for continuous nodes, see `sample_interventions`.
      batch_size: run `cf_fn` in chunks of this many images (`batched`).
      quantize: compare with the quantised true image (see `ground_truth_error`).
      out: a directory for evaluators that write images (e.g. grids), or None.
      context: anything else image-writing evaluators need (e.g. the model's SCM).
    """

    def __init__(
        self,
        cf_fn: CounterfactualFn,
        examples: Mapping[str, Any],
        *,
        key: Array,
        dataset: Any = None,
        oracle: Oracle | Mapping[str, Oracle] | None = None,
        parents_fn: ParentsFn | None = None,
        interventions: Sequence[str] | None = None,
        random_subset: bool = True,
        marginals: Mapping[str, Any] | None = None,
        bins: int = 10,
        batch_size: int | None = None,
        quantize: bool = True,
        out: Any = None,
        context: Mapping[str, Any] | None = None,
    ):
        if not isinstance(examples, Mapping) or "image" not in examples:
            raise ValueError("examples: expected a dict with 'image' and the parents")
        self.examples = examples
        self.dataset = dataset
        self.x0 = _dataset_images(examples["image"], dataset, "examples['image']")
        num = self.num = self.x0.shape[0]
        if dataset is not None:
            names = _dataset_parents(examples, dataset, "examples")
        else:
            names = [
                n
                for n, v in examples.items()
                if n not in ("image", "style") and np.ndim(v) == 1 and np.shape(v)[0] == num
            ]
        self.parents = _check_parents({n: examples[n] for n in names}, num, "examples")
        interventions = tuple(names) if interventions is None else interventions
        if isinstance(interventions, str):
            interventions = (interventions,)
        for node in interventions:
            if node not in self.parents:
                raise ValueError(f"interventions: unknown node {node!r}; the parents are {names}")
        if len(set(interventions)) != len(interventions):
            raise ValueError(f"interventions: expected distinct nodes, got {interventions}")
        if random_subset and not interventions:
            raise ValueError("interventions: random_subset needs at least one node")
        self.interventions = tuple(interventions)
        marginals = dict(marginals or {})
        for node in marginals:
            if node not in self.parents:
                raise ValueError(f"marginals: unknown node {node!r}; the parents are {names}")
        if oracle is None and getattr(dataset, "measure", None) is None:
            self.oracles: dict[str, Oracle] = {}
        else:
            self.oracles = _oracles(oracle, dataset)
        if parents_fn is None:
            scm = getattr(dataset, "scm", None)
            parents_fn = scm_parents_fn(scm) if scm is not None else update_parents
        self.parents_fn = parents_fn
        self.cf_fn = cf_fn if batch_size is None else batched(cf_fn, batch_size)
        self.quantize = bool(quantize)
        self.out = out
        self.context = dict(context or {})
        self.cases = self._draw_cases(key, marginals, bins, random_subset)
        self._first: dict[str, Array] = {}

    def _draw_cases(self, key, marginals, bins, random_subset) -> dict[str, dict[str, Array]]:
        """The interventions, by label: one key per node (by position) and one for the subset."""
        pa, interventions = self.parents, self.interventions
        keys = jax.random.split(key, len(interventions) + 2)
        cases: dict[str, dict[str, Array]] = {}
        for node, k in zip(interventions, keys, strict=False):
            cases[node] = {node: sample_interventions(k, pa, node, marginals.get(node), bins=bins)}
        if random_subset:
            k_coins, k_pick = jax.random.split(keys[-2])
            coins = np.array(jax.random.bernoulli(k_coins, 0.5, (len(interventions),)))
            if not coins.any():  # an empty subset is a null intervention, already composition
                coins[int(jax.random.randint(k_pick, (), 0, len(interventions)))] = True
            chosen = [n for n, c in zip(interventions, coins, strict=True) if c]
            subkeys = jax.random.split(keys[-1], len(chosen))
            cases["random"] = {
                n: sample_interventions(k, pa, n, marginals.get(n), bins=bins)
                for n, k in zip(chosen, subkeys, strict=True)
            }
        return cases

    def counterfactual(self, label: str) -> Array:
        """The model's counterfactual images under case `label`, computed once."""
        if label not in self._first:
            self._first[label] = _call_cf(self.cf_fn, self.x0, self.parents, self.cases[label])
        return self._first[label]

    def targets(self, label: str) -> dict[str, Array]:
        """The counterfactual parents of case `label` (`parents_fn`)."""
        return _call_parents_fn(self.parents_fn, self.parents, self.cases[label])


def _flat(result: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    yield from flatten_metrics(result, prefix).items()


class Composition:
    """d_k: L1 to the factual image after k null interventions, k = 1..cycles."""

    def __init__(self, cycles: int = 10):
        self.cycles = _check_cycles(cycles)

    def run(self, subject: CounterfactualSubject) -> Iterator[tuple[str, float]]:
        result = composition(subject.cf_fn, subject.x0, subject.parents, self.cycles)
        yield from _flat(result, "composition_")


class Effectiveness:
    """Each oracle's reading of every counterfactual image against its counterfactual parents."""

    def run(self, subject: CounterfactualSubject) -> Iterator[tuple[str, float]]:
        for label in subject.cases:
            x_cf, targets = subject.counterfactual(label), subject.targets(label)
            for prefix, oracle in subject.oracles.items():
                predictions = oracle(x_cf)
                names = _oracle_names(predictions, targets, None)
                scores, _ = _score_attributes(predictions, targets, names, subject.num)
                yield from _flat(scores, f"effectiveness/do({label})/{prefix}")


class Reversibility:
    """L1 to the factual image after k there-and-back cycles of every intervention."""

    def __init__(self, cycles: int = 5):
        self.cycles = _check_cycles(cycles)

    def run(self, subject: CounterfactualSubject) -> Iterator[tuple[str, float]]:
        for label, do in subject.cases.items():
            result = _reversibility(
                subject.cf_fn,
                subject.x0,
                subject.parents,
                do,
                self.cycles,
                subject.parents_fn,
                subject.counterfactual(label),
            )
            yield from _flat(result, f"reversibility/do({label})/")


class GroundTruth:
    """L1 / RMSE to the dataset's exact counterfactual, and each oracle's attribute errors."""

    def run(self, subject: CounterfactualSubject) -> Iterator[tuple[str, float]]:
        if subject.dataset is None:
            return
        for label, do in subject.cases.items():
            scores, x_model, x_true, true_parents = _ground_truth(
                subject.cf_fn,
                subject.examples,
                subject.x0,
                subject.parents,
                do,
                subject.dataset,
                subject.quantize,
                model_cf=subject.counterfactual(label),
            )
            yield from _flat(scores, f"gt_error/do({label})/")
            for prefix, oracle in subject.oracles.items():
                errors = _oracle_errors(oracle, x_model, x_true, true_parents)
                yield from _flat(errors, f"gt_error/do({label})/{prefix}")


class Commutativity:
    """do(a)-then-do(b) against do(b)-then-do(a), for pairs the true SCM commutes."""

    def run(self, subject: CounterfactualSubject) -> Iterator[tuple[str, float]]:
        pa, parents_fn = subject.parents, subject.parents_fn
        for a, b in itertools.combinations(subject.interventions, 2):
            do_a, do_b = subject.cases[a], subject.cases[b]
            pa_ab = _call_parents_fn(parents_fn, _call_parents_fn(parents_fn, pa, do_a), do_b)
            pa_ba = _call_parents_fn(parents_fn, _call_parents_fn(parents_fn, pa, do_b), do_a)
            if not all(np.allclose(pa_ab[n], pa_ba[n], rtol=1e-5, atol=1e-5) for n in pa):
                continue  # the true SCM does not commute them (e.g. do(i) then do(t) moves i)
            result = _commutativity(
                subject.cf_fn,
                subject.x0,
                pa,
                do_a,
                do_b,
                parents_fn,
                subject.counterfactual(a),
                subject.counterfactual(b),
            )
            yield from _flat(result, f"commutativity/do({a}),do({b})/")


COUNTERFACTUAL_PROTOCOL = {
    "composition": {"type": "composition"},
    "effectiveness": {"type": "effectiveness"},
    "reversibility": {"type": "reversibility"},
    "ground_truth": {"type": "ground_truth"},
    "commutativity": {"type": "commutativity"},
}


def evaluate_counterfactuals(
    cf_fn: CounterfactualFn,
    examples: Mapping[str, Any],
    *,
    key: Array,
    composition_cycles: int = 10,
    reversibility_cycles: int = 5,
    **settings: Any,
) -> dict[str, float]:
    """The causal-gen evaluation protocol (REFERENCE §3.3) plus the axiomatic metrics, one seed.

    The five counterfactual evaluators on one `CounterfactualSubject(cf_fn, examples,
    key=key, **settings)` (see there for `dataset`, `oracle`, `parents_fn`, `interventions`,
    `random_subset`, `marginals`, `bins`, `batch_size`, `quantize`): composition once; per
    intervention "do(node)" (and "do(random)") the effectiveness, reversibility and, with a
    `dataset`, the ground-truth error; commutativity for every pair of single-node
    interventions whose counterfactual parents commute (parents_fn gives the same parents in
    both orders), since only those should give the same image. An `oracle` must be given
    when the dataset has no `measure`.

    Returns:
      A flat dict of floats: "num_examples"; "composition_l1_k" (and "_std"), k = 1..cycles;
      "effectiveness/do(node)/[oracle/]attr_mae|acc", "reversibility/do(node)/l1_k",
      "gt_error/do(node)/l1|rmse", "gt_error/do(node)/[oracle/]attr_mae|acc[_floor]";
      "commutativity/do(a),do(b)/l1". Every value has a "_std" companion (over images)
      except the floors.
    """
    dataset = settings.get("dataset")
    if settings.get("oracle") is None and getattr(dataset, "measure", None) is None:
        _oracles(None, dataset)  # raises: the protocol needs some oracle
    subject = CounterfactualSubject(cf_fn, examples, key=key, **settings)
    evals = {
        **COUNTERFACTUAL_PROTOCOL,
        "composition": {"type": "composition", "cycles": composition_cycles},
        "reversibility": {"type": "reversibility", "cycles": reversibility_cycles},
    }
    metrics = {"num_examples": float(subject.num)}
    metrics.update({name: value for _, name, value in run_evaluators(evals, subject)})
    return metrics
