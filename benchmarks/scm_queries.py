"""Counterfactual queries: causalvision's SCM engine side by side with DoWhy and ChiRho.

Four queries, each answered by every library that is installed:

1. Exact counterfactuals (abduction-action-prediction) of every node under `do(T = 1)` for all
   N units of a 3-node and of a 20-node linear-Gaussian SCM: compile time (first call minus
   steady state), steady-state time (median of `--repeats` calls), units/s and the max abs
   error against the closed form (float64 numpy). Peer: DoWhy's `gcm.counterfactual_samples`
   on an `InvertibleStructuralCausalModel` of the same graph. DoWhy is fitted with `gcm.fit`
   (not timed) and then given the true coefficients, so both libraries answer the query for
   the same model and the error measures the query, not the fit.
2. One inference-based twin-world query on the 3-node SCM (`--inference-n` units) whose Y
   mechanism is a probabilistic program: Y's noise is a latent site, the observed Y is
   conditioned through a Gaussian kernel of width 0.01 and the noise posterior is fitted by
   SVI (mean-field Normal guide, Adam, lr 0.02, `--svi-steps` steps); X and M keep exact
   abduction. causalvision: `SCM.twin_world` with a `NumpyroMechanism`, cold (with compile) and
   warm. Peer: ChiRho's `TwinWorldCounterfactual` + `do` + `condition` with
   `AutoSoftConditioning(scale=0.01)` on a Pyro model of the same SCM (M's noise shared across
   worlds by ChiRho's transformed-distribution abduction), Pyro SVI with `AutoNormal` on the
   conditioned model, then `Predictive` on the twin-world model. Error: mean |Y_cf - truth|.

3. Query 2 again in fresh processes (`--skip-fresh` leaves it out): causalvision's first call
   with an empty persistent compilation cache (`causalvision.enable_compilation_cache`, as the
   CLI and notebooks use), its first call in a second process that finds that cache, and its
   warm calls; ChiRho's first call in a fresh process and its warm calls. Imports are done
   before the clock starts; each row's `process_s` is the whole process, imports included.
4. Counterfactuals of partially observed units (`--partial-n` units, `--partial-samples` = S
   posterior draws each) in a linear-Gaussian SCM with a hidden confounder: U ~ N(0, 1),
   X = U + 0.5 e_x, Y = 0.5 X + 2 U + 0.5 e_y, under do(X = 1). Two factuals: "U hidden"
   (X, Y observed; scored: U, whose posterior U | X, Y the counterfactual world keeps; Y_cf =
   Y + 0.5 (1 - X) in every draw, checked as `y_cf_max_error`) and "U, Y hidden" (X observed;
   scored: Y_cf, which needs U | X and Y's noise from its prior). Both posteriors are Gaussian
   in closed form. Each by SVI (mean-field Normal guide, init scale 0.05, Adam at lr 0.02 for
   `--svi-steps`, cosine-decayed to 1/100 over the last half) and by NUTS (`--nuts-warmup`
   steps, then S draws; `--nuts-repeats` warm calls). causalvision: `SCM.counterfactual` on
   the factual without U (`Inference(method=...)`), cold (first call, compile included) and
   warm (median of later calls). Peer: ChiRho's `TwinWorldCounterfactual` + `do` +
   `condition` on a Pyro model whose X and Y are transformed noise distributions (their
   noise abducted exactly and shared across the worlds) and whose U is a latent site; Pyro
   SVI with `AutoNormal` and the same schedule (`LambdaLR`), or Pyro NUTS (`jit_compile`),
   on the conditioned model, then `Predictive` (S draws, in parallel) on the twin-world
   model. Error: mean over units of |posterior mean - closed form| (the `error` column) and
   of |posterior variance - closed form| (`var_error`), each also in Monte Carlo standard
   errors of S exact draws (sd/sqrt(S), var sqrt(2/(S-1)); about 0.8 is sampling alone).

Run (peers live in their own venv, never in the test venv .venv):

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.13.0          # first: the CPU wheel
    .venv-bench/bin/pip install -e ".[bench]"          # causalvision + dowhy, chirho, pandas
    .venv-bench/bin/python benchmarks/scm_queries.py

Query 4 alone, its rows and goal merged into the existing results file (the other rows,
and the command and machine that produced them, are kept; this run's go under `partial_run`):

    .venv-bench/bin/python benchmarks/scm_queries.py --repeats 10 --only-partial

Quick check without peers (they are then reported as not installed):

    .venv/bin/python benchmarks/scm_queries.py --n 1000 --inference-n 100 --svi-steps 50 \
        --repeats 2 --partial-n 100 --partial-samples 200 --nuts-warmup 100 \
        --output /tmp/scm_queries.json

Results are printed as a table and written as JSON (default
`benchmarks/results/scm_queries.json`, with every timed call's duration). JAX runs on the CPU
unless JAX_PLATFORMS says otherwise; thread settings are left at their defaults. Small timings
(milliseconds) vary from process to process on a shared machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from argparse import SUPPRESS
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from _common import fmt, print_columns, version, write_results

if "JAX_PLATFORMS" not in os.environ:
    jax.config.update("jax_platforms", "cpu")

RESULTS = Path(__file__).resolve().parent / "results" / "scm_queries.json"
DO_VALUE = 1.0
OBS_SCALE = 0.01
LEARNING_RATE = 0.02
GOAL_EXACT = 10.0  # causalvision units/s over DoWhy's
GOAL_INFERENCE = 20.0  # ChiRho's time over causalvision's, at equal or better error


# ----------------------------------------------------------------------------------------------
# The linear-Gaussian SCMs, as weight matrices: W[j, i] is the weight of parent j in node i.


class LinearSpec:
    """A linear-Gaussian SCM `x_i = sum_j W[j, i] x_j + u_i`, `u_i ~ N(0, 1)`, nodes in order."""

    def __init__(self, name: str, nodes: list[str], weights: np.ndarray, treatment: str):
        self.name, self.nodes, self.weights, self.treatment = name, nodes, weights, treatment

    def parents(self, i: int) -> list[int]:
        return [int(j) for j in np.flatnonzero(self.weights[:, i])]

    def truth(self, factual: dict[str, np.ndarray], value: float) -> dict[str, np.ndarray]:
        """The exact counterfactual in float64: abduct u = x - W^T x, then propagate under do."""
        x = np.stack([np.asarray(factual[n], np.float64) for n in self.nodes], axis=1)
        noise = x - x @ self.weights
        cf = np.empty_like(x)
        t = self.nodes.index(self.treatment)
        for i in range(len(self.nodes)):
            cf[:, i] = value if i == t else cf @ self.weights[:, i] + noise[:, i]
        return {n: cf[:, i] for i, n in enumerate(self.nodes)}


def three_node() -> LinearSpec:
    w = np.zeros((3, 3))
    w[0, 1], w[0, 2], w[1, 2] = 0.8, 0.6, 1.5  # X -> M, X -> Y, M -> Y
    return LinearSpec("3-node", ["X", "M", "Y"], w, "X")


def random_dag(num_nodes: int = 20, seed: int = 20) -> LinearSpec:
    """Two roots, then every node with 1-3 parents among earlier nodes, |weight| in [0.3, 1]."""
    rng = np.random.default_rng(seed)
    w = np.zeros((num_nodes, num_nodes))
    for i in range(2, num_nodes):
        k = int(rng.integers(1, min(3, i) + 1))
        parents = rng.choice(i, size=k, replace=False)
        w[parents, i] = rng.uniform(0.3, 1.0, k) * rng.choice([-1.0, 1.0], k)
    nodes = [f"V{i:02d}" for i in range(num_nodes)]
    reach = (np.linalg.matrix_power(np.eye(num_nodes) + (w != 0), num_nodes) > 0).sum(1)
    return LinearSpec(f"{num_nodes}-node", nodes, w, nodes[int(np.argmax(reach))])


# ----------------------------------------------------------------------------------------------
# Helpers.


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def row(query: str, library: str, n: int, **fields: Any) -> dict[str, Any]:
    base = {"compile_s": None, "time_s": None, "units_per_s": None, "error": None, "note": ""}
    return {"query": query, "library": library, "n": n, **base, **fields}


def error_stats(errors: list[float]) -> dict[str, Any]:
    """Mean error over seeds with its standard error (errors differ by posterior draws)."""
    se = statistics.stdev(errors) / np.sqrt(len(errors)) if len(errors) > 1 else 0.0
    return {"error": statistics.mean(errors), "error_se": se, "errors": errors}


def missing(query: str, library: str, n: int, reason: str) -> dict[str, Any]:
    return row(query, library, n, note=reason)


# ----------------------------------------------------------------------------------------------
# Query 1: exact counterfactuals.


def causalvision_linear(spec: LinearSpec):
    import numpyro.distributions as dist

    from causalvision.scm import SCM, LinearGaussian, Root

    mechanisms = {}
    for i, name in enumerate(spec.nodes):
        parents = spec.parents(i)
        if parents:
            weights = [float(spec.weights[j, i]) for j in parents]
            mechanisms[name] = LinearGaussian([spec.nodes[j] for j in parents], weights=weights)
        else:
            mechanisms[name] = Root(dist.Normal(0.0, 1.0))
    return SCM(mechanisms)


def truth_differs(factual: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> np.ndarray:
    """(N, nodes) mask of units whose counterfactual differs from their factual value."""
    return np.stack([np.abs(truth[n] - factual[n]) > 1e-9 for n in truth], axis=1)


def max_error(cf: dict[str, Any], truth: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(np.asarray(cf[n], np.float64) - t))) for n, t in truth.items())


def bench_causalvision_exact(spec, scm, units, truth, repeats) -> dict[str, Any]:
    query = f"exact cf, {spec.name}"
    do = {spec.treatment: DO_VALUE}
    first, cf = timed(lambda: scm.counterfactual(units, do=do))
    times = [timed(lambda: scm.counterfactual(units, do=do))[0] for _ in range(repeats)]
    steady = statistics.median(times)
    n = len(truth[spec.treatment])
    return row(
        query, "causalvision", n,
        compile_s=max(first - steady, 0.0), time_s=steady, units_per_s=n / steady,
        error=max_error(cf, truth), note=f"do({spec.treatment}={DO_VALUE})",
        first_call_s=first, times_s=times,
    )  # fmt: skip


def bench_dowhy_exact(spec, factual, truth, repeats) -> dict[str, Any]:
    query, n = f"exact cf, {spec.name}", len(truth[spec.treatment])
    try:
        import networkx as nx
        import pandas as pd
        from dowhy import gcm
        from dowhy.graph import get_ordered_predecessors
    except ImportError as error:
        return missing(query, "DoWhy", n, f"not installed (no module {error.name})")
    gcm.config.disable_progress_bars()
    graph = nx.DiGraph()
    graph.add_nodes_from(spec.nodes)
    for i, name in enumerate(spec.nodes):
        graph.add_edges_from((spec.nodes[j], name) for j in spec.parents(i))
    model = gcm.InvertibleStructuralCausalModel(graph)
    for i, name in enumerate(spec.nodes):
        if spec.parents(i):
            model.set_causal_mechanism(
                name, gcm.AdditiveNoiseModel(gcm.ml.create_linear_regressor())
            )
        else:
            model.set_causal_mechanism(name, gcm.EmpiricalDistribution())
    df = pd.DataFrame({name: np.asarray(factual[name], np.float64) for name in spec.nodes})
    start = time.perf_counter()
    gcm.fit(model, df)
    fit_s = time.perf_counter() - start
    # The true coefficients, in the parent order DoWhy uses, so the error measures the query.
    for i, name in enumerate(spec.nodes):
        if spec.parents(i):
            regressor = model.causal_mechanism(name).prediction_model.sklearn_model
            order = get_ordered_predecessors(model.graph, name)
            regressor.coef_ = np.array([spec.weights[spec.nodes.index(p), i] for p in order])
            regressor.intercept_ = 0.0

    def query_fn():
        return gcm.counterfactual_samples(
            model, {spec.treatment: lambda x: DO_VALUE}, observed_data=df
        )

    first, cf = timed(query_fn)
    times = [timed(query_fn)[0] for _ in range(repeats)]
    steady = statistics.median(times)
    return row(
        query, "DoWhy", n,
        time_s=steady, units_per_s=n / steady, error=max_error(cf, truth),
        note=f"first call {first:.3f} s; gcm.fit {fit_s:.2f} s (untimed), true coefs",
        first_call_s=first, fit_s=fit_s, times_s=times,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Query 2: one inference-based twin-world query on the 3-node SCM.


def causalvision_inference_query(scm, factual, svi_steps) -> Callable[[int], Any]:
    """`seed -> twin worlds`: the inference query of causalvision (see the module doc)."""
    import numpyro
    import numpyro.distributions as dist

    from causalvision.scm import Inference, NumpyroMechanism

    def y_model(X, M):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        return 0.6 * X + 1.5 * M + u

    settings = Inference(
        method="svi", num_steps=svi_steps, learning_rate=LEARNING_RATE, obs_scale=OBS_SCALE
    )
    inf = scm.replace(Y=NumpyroMechanism(["X", "M"], y_model, settings))

    def query_fn(seed: int):
        return inf.twin_world({"X": DO_VALUE}, factual=factual, key=jax.random.key(seed))

    return query_fn


def bench_causalvision_inference(scm, factual, truth_y, svi_steps, repeats) -> list[dict]:
    query_fn = causalvision_inference_query(scm, factual, svi_steps)

    def error(worlds) -> float:
        return float(np.mean(np.abs(np.asarray(worlds[1]["Y"], np.float64) - truth_y)))

    cold, worlds = timed(lambda: query_fn(0))
    cold_error = error(worlds)
    runs = [timed(lambda seed=seed: query_fn(seed)) for seed in range(1, repeats + 1)]
    warm = statistics.median(t for t, _ in runs)
    warm_errors = [error(w) for _, w in runs]
    n, query = len(truth_y), "inference twin-world, 3-node"
    note = f"SVI {svi_steps} steps; error over {repeats} seeds"
    return [
        row(query, "causalvision (cold)", n, compile_s=max(cold - warm, 0.0), time_s=cold,
            units_per_s=n / cold, note="first call, includes compile",
            **error_stats([cold_error, *warm_errors])),
        row(query, "causalvision (warm)", n, time_s=warm, units_per_s=n / warm,
            note=note, times_s=[t for t, _ in runs], **error_stats(warm_errors)),
    ]  # fmt: skip


def bench_chirho_inference(factual, truth_y, svi_steps, repeats) -> dict[str, Any]:
    n, query = len(truth_y), "inference twin-world, 3-node"
    query_fn = chirho_inference_query(factual, svi_steps)
    if isinstance(query_fn, str):
        return missing(query, "ChiRho", n, query_fn)
    runs = [timed(lambda seed=seed: query_fn(seed)) for seed in range(repeats)]
    time_s = statistics.median(t for t, _ in runs)
    errors = [float(np.mean(np.abs(y - truth_y))) for _, y in runs]
    note = f"SVI {svi_steps} steps; error over {repeats} seeds"
    return row(
        query, "ChiRho", n, time_s=time_s, units_per_s=n / time_s, note=note,
        times_s=[t for t, _ in runs], **error_stats(errors),
    )  # fmt: skip


def chirho_inference_query(factual, svi_steps) -> Callable[[int], np.ndarray] | str:
    """`seed -> counterfactual Y`: the inference query of ChiRho, or why it cannot run."""
    n = len(factual["Y"])
    try:
        import pyro
        import pyro.distributions as pdist
        import torch
        from chirho.counterfactual.handlers import TwinWorldCounterfactual
        from chirho.interventional.handlers import do
        from chirho.observational.handlers import condition
        from chirho.observational.handlers.soft_conditioning import AutoSoftConditioning
        from pyro.distributions.transforms import AffineTransform
    except ImportError as error:
        return f"not installed (no module {error.name})"

    data = {k: torch.tensor(np.asarray(factual[k], np.float32)) for k in ("X", "M", "Y")}
    soft = AutoSoftConditioning(scale=OBS_SCALE)

    def model():
        with pyro.plate("units", n, dim=-1):
            x = pyro.sample("X", pdist.Normal(0.0, 1.0))
            # M as a transformed noise distribution: ChiRho abducts its noise exactly.
            noise_m = pdist.Normal(torch.zeros(()), 1.0)
            m = pyro.sample(
                "M", pdist.TransformedDistribution(noise_m, [AffineTransform(0.8 * x, 1.0)])
            )
            u = pyro.sample("u_Y", pdist.Normal(0.0, 1.0))
            return pyro.deterministic("Y", 0.6 * x + 1.5 * m + u, event_dim=0)

    def conditioned():
        with pyro.poutine.reparam(config=soft), condition(data=data):
            return model()

    def twin_world():
        intervention = do(actions={"X": torch.tensor(DO_VALUE)})
        with pyro.poutine.reparam(config=soft), TwinWorldCounterfactual(), intervention:
            with condition(data=data):
                return model()

    def query_fn(seed: int) -> np.ndarray:
        pyro.set_rng_seed(seed)
        pyro.clear_param_store()
        guide = pyro.infer.autoguide.AutoNormal(conditioned, init_scale=0.05)
        optim = pyro.optim.Adam({"lr": LEARNING_RATE})
        svi = pyro.infer.SVI(conditioned, guide, optim, pyro.infer.Trace_ELBO())
        for _ in range(svi_steps):
            svi.step()
        predictive = pyro.infer.Predictive(
            twin_world, guide=guide, num_samples=1, return_sites=["Y"]
        )
        worlds = predictive()["Y"].detach().reshape(2, n).numpy()  # (factual, counterfactual)
        if not np.allclose(worlds[0], data["Y"].numpy()):
            raise RuntimeError("ChiRho: the factual world does not reproduce the observed Y")
        return worlds[1]

    return query_fn


# ----------------------------------------------------------------------------------------------
# Query 2 again, each library in fresh processes: the first call (compile included) and warm.

FRESH = "inference twin-world, 3-node, fresh process"
CACHE_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")


def fresh_worker(args: argparse.Namespace) -> int:
    """In a fresh process: the query's first call, then `--repeats` more (seeds 1..), on the
    units in `--data`; prints one JSON line. Imports are done before the clock starts."""
    import json

    loaded = np.load(args.data)
    factual = {k: loaded[k] for k in ("X", "M", "Y")}
    truth_y = three_node().truth(factual, DO_VALUE)["Y"]
    if args.fresh_worker == "causalvision":
        if args.cache:
            from causalvision import enable_compilation_cache

            enable_compilation_cache(args.cache)
        query_fn = causalvision_inference_query(
            causalvision_linear(three_node()), factual, args.svi_steps
        )

        def cf_y(seed: int) -> np.ndarray:
            return np.asarray(query_fn(seed)[1]["Y"], np.float64)

        versions = {p: version(p) for p in ("jax", "jaxlib", "numpyro")}
    else:
        chirho_fn = chirho_inference_query(factual, args.svi_steps)
        if isinstance(chirho_fn, str):
            print(json.dumps({"skipped": chirho_fn}))
            return 0
        cf_y = chirho_fn
        versions = {p: version(p) for p in ("chirho", "pyro-ppl", "torch")}
    runs = [timed(lambda seed=seed: cf_y(seed)) for seed in range(args.repeats + 1)]
    errors = [float(np.mean(np.abs(y - truth_y))) for _, y in runs]
    times = [t for t, _ in runs]
    print(json.dumps({"first_s": times[0], "times_s": times[1:], "errors": errors,
                      "versions": versions}))  # fmt: skip
    return 0


def bench_fresh_processes(factual, svi_steps, repeats, skip_peers) -> list[dict[str, Any]]:
    """causalvision cold with an empty persistent cache, then cold in a second process that
    finds the first one's cache, and warm; ChiRho cold and warm. Each `time_s` is one call."""
    import tempfile

    from _common import worker_result

    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}
    n = len(factual["Y"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="scm-queries-") as tmp:
        data = Path(tmp) / "units.npz"
        np.savez(data, **{k: np.asarray(factual[k]) for k in ("X", "M", "Y")})
        base = [sys.executable, str(Path(__file__).resolve()), "--data", str(data),
                "--svi-steps", str(svi_steps), "--repeats", str(repeats)]  # fmt: skip
        cache = str(Path(tmp) / "jax-cache")
        workers = [("causalvision", "empty cache", ["--cache", cache]),
                   ("causalvision", "persistent cache", ["--cache", cache]),
                   ("ChiRho", "", [])]  # fmt: skip
        warm: dict[str, dict[str, Any]] = {}
        for library, cache_state, extra in workers:
            if library == "ChiRho" and skip_peers:
                rows.append(missing(FRESH, "ChiRho (cold)", n, "skipped (--skip-peers)"))
                continue
            start = time.perf_counter()
            command = [*base, "--fresh-worker", library.lower(), *extra]
            result, why = worker_result(command, env=env)
            process_s = time.perf_counter() - start
            label = f"{library} (cold, {cache_state})" if cache_state else f"{library} (cold)"
            if result is None:
                rows.append(missing(FRESH, label, n, why))
                continue
            first = result["first_s"]
            rows.append(row(
                FRESH, label, n, time_s=first, units_per_s=n / first, error=result["errors"][0],
                note=f"first call in a fresh process (its whole run, imports included: "
                     f"{process_s:.1f} s)", process_s=process_s, versions=result["versions"],
            ))  # fmt: skip
            warm.setdefault(library, result)
        for library, result in warm.items():
            time_s = statistics.median(result["times_s"])
            rows.append(row(
                FRESH, f"{library} (warm)", n, time_s=time_s, units_per_s=n / time_s,
                note=f"median of {repeats} later calls, same process",
                times_s=result["times_s"], **error_stats(result["errors"][1:]),
            ))  # fmt: skip
    return rows


# ----------------------------------------------------------------------------------------------
# Query 4: counterfactuals of partially observed units (a hidden confounder), closed form.

# U ~ N(0, 1), X = A U + SX e_x, Y = B X + C U + SY e_y (as in tests/test_partial_counterfactuals).
CONF_A, CONF_B, CONF_C, CONF_SX, CONF_SY = 1.0, 0.5, 2.0, 0.5, 0.5
# Variant -> its name in the table and the nodes the factual holds.
PARTIAL_VARIANTS = {"u": ("U hidden", ("X", "Y")), "uy": ("U, Y hidden", ("X",))}
PARTIAL_METHODS = ("svi", "nuts")


PARTIAL_QUERY_PREFIX = "partial cf, "
PARTIAL_GOAL = "against ChiRho on the same partial queries (time and error)"


def partial_query(variant: str, method: str) -> str:
    return f"{PARTIAL_QUERY_PREFIX}{variant}, {method.upper()}"


class PartialTruth:
    """The closed-form posterior of the scored node per unit, from float64 Gaussian algebra.

    U | X (and Y) is Gaussian: precision 1 + A²/SX² (+ C²/SY²), mean (A x/SX² (+ C (y - B x)
    /SY²)) / precision. With Y observed the scored node is U (the counterfactual world keeps
    the factual U), and Y_cf = y + B (x' - x) in every draw, exactly: Y's abducted noise
    cancels U. With Y hidden the scored node is Y_cf = B x' + C U + SY e_y, e_y from its
    prior: mean B x' + C E[U | x], variance C² Var[U | x] + SY².
    """

    def __init__(self, factual: dict[str, np.ndarray]):
        x = np.asarray(factual["X"], np.float64)
        y = None if "Y" not in factual else np.asarray(factual["Y"], np.float64)
        precision = 1.0 + CONF_A**2 / CONF_SX**2
        weighted = CONF_A * x / CONF_SX**2
        if y is not None:
            precision += CONF_C**2 / CONF_SY**2
            weighted = weighted + CONF_C * (y - CONF_B * x) / CONF_SY**2
        mean_u, var_u = weighted / precision, 1.0 / precision
        if y is None:
            self.node, self.exact_y_cf = "Y", None
            self.mean = CONF_B * DO_VALUE + CONF_C * mean_u
            self.variance = np.full_like(x, CONF_C**2 * var_u + CONF_SY**2)
        else:
            self.node, self.exact_y_cf = "U", y + CONF_B * (DO_VALUE - x)
            self.mean, self.variance = mean_u, np.full_like(x, var_u)

    def score(self, draws: dict[str, np.ndarray]) -> dict[str, float]:
        """Errors of `S` posterior draws `(S, N)` per node: mean over units of |mean - exact
        mean| and |variance - exact variance|, also in Monte Carlo standard errors of `S`
        independent exact draws (sd/sqrt(S) and var sqrt(2/(S-1)); about 0.8 is as good as
        sampling gets)."""
        values = np.asarray(draws[self.node], np.float64)
        s = values.shape[0]
        mean_error = np.abs(values.mean(0) - self.mean)
        var_error = np.abs(values.var(0) - self.variance)
        out = {
            "error": float(mean_error.mean()),
            "var_error": float(var_error.mean()),
            "error_in_se": float(np.mean(mean_error / np.sqrt(self.variance / s))),
            "var_error_in_se": float(np.mean(var_error / (self.variance * np.sqrt(2 / (s - 1))))),
        }
        if self.exact_y_cf is not None:
            y_cf = np.asarray(draws["Y"], np.float64)
            out["y_cf_max_error"] = float(np.max(np.abs(y_cf - self.exact_y_cf)))
        return out


def hidden_confounder_scm():
    import numpyro.distributions as dist

    from causalvision.scm import SCM, LinearGaussian, Root

    return SCM(
        {
            "U": Root(dist.Normal(0.0, 1.0)),
            "X": LinearGaussian(["U"], weights=[CONF_A], scale=CONF_SX),
            "Y": LinearGaussian(["X", "U"], weights=[CONF_B, CONF_C], scale=CONF_SY),
        }
    )


def causalvision_partial_query(factual, method, args) -> Callable[[int], dict[str, Any]]:
    """`seed -> {"U", "Y"}`: `(S, N)` counterfactual draws from `SCM.counterfactual`."""
    from causalvision.scm import Inference

    scm = hidden_confounder_scm()
    settings = Inference(
        method=method,
        num_steps=args.svi_steps,
        learning_rate=LEARNING_RATE,
        num_warmup=args.nuts_warmup,
    )

    def query_fn(seed: int) -> dict[str, Any]:
        cf = scm.counterfactual(
            factual, do={"X": DO_VALUE}, key=jax.random.key(seed),
            num_samples=args.partial_samples, inference=settings,
        )  # fmt: skip
        return {"U": cf["U"], "Y": cf["Y"]}

    return query_fn


def chirho_partial_query(factual, method, args) -> Callable[[int], dict[str, Any]] | str:
    """`seed -> {"U", "Y"}`: `(S, N)` counterfactual draws from ChiRho, or why it can't run.

    X and Y are transformed noise distributions, so ChiRho abducts an observed node's noise
    exactly and shares it across the twin worlds; U is a latent sample site. The posterior
    is fitted on the conditioned single-world model (Y left out of it when Y is hidden: it
    says nothing about U, and a guide site for Y would be replayed into both worlds), then
    `Predictive` runs the twin-world model `S` times in parallel on the guide's (SVI) or the
    chain's (NUTS) draws of U.
    """
    n, s = len(factual["X"]), args.partial_samples
    try:
        import pyro
        import pyro.distributions as pdist
        import torch
        from chirho.counterfactual.handlers import TwinWorldCounterfactual
        from chirho.interventional.handlers import do
        from chirho.observational.handlers import condition
        from pyro.distributions.transforms import AffineTransform
    except ImportError as error:
        return f"not installed (no module {error.name})"

    data = {k: torch.tensor(np.asarray(v, np.float32)) for k, v in factual.items()}

    def model(with_y: bool = True):
        def node(name, loc, scale):
            noise = pdist.Normal(torch.zeros(()), scale)
            law = pdist.TransformedDistribution(noise, [AffineTransform(loc, 1.0)])
            return pyro.sample(name, law)

        with pyro.plate("units", n, dim=-1):
            u = pyro.sample("U", pdist.Normal(0.0, 1.0))
            x = node("X", CONF_A * u, CONF_SX)
            return node("Y", CONF_B * x + CONF_C * u, CONF_SY) if with_y else x

    def conditioned():
        with condition(data=data):
            return model(with_y="Y" in data)

    def twin_world():
        with TwinWorldCounterfactual(), do(actions={"X": torch.tensor(DO_VALUE)}):
            with condition(data=data):
                return model()

    def half_cosine(step: int) -> float:
        """causalvision's SVI step size: constant, then a cosine decay to 1/100 over the
        last half of the steps (`causalvision.scm.inference._schedule`)."""
        half = max(args.svi_steps // 2, 1)
        if step < half:
            return 1.0
        return 0.01 + 0.99 * 0.5 * (1.0 + np.cos(np.pi * min(step - half, half) / half))

    def query_fn(seed: int) -> dict[str, np.ndarray]:
        pyro.set_rng_seed(seed)
        pyro.clear_param_store()
        sites = {"return_sites": ["U", "Y"], "parallel": True}
        if method == "svi":
            guide = pyro.infer.autoguide.AutoNormal(conditioned, init_scale=0.05)
            optim = pyro.optim.LambdaLR({
                "optimizer": torch.optim.Adam, "optim_args": {"lr": LEARNING_RATE},
                "lr_lambda": half_cosine,
            })  # fmt: skip
            svi = pyro.infer.SVI(conditioned, guide, optim, pyro.infer.Trace_ELBO())
            for _ in range(args.svi_steps):
                svi.step()
                optim.step()
            predictive = pyro.infer.Predictive(twin_world, guide=guide, num_samples=s, **sites)
        else:
            kernel = pyro.infer.NUTS(conditioned, jit_compile=True, ignore_jit_warnings=True)
            mcmc = pyro.infer.MCMC(
                kernel, warmup_steps=args.nuts_warmup, num_samples=s, disable_progbar=True
            )
            with warnings.catch_warnings():  # torch.jit.trace's deprecation notice
                warnings.simplefilter("ignore", FutureWarning)
                mcmc.run()
            predictive = pyro.infer.Predictive(
                twin_world, posterior_samples=mcmc.get_samples(), **sites
            )
        draws = predictive()
        worlds = draws["Y"].detach().reshape(s, 2, n).numpy()  # (draw, factual / cf, unit)
        if "Y" in data and not np.allclose(worlds[:, 0], data["Y"].numpy()):
            raise RuntimeError("ChiRho: the factual world does not reproduce the observed Y")
        return {"U": draws["U"].detach().reshape(s, n).numpy(), "Y": worlds[:, 1]}

    return query_fn


def partial_rows(query, library, query_fn, truth, repeats, cold_compile) -> list[dict]:
    """A cold row (the query's first call in this process) and a warm one (median of
    `repeats` more, seeds 1..); errors against `truth` (see `PartialTruth.score`)."""
    cold, first = timed(lambda: query_fn(0))
    runs = [timed(lambda seed=seed: query_fn(seed)) for seed in range(1, repeats + 1)]
    warm = statistics.median(t for t, _ in runs)
    scores = [truth.score(first), *(truth.score(out) for _, out in runs)]
    n = len(truth.mean)

    def errors(some: list[dict[str, float]]) -> dict[str, Any]:
        out = {"scored": f"{truth.node}_cf" if truth.node == "Y" else truth.node,
               **error_stats([e["error"] for e in some])}  # fmt: skip
        for field in ("var_error", "error_in_se", "var_error_in_se"):
            out[field] = statistics.mean(e[field] for e in some)
        if truth.exact_y_cf is not None:
            out["y_cf_max_error"] = max(e["y_cf_max_error"] for e in some)
        return out

    def note(fields: dict[str, Any]) -> str:
        text = (f"{fields['scored']}: var err {fields['var_error']:.2e}; in MC se: mean "
                f"{fields['error_in_se']:.2f}, var {fields['var_error_in_se']:.2f}")  # fmt: skip
        if "y_cf_max_error" in fields:
            text += f"; Y_cf max err {fields['y_cf_max_error']:.1e}"
        return text

    cold_errors, warm_errors = errors(scores), errors(scores[1:])
    first_call = "first call, includes compile" if cold_compile else "first call"
    return [
        row(query, f"{library} (cold)", n, time_s=cold, units_per_s=n / cold,
            compile_s=max(cold - warm, 0.0) if cold_compile else None,
            note=f"{first_call}; {note(cold_errors)}", **cold_errors),
        row(query, f"{library} (warm)", n, time_s=warm, units_per_s=n / warm,
            note=f"median of {repeats}; {note(warm_errors)}", times_s=[t for t, _ in runs],
            **warm_errors),
    ]  # fmt: skip


def bench_partial(args) -> list[dict[str, Any]]:
    """Query 4: every variant and method, causalvision then ChiRho (see the module doc)."""
    scm = hidden_confounder_scm()
    units = {k: np.asarray(v) for k, v in scm.sample(jax.random.key(4), args.partial_n).items()}
    rows = []
    for variant, observed in (PARTIAL_VARIANTS[v] for v in args.partial_variants):
        factual = {k: units[k] for k in observed}
        truth = PartialTruth(factual)
        for method in args.partial_methods:
            query = partial_query(variant, method)
            repeats = args.repeats if method == "svi" else min(args.repeats, args.nuts_repeats)
            print(f"{query}: {args.partial_n} units, {args.partial_samples} draws", flush=True)
            ours = causalvision_partial_query(factual, method, args)
            rows.extend(partial_rows(query, "causalvision", ours, truth, repeats, True))
            peer = None if args.skip_peers else chirho_partial_query(factual, method, args)
            if peer is None or isinstance(peer, str):
                why = peer or "skipped (--skip-peers)"
                rows.extend(missing(query, f"ChiRho ({k})", args.partial_n, why)
                            for k in ("cold", "warm"))  # fmt: skip
            else:
                rows.extend(partial_rows(query, "ChiRho", peer, truth, repeats, False))
    return rows


# ----------------------------------------------------------------------------------------------
# Report.


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_platforms": os.environ.get("JAX_PLATFORMS", "cpu (set by the benchmark)"),
        "jax_devices": [str(d) for d in jax.devices()],
        "cpu_affinity": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    packages = ("causalvision", "jax", "jaxlib", "numpyro", "numpy")
    peers = ("dowhy", "pandas", "scikit-learn", "chirho", "pyro-ppl", "torch")
    info["versions"] = {p: version(p) or "not installed" for p in packages + peers}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
    except ImportError:
        info["torch_threads"] = "not installed"
    return info


def print_table(rows: list[dict[str, Any]]) -> None:
    # Ratio: how many times faster causalvision answers the query (peer time / cv time).
    header = ("query", "library", "N", "compile s", "time s", "units/s", "error", "vs cv", "note")
    lines = []
    for r in rows:
        ratio = r.get("causalvision_speedup")
        lines.append((
            r["query"], r["library"], str(r["n"]), fmt(r["compile_s"], ".3f"),
            fmt(r["time_s"], ".4f"), fmt(r["units_per_s"], ".3g"), fmt(r["error"], ".2e"),
            "-" if ratio is None else f"{ratio:.1f}x", r["note"],
        ))  # fmt: skip
    print_columns(header, lines)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """`causalvision_speedup` = peer time / causalvision time (steady state, or warm); a
    peer's "(cold)" row against "causalvision (cold)" where the query has one."""
    reference = {}
    for r in rows:
        if r["library"] in ("causalvision", "causalvision (warm)"):
            reference[(r["query"], "warm")] = r["time_s"]
        elif r["library"] == "causalvision (cold)":
            reference[(r["query"], "cold")] = r["time_s"]
    for r in rows:
        cold = r["library"].endswith("(cold)") and (r["query"], "cold") in reference
        ref = reference.get((r["query"], "cold" if cold else "warm"))
        if r["library"].startswith("causalvision") or ref is None or r["time_s"] is None:
            r["causalvision_speedup"] = None
        else:
            r["causalvision_speedup"] = r["time_s"] / ref


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["query"], r["library"]): r for r in rows}
    out = []
    for spec in ("3-node", "20-node"):
        peer = by.get((f"exact cf, {spec}", "DoWhy"))
        if peer and peer["causalvision_speedup"] is not None:
            speedup = peer["causalvision_speedup"]
            out.append({
                "goal": f"exact {spec}: >= {GOAL_EXACT:g}x DoWhy's units/s",
                "value": f"{speedup:.1f}x", "met": speedup >= GOAL_EXACT,
            })  # fmt: skip
    fresh = [("cold, empty cache", "cold"), ("cold, persistent cache", "cold"), ("warm", "warm")]
    for ours, theirs in fresh:
        cv, peer = by.get((FRESH, f"causalvision ({ours})")), by.get((FRESH, f"ChiRho ({theirs})"))
        if cv and peer and cv["time_s"] is not None and peer["time_s"] is not None:
            speedup = peer["time_s"] / cv["time_s"]
            out.append({
                "goal": f"inference, fresh process, causalvision {ours} against ChiRho {theirs}: "
                        f">= {GOAL_INFERENCE:g}x faster",
                "value": f"{speedup:.1f}x ({cv['time_s']:.3f} s against {peer['time_s']:.3f} s; "
                         f"error {cv['error']:.4f} vs ChiRho {peer['error']:.4f})",
                "met": speedup >= GOAL_INFERENCE,
            })  # fmt: skip
    query = "inference twin-world, 3-node"
    peer = by.get((query, "ChiRho"))
    if peer and peer["time_s"] is not None:
        for kind in ("warm", "cold"):
            cv = by[(query, f"causalvision ({kind})")]
            speedup = peer["time_s"] / cv["time_s"]
            # "Equal" within two standard errors of the difference over seeds.
            tolerance = 2 * float(np.hypot(cv.get("error_se", 0.0), peer.get("error_se", 0.0)))
            error_ok = bool(cv["error"] <= peer["error"] + tolerance)
            out.append({
                "goal": f"inference ({kind}): >= {GOAL_INFERENCE:g}x faster than ChiRho "
                        "at equal or better error",
                "value": f"{speedup:.1f}x, error {cv['error']:.4f} vs ChiRho {peer['error']:.4f}"
                         f" (equal within {tolerance:.4f})",
                "met": speedup >= GOAL_INFERENCE and error_ok,
            })  # fmt: skip
    out.extend(partial_goal(by))
    return out


