"""Identification by Shpitser & Pearl's ID / IDC: causalvision against y0, time and agreement.

The same queries go to both libraries: the named graphs (the napkin, front-door with W -> M and
W -> Y, sequential treatments do(X1, X2), the bow arc) and `--graphs` seeded random graphs
(4-8 observed nodes, random forward edges, 1-3 latent confounders), each with every ordered
pair (x, y), four joint-treatment/joint-outcome queries and four conditional ones (IDC).

* causalvision: `CausalGraph.identify(x, y, given=z, method="id")` (the adjustment fast paths
  skipped; the latent projection is computed inside the timed call).
* y0: `identify_outcomes(NxMixedGraph, x, y, conditions=z)` on the latent projection
  (directed and bidirected edges, built untimed).

Timed: the best of `--repeats` calls per query and library. Agreement: both call the query
identifiable or both do not; where both identify, each estimand is evaluated on the exact
observational distribution of a random binary SCM over the graph (CPTs uniform in [0.1, 0.9],
the joint enumerated exactly, latent nodes marginalised) and compared with the exact
interventional (or conditional interventional) distribution enumerated from the SCM under
do(x). y0's expressions are translated node for node into causalvision's expression tree
(`Probability` -> `Prob`, `Sum`, `Product`, `Fraction`, `One`) and evaluated by the same
tabular evaluator: the translation renames nothing, so a bound variable that shadows a
treatment (y0's `Sum[X](P(X) P(Y | X, Z))`) keeps its scope. y0 sometimes leaves a variable
free that is neither treatment, outcome nor given (a missing sum): such an estimand is
evaluated at every value of it and must match the truth at each. y0 raises on some IDC
queries (a KeyError in its rule-2 check): counted apart, left out of the time ratio.

    .venv/bin/pip install y0            # the peer, in the `bench` extra
    .venv/bin/python benchmarks/identification.py
    .venv/bin/python benchmarks/identification.py --graphs 5 --output /tmp/identification.json

Writes a table and `benchmarks/results/identification.json`. Pure Python and numpy; no JAX.
Without y0 the peer is reported as skipped, with the reason.
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import Failure, Parser, fmt, host_info, print_columns, run_main, write_results

from causalvision.graph import CausalGraph, Fraction, Prob, Product, RandomBinarySCM, Sum
from causalvision.graph.expression import evaluate

RESULTS = Path(__file__).resolve().parent / "results" / "identification.json"
TOL = 1e-9

Query = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]


# ------------------------------------------------------------------------------------ graphs
def _u(name: str, a: str, b: str) -> list[tuple[str, str]]:
    return [(name, a), (name, b)]


def _named(edges: list[tuple[str, str]]) -> CausalGraph:
    return CausalGraph(edges, latent=sorted({p for p, _ in edges if p.startswith("U")}))


def named_cases() -> list[tuple[str, CausalGraph, Query]]:
    napkin = [("W1", "W2"), ("W2", "X"), ("X", "Y"), *_u("U1", "W1", "X"), *_u("U2", "W1", "Y")]
    frontdoor_w = [("X", "M"), ("M", "Y"), ("W", "M"), ("W", "Y"), *_u("U", "X", "Y")]
    sequential = [("X1", "Z"), ("Z", "X2"), ("X2", "Y"), ("X1", "Y"), *_u("U", "Z", "Y")]
    bow = [("X", "Y"), *_u("U", "X", "Y")]
    return [
        ("napkin", _named(napkin), (("X",), ("Y",), ())),
        ("front-door + W->M, W->Y", _named(frontdoor_w), (("X",), ("Y",), ())),
        ("sequential do(X1, X2)", _named(sequential), (("X1", "X2"), ("Y",), ())),
        ("bow arc", _named(bow), (("X",), ("Y",), ())),
    ]


def random_queries(g: CausalGraph, rng: np.random.Generator) -> list[Query]:
    obs = list(g.observed)
    queries: list[Query] = [((x,), (y,), ()) for x, y in itertools.permutations(obs, 2)]
    for _ in range(4):  # joint treatments and outcomes
        picked = [str(v) for v in rng.choice(obs, size=min(4, len(obs)), replace=False)]
        cut = int(rng.integers(1, len(picked)))
        queries.append((tuple(picked[:cut]), tuple(picked[cut:]), ()))
    for _ in range(4):  # conditional queries
        x, y, z = (str(v) for v in rng.choice(obs, size=3, replace=False))
        queries.append(((x,), (y,), (z,)))
    return queries


# ------------------------------------------------------------------------------------- y0
class Y0:
    """y0's `identify_outcomes` on a graph's latent projection, and its estimands translated
    into causalvision expressions."""

    def __init__(self) -> None:
        from y0.algorithm.identify import identify_outcomes
        from y0.dsl import Variable
        from y0.graph import NxMixedGraph

        self.identify_outcomes, self.variable, self.graph_type = (
            identify_outcomes,
            Variable,
            NxMixedGraph,
        )

    def graph(self, g: CausalGraph) -> Any:
        proj = g.latent_projection()
        return self.graph_type.from_edges(
            nodes=[self.variable(n) for n in proj.nodes],
            directed=[(self.variable(a), self.variable(b)) for a, b in sorted(proj.directed)],
            undirected=[(self.variable(a), self.variable(b)) for a, b in sorted(proj.bidirected)],
        )

    def identify(self, graph: Any, query: Query) -> Any:
        xs, ys, zs = query
        v = self.variable
        conditions = {v(n) for n in zs} if zs else None
        return self.identify_outcomes(graph, {v(n) for n in xs}, {v(n) for n in ys}, conditions)

    def translate(self, expr: Any) -> Any:
        """The y0 expression as a causalvision expression (ValueError if it has no
        observational counterpart: counterfactual variables, interventions, Zero)."""
        from y0 import dsl

        def name(var: Any) -> str:
            if type(var) is not dsl.Variable:
                raise ValueError(f"not an observational variable: {var!r}")
            return var.name

        if isinstance(expr, dsl.Probability):
            d = expr.distribution
            return Prob(tuple(map(name, d.children)), tuple(map(name, d.parents)))
        if isinstance(expr, dsl.Product):
            return Product(tuple(self.translate(e) for e in expr.expressions))
        if isinstance(expr, dsl.Sum):
            return Sum(tuple(map(name, expr.ranges)), self.translate(expr.expression))
        if isinstance(expr, dsl.Fraction):
            return Fraction(self.translate(expr.numerator), self.translate(expr.denominator))
        if isinstance(expr, dsl.One):
            return Product(())
        raise ValueError(f"no translation for {type(expr).__name__}: {expr}")


def load_y0() -> tuple[Y0 | None, str]:
    try:
        return Y0(), ""
    except ImportError as error:
        return None, f"not installed (no module {error.name})"


# ----------------------------------------------------------------------------------- bench
def best_of(fn: Any, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    diff = np.abs(np.asarray(a, np.float64) - b)
    return float("inf") if np.isnan(diff).any() else float(diff.max(initial=0.0))


def run_query(
    g: CausalGraph, query: Query, model: RandomBinarySCM, table: np.ndarray, peer: Y0 | None,
    peer_graph: Any, repeats: int,
) -> dict[str, Any]:  # fmt: skip
    xs, ys, zs = query
    ours_s, result = best_of(lambda: g.identify(xs, ys, given=zs or None, method="id"), repeats)
    ours_ok = result.expression is not None
    truth = model.interventional(result.treatment, result.outcome, result.given)
    out: dict[str, Any] = {
        "treatment": list(xs), "outcome": list(ys), "given": list(zs),
        "ours_s": ours_s, "ours_strategy": result.strategy, "ours_identified": ours_ok,
        "ours_error": max_abs(result.evaluate(table, g.observed), truth) if ours_ok else None,
        "y0_s": None, "y0_identified": None, "y0_error": None, "difference": None,
        "y0_note": "",
    }  # fmt: skip
    if peer is None:
        return out
    try:
        y0_s, expr = best_of(lambda: peer.identify(peer_graph, query), repeats)
    except Exception as error:  # y0 raises on some IDC queries (KeyError inside rule 2)
        out["y0_note"] = f"raised {type(error).__name__}: {' '.join(str(error).split())}"
        return out
    out.update(y0_s=y0_s, y0_identified=expr is not None)
    if expr is None:
        return out
    out["y0_estimand"] = str(expr)
    try:
        translated = peer.translate(expr)
    except ValueError as error:
        out["y0_note"] = f"not evaluated: {' '.join(str(error).split())}"
        return out
    # y0 may leave a variable free that is neither treatment, outcome nor given (a missing
    # sum): such an estimand is evaluated at every value of it, and must match at each.
    unbound = sorted(translated.free() - set(result.axes))
    if unbound:
        out["y0_note"] = f"unbound variable(s) {', '.join(unbound)}"
    _, value = evaluate(translated, table, g.observed, axes=(*result.axes, *unbound))
    pad = (...,) + (None,) * len(unbound)
    out["y0_error"] = max_abs(value, truth[pad])
    if ours_ok:
        out["difference"] = max_abs(value, result.evaluate(table, g.observed)[pad])
    return out


def summarise(rows: list[dict[str, Any]], peer: bool, brief: bool = False) -> dict[str, Any]:
    """Counts, errors and times over `rows`; `brief`: only the main ones (one graph)."""
    ours_id = [r for r in rows if r["ours_identified"]]
    ours_errors = [r["ours_error"] for r in ours_id]
    s: dict[str, Any] = {
        "queries": len(rows),
        "ours_identified": len(ours_id),
        "ours_not_identified": len(rows) - len(ours_id),
        "ours_max_error": max(ours_errors, default=0.0),
        "ours_exact": sum(e < TOL for e in ours_errors),
        "ours_total_s": sum(r["ours_s"] for r in rows),
        "ours_median_s": statistics.median(r["ours_s"] for r in rows) if rows else None,
    }
    if not peer:
        return s
    if brief:
        answered = [r for r in rows if r["y0_identified"] is not None]
        errors = [r["y0_error"] for r in answered if r["y0_error"] is not None]
        return {
            "queries": s["queries"], "ours_identified": s["ours_identified"],
            "ours_max_error": s["ours_max_error"], "ours_total_s": s["ours_total_s"],
            "y0_answered": len(answered),
            "y0_identified": sum(bool(r["y0_identified"]) for r in answered),
            "y0_max_error": max(errors, default=0.0),
            "y0_total_s": sum(r["y0_s"] for r in answered),
        }  # fmt: skip
    answered = [r for r in rows if r["y0_identified"] is not None]  # y0 did not raise
    both = [r for r in ours_id if r["y0_identified"]]
    evaluated = [r for r in both if r["y0_error"] is not None]
    y0_total = sum(r["y0_s"] for r in answered)
    ours_answered = sum(r["ours_s"] for r in answered)
    s.update({
        "y0_raised": len(rows) - len(answered),
        "y0_answered": len(answered),
        "y0_identified": sum(bool(r["y0_identified"]) for r in answered),
        "same_decision": sum(r["ours_identified"] == r["y0_identified"] for r in answered),
        "only_ours": sum(r["ours_identified"] and not r["y0_identified"] for r in answered),
        "only_y0": sum(r["y0_identified"] and not r["ours_identified"] for r in answered),
        "both_identified": len(both),
        "y0_evaluated": len(evaluated),
        "y0_exact": sum(r["y0_error"] < TOL for r in evaluated),
        "y0_wrong": sum(r["y0_error"] >= TOL for r in evaluated),
        "y0_unbound": sum(r["y0_note"].startswith("unbound") for r in evaluated),
        "y0_unbound_wrong": sum(
            r["y0_note"].startswith("unbound") and r["y0_error"] >= TOL for r in evaluated
        ),
        "y0_max_error": max((r["y0_error"] for r in evaluated), default=0.0),
        "numerically_equal": sum(r["difference"] < TOL for r in evaluated),
        "ours_total_s_where_y0_answered": ours_answered,
        "y0_total_s": y0_total,
        "y0_median_s": statistics.median(r["y0_s"] for r in answered) if answered else None,
        "speedup_total": y0_total / ours_answered if ours_answered else None,
    })  # fmt: skip
    return s


def print_table(named: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    header = ("query", "ours", "ours s", "ours err", "y0", "y0 s", "y0 err", "y0 estimand")
    lines = []
    for r in named:
        y0_id = r["y0_identified"]
        lines.append((
            r["name"], r["ours_strategy"], fmt(r["ours_s"], ".2e"), fmt(r["ours_error"], ".1e"),
            "-" if y0_id is None else ("identified" if y0_id else "none"), fmt(r["y0_s"], ".2e"),
            fmt(r["y0_error"], ".1e"), r.get("y0_estimand", r["y0_note"]),
        ))  # fmt: skip
    print_columns(header, lines)
    print()
    for k, v in summary.items():
        print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")


def goals(summary: dict[str, Any], peer_reason: str) -> list[dict[str, Any]]:
    out = [{
        "goal": "every estimand identify returns equals the exact interventional distribution "
                f"(to {TOL:g}; random binary SCMs, exact enumeration)",
        "value": f"{summary['ours_exact']} of {summary['ours_identified']} estimands exact, "
                 f"max error {summary['ours_max_error']:.1e}",
        "met": summary["ours_exact"] == summary["ours_identified"],
    }]  # fmt: skip
    if peer_reason:
        out.append({
            "goal": "speed against y0 reported, time and agreement",
            "value": f"y0 skipped: {peer_reason}", "met": False,
        })  # fmt: skip
        return out
    speedup = summary["speedup_total"]
    out.append({
        "goal": "speed against y0 reported, time and agreement",
        "value": f"{speedup:.1f}x y0's speed (total time over the {summary['y0_answered']} "
                 f"queries y0 answers; it raises on {summary['y0_raised']}); same decision on "
                 f"{summary['same_decision']}/{summary['y0_answered']}; y0's "
                 f"estimand exact on {summary['y0_exact']}/{summary['y0_evaluated']} evaluated "
                 f"(max error {summary['y0_max_error']:.2g})",
        "met": True,
    })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graphs", type=int, default=200, help="random graphs")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per query (best)")
    parser.add_argument("--skip-peers", action="store_true", help="causalvision only")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    if args.graphs < 0 or args.repeats < 1:
        raise Failure("--graphs must be >= 0 and --repeats >= 1")

    info = host_info(("causalvision", "networkx", "numpy", "y0"))
    print(f"machine: {info['processor']}, {info['cpu_count']} CPUs ({info['cpu_affinity']})")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()), flush=True)
    peer, reason = (None, "skipped (--skip-peers)") if args.skip_peers else load_y0()
    if reason:
        print(f"y0: {reason}")

    rng = np.random.default_rng(args.seed)
    cases = [(name, g, [q]) for name, g, q in named_cases()]
    for k in range(args.graphs):
        g = RandomBinarySCM.random_graph(rng)
        cases.append((f"random {k}", g, random_queries(g, rng)))
    named_rows, random_rows, graph_rows = [], [], []
    for name, g, queries in cases:
        model = RandomBinarySCM(g, rng)
        table = model.observational()
        peer_graph = peer.graph(g) if peer else None
        rows = [run_query(g, q, model, table, peer, peer_graph, args.repeats) for q in queries]
        if not name.startswith("random"):
            named_rows += [{"name": name, **r} for r in rows]
            continue
        random_rows += [{"graph": name, **r} for r in rows]
        proj = g.latent_projection()
        graph_rows.append({
            "graph": name, "observed": list(g.observed), "directed": sorted(proj.directed),
            "bidirected": sorted(proj.bidirected),
            **summarise(rows, peer is not None, brief=True),
        })  # fmt: skip
    # Every query of the named graphs; of the random ones, those where y0 raised, left a
    # variable unbound, or answered wrongly (the rest are counted in `graphs` and `summary`).
    notable = [r for r in random_rows if r["y0_note"] or (r["y0_error"] or 0.0) >= TOL]

    summary = {
        "named": summarise(named_rows, peer is not None),
        "random": summarise(random_rows, peer is not None),
        "all": summarise(named_rows + random_rows, peer is not None),
    }
    print()
    print_table(named_rows, summary["all"])
    print()
    print("err: max |estimand - exact interventional distribution| over all (x, z, y); times")
    print("are the best of --repeats calls; 'all' adds the named queries to the random ones.")
    checks = goals(summary["all"], reason)
    for check in checks:
        print(f"{'MET    ' if check['met'] else 'NOT MET'}  {check['goal']}: {check['value']}")
    write_results(
        args, args.output, machine=info, peer=reason or "y0", summary=summary,
        named=named_rows, graphs=graph_rows, notable=notable, goals=checks,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    run_main(main, "identification")