def partial_goal(by: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Query 4 against ChiRho: met when causalvision is faster, cold and warm, on every
    partial query, and its errors (mean and variance, in MC standard errors) are no worse
    than ChiRho's plus 0.5 (about the spread of that measure between seeds)."""
    parts, met = [], True
    for variant, _ in PARTIAL_VARIANTS.values():
        for method in PARTIAL_METHODS:
            query = partial_query(variant, method)
            cv = {k: by.get((query, f"causalvision ({k})")) for k in ("cold", "warm")}
            peer = {k: by.get((query, f"ChiRho ({k})")) for k in ("cold", "warm")}
            rows = [*cv.values(), *peer.values()]
            if any(r is None or r["time_s"] is None for r in rows):
                continue
            ours, theirs = cv["warm"], peer["warm"]
            speedups = {k: peer[k]["time_s"] / cv[k]["time_s"] for k in ("cold", "warm")}
            error_ok = all(ours[f] <= theirs[f] + 0.5 for f in ("error_in_se", "var_error_in_se"))
            met = met and error_ok and min(speedups.values()) >= 1.0
            parts.append(
                f"{variant}, {method.upper()}: {speedups['warm']:.1f}x warm, "
                f"{speedups['cold']:.1f}x cold, error in MC se (mean/var) "
                f"{ours['error_in_se']:.2f}/{ours['var_error_in_se']:.2f} vs ChiRho "
                f"{theirs['error_in_se']:.2f}/{theirs['var_error_in_se']:.2f}"
            )
    if not parts:
        return []
    return [{
        "goal": f"{PARTIAL_GOAL}: faster cold and warm, at equal or better error",
        "value": "; ".join(parts), "met": met,
    }]  # fmt: skip


def merge_partial(args, info, rows, checks) -> None:
    """`--only-partial`: query 4's rows and goal replace those in `--output`; the other rows,
    goals, command and machine stay those of the run that wrote them, and this run's command,
    settings and machine are kept under `partial_run`."""
    import json

    from _common import python_path

    output = args.output
    record = json.loads(output.read_text()) if output.exists() else {}
    record["rows"] = [
        r for r in record.get("rows", []) if not r["query"].startswith(PARTIAL_QUERY_PREFIX)
    ] + rows
    record["goals"] = [
        g for g in record.get("goals", []) if not g["goal"].startswith(PARTIAL_GOAL)
    ] + checks
    record["partial_run"] = {
        "command": " ".join([python_path(), *sys.argv]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": info,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nmerged query 4 into {output}")


def bench_queries_1_to_3(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    three = None
    for spec in (three_node(), random_dag()):
        scm = causalvision_linear(spec)
        units = scm.sample(jax.random.key(0), args.n)
        factual = {k: np.asarray(v) for k, v in units.items()}
        truth = spec.truth(factual, DO_VALUE)
        three = three or (spec, scm, units, factual)
        reached = int(np.count_nonzero(np.any(truth_differs(factual, truth), axis=0)))
        print(f"{spec.name}: do({spec.treatment}={DO_VALUE}) changes {reached} nodes", flush=True)
        rows.append(bench_causalvision_exact(spec, scm, units, truth, args.repeats))
        if args.skip_peers:
            rows.append(missing(rows[-1]["query"], "DoWhy", args.n, "skipped (--skip-peers)"))
        else:
            rows.append(bench_dowhy_exact(spec, factual, truth, args.repeats))

    spec, scm, units, factual = three
    small = {k: v[: args.inference_n] for k, v in units.items()}
    small_np = {k: v[: args.inference_n] for k, v in factual.items()}
    small_truth = spec.truth(small_np, DO_VALUE)["Y"]
    rows.extend(bench_causalvision_inference(scm, small, small_truth, args.svi_steps, args.repeats))
    if args.skip_peers:
        query = rows[-1]["query"]
        rows.append(missing(query, "ChiRho", args.inference_n, "skipped (--skip-peers)"))
    else:
        rows.append(bench_chirho_inference(small_np, small_truth, args.svi_steps, args.repeats))

    if not args.skip_fresh:
        rows.extend(bench_fresh_processes(small_np, args.svi_steps, args.repeats, args.skip_peers))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="units, exact query")
    parser.add_argument("--inference-n", type=int, default=1000, help="units, inference query")
    parser.add_argument("--svi-steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the first")
    parser.add_argument("--skip-peers", action="store_true", help="causalvision only")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--skip-fresh", action="store_true", help="no fresh-process rows")
    parser.add_argument("--partial-n", type=int, default=1000, help="units, partial query")
    parser.add_argument(
        "--partial-samples", type=int, default=1000, help="posterior draws per unit, partial query"
    )
    parser.add_argument(
        "--partial-methods", nargs="*", choices=PARTIAL_METHODS, default=list(PARTIAL_METHODS),
        help="inference methods of the partial query (none: leave it out)",
    )  # fmt: skip
    parser.add_argument(
        "--partial-variants", nargs="+", choices=list(PARTIAL_VARIANTS),
        default=list(PARTIAL_VARIANTS), help="partial query: u (U hidden), uy (U and Y hidden)",
    )  # fmt: skip
    parser.add_argument(
        "--only-partial", action="store_true",
        help="run query 4 alone and merge its rows and goal into --output (others kept)",
    )  # fmt: skip
    parser.add_argument("--nuts-warmup", type=int, default=500, help="NUTS warm-up steps")
    parser.add_argument(
        "--nuts-repeats", type=int, default=3, help="warm NUTS calls (at most --repeats)"
    )
    # A fresh-process worker (run by the benchmark itself).
    parser.add_argument("--fresh-worker", choices=("causalvision", "chirho"), help=SUPPRESS)
    parser.add_argument("--data", type=Path, help=SUPPRESS)
    parser.add_argument("--cache", help=SUPPRESS)
    args = parser.parse_args(argv)
    if args.fresh_worker:
        return fresh_worker(args)
    sizes = (args.n, args.inference_n, args.svi_steps, args.repeats, args.partial_n,
             args.nuts_warmup, args.nuts_repeats)  # fmt: skip
    if min(sizes) < 1 or args.partial_samples < 2:
        parser.error(
            "--n, --inference-n, --svi-steps, --repeats, --partial-n, --nuts-warmup and "
            "--nuts-repeats must be >= 1, --partial-samples >= 2"
        )
    if args.inference_n > args.n:
        parser.error("--inference-n must not exceed --n (its units are the first of the N)")
    if args.only_partial and not args.partial_methods:
        parser.error("--only-partial needs at least one of --partial-methods")

    info = machine_info()
    print(f"machine: {info['processor']}, {info['cpu_count']} CPUs, JAX on {info['jax_devices']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"torch threads: {info['torch_threads']}; CPU affinity {info['cpu_affinity']}")
    print(flush=True)

    rows = [] if args.only_partial else bench_queries_1_to_3(args)
    if args.partial_methods:
        rows.extend(bench_partial(args))

    add_ratios(rows)
    print()
    print_table(rows)
    print()
    print("error: exact rows max |cf - truth| over all nodes and units; inference rows mean")
    print("|Y_cf - truth| over units (one posterior draw per unit); partial rows mean over units")
    print("of |posterior mean - closed form| of the scored node (U, or Y_cf when Y is hidden),")
    print("MC se = that of S exact draws. 'vs cv': peer time / causalvision time (steady state;")
    print("warm for the inference queries; cold against causalvision's cold row where it has one).")
    checks = goals(rows)
    for check in checks:
        print(f"{'MET    ' if check['met'] else 'NOT MET'}  {check['goal']}: {check['value']}")

    if args.only_partial:
        merge_partial(args, info, rows, checks)
    else:
        write_results(args, args.output, machine=info, rows=rows, goals=checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
