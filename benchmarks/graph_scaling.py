"""Identification on large random DAGs: the smallest back-door set, and the first listed one.

For each size, a seeded random DAG with `--edges-per-node` times as many edges as nodes (edges
drawn uniformly among the pairs of a random topological order) and a treatment/outcome pair
that needs a non-empty adjustment set: the outcome with the most ancestors and, of its
parents, the one with the most ancestors (the next pair if that one needs no adjustment).
Timed, as the median of `--repeats` calls after a first one:

* `identify`: a smallest back-door set, by one maximum flow (`CausalGraph.smallest_backdoor_set`);
* the first item of `backdoor_sets` (minimal sets, ListMinSep) and of
  `backdoor_sets(minimal=False)` (all sets, ListSep): the listings are lazy;
* the way `identify` used to work, listing every minimal set to keep the smallest: run for
  `--budget` seconds, with the number of sets listed by then (issue 12: it did not return in
  10 minutes on a 200-node, 1,000-edge DAG).

Each answer is checked: the smallest set is a back-door set, no larger than any listed one.

    .venv/bin/python benchmarks/graph_scaling.py
    .venv/bin/python benchmarks/graph_scaling.py --sizes 50 100 --repeats 2 --budget 0.5 \\
        --output /tmp/graph_scaling.json

Writes a table and `benchmarks/results/graph_scaling.json` (every timed call's duration).
Pure Python on networkx; no JAX. No peer: pgmpy is not installed in either venv.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import fmt, host_info, print_columns, write_results

from causalvision.graph import CausalGraph

RESULTS = Path(__file__).resolve().parent / "results" / "graph_scaling.json"
GOAL_NODES, GOAL_EDGES, GOAL_SECONDS = 200, 1000, 1.0


def random_dag(num_nodes: int, num_edges: int, seed: int) -> CausalGraph:
    """``num_edges`` distinct edges drawn uniformly, oriented along a random node order."""
    rng = random.Random(seed)
    names = [f"V{i:03d}" for i in range(num_nodes)]
    rng.shuffle(names)
    pairs = rng.sample(list(itertools.combinations(range(num_nodes), 2)), num_edges)
    return CausalGraph([(names[i], names[j]) for i, j in pairs], nodes=names)


def hard_query(g: CausalGraph) -> tuple[str, str]:
    """The deepest outcome and treatment (most ancestors) whose effect needs adjustment."""
    depth = {v: len(g.ancestors(v)) for v in g.nodes}
    deepest = sorted(g.nodes, key=lambda v: (-depth[v], v))
    for y in deepest:
        for x in sorted(g.parents(y), key=lambda v: (-depth[v], v)):
            if g.smallest_backdoor_set(x, y):
                return x, y
    raise SystemExit("no treatment/outcome pair of this graph needs adjustment")


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """The median seconds of ``repeats`` calls after a first one (left out of the median: it
    warms caches), every call's seconds, and the answer."""
    times, out = [], None
    for _ in range(repeats + 1):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), times, out


def list_for(sets: Iterator[frozenset[str]], budget: float) -> dict[str, Any]:
    """Pull sets for up to ``budget`` seconds: how many came, the smallest size among them,
    and whether that was all of them."""
    start, listed, size = time.perf_counter(), 0, None
    for s in sets:
        listed += 1
        size = len(s) if size is None else min(size, len(s))
        if time.perf_counter() - start > budget:
            return {"listed": listed, "exhausted": False, "smallest_size": size}
    elapsed = time.perf_counter() - start
    return {"listed": listed, "exhausted": True, "time_s": elapsed, "smallest_size": size}


def bench(num_nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    num_edges = args.edges_per_node * num_nodes
    g = random_dag(num_nodes, num_edges, args.seed)
    x, y = hard_query(g)
    identify_s, identify_times, result = timed(lambda: g.identify(x, y), args.repeats)
    smallest = result.adjustment_set
    first_s, first_times, first = timed(lambda: next(g.backdoor_sets(x, y)), args.repeats)
    any_s, any_times, anyset = timed(
        lambda: next(g.backdoor_sets(x, y, minimal=False)), args.repeats
    )
    listing = list_for(g.backdoor_sets(x, y), args.budget)
    checks = {
        "smallest_is_backdoor_set": result.strategy == "backdoor"
        and g.is_backdoor_set(x, y, smallest),
        "first_is_backdoor_set": g.is_backdoor_set(x, y, first),
        "first_any_is_backdoor_set": g.is_backdoor_set(x, y, anyset),
        # Every listed minimal set is at least as large; if all were listed, one is as small.
        "smallest_is_smallest_listed": len(smallest) <= listing["smallest_size"]
        if not listing["exhausted"]
        else len(smallest) == listing["smallest_size"],
    }
    return {
        "nodes": num_nodes, "edges": num_edges, "treatment": x, "outcome": y,
        "ancestral_nodes": len(g.ancestors([x, y]) | {x, y}),
        "smallest_set": sorted(smallest), "smallest_size": len(smallest),
        "identify_s": identify_s, "identify_times_s": identify_times,
        "first_minimal_s": first_s, "first_minimal_size": len(first),
        "first_minimal_times_s": first_times,
        "first_any_s": any_s, "first_any_size": len(anyset), "first_any_times_s": any_times,
        "list_all_minimal": {"budget_s": args.budget, **listing},
        "checks": checks,
    }  # fmt: skip


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("nodes", "edges", "|An|", "|Z|", "identify s", "first minimal s", "first any s",
              "old: minimal sets listed")  # fmt: skip
    lines = []
    for r in rows:
        listing = r["list_all_minimal"]
        if listing["exhausted"]:
            old = f"all {listing['listed']} in {listing['time_s']:.3f} s"
        else:
            old = f"{listing['listed']} in {listing['budget_s']:g} s, not done"
        lines.append((
            str(r["nodes"]), str(r["edges"]), str(r["ancestral_nodes"]), str(r["smallest_size"]),
            fmt(r["identify_s"], ".4f"), fmt(r["first_minimal_s"], ".4f"),
            fmt(r["first_any_s"], ".4f"), old,
        ))  # fmt: skip
    print_columns(header, lines)


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if (r["nodes"], r["edges"]) != (GOAL_NODES, GOAL_EDGES):
            continue
        where = f"a {GOAL_NODES}-node, {GOAL_EDGES:,}-edge DAG"
        valid = all(r["checks"].values())
        out.append({
            "goal": f"smallest adjustment set on {where} in under {GOAL_SECONDS:g} s",
            "value": f"{r['identify_s']:.4f} s (identify, |Z| = {r['smallest_size']}, "
                     f"answers checked: {valid})",
            "met": r["identify_s"] < GOAL_SECONDS and valid,
        })  # fmt: skip
        out.append({
            "goal": f"first back-door set listed on {where} in under {GOAL_SECONDS:g} s",
            "value": f"{r['first_minimal_s']:.4f} s (minimal), {r['first_any_s']:.4f} s (any)",
            "met": max(r["first_minimal_s"], r["first_any_s"]) < GOAL_SECONDS,
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--edges-per-node", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the first")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds for the old listing")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    if min(args.sizes) < 3 or args.repeats < 1 or args.budget <= 0:
        parser.error("--sizes must be >= 3, --repeats >= 1, --budget > 0")
    if any(args.edges_per_node * n > n * (n - 1) // 2 for n in args.sizes):
        parser.error("--edges-per-node too large for the smallest size: a DAG has n(n-1)/2 edges")

    info = host_info(("causalvision", "networkx"))
    print(f"machine: {info['processor']}, {info['cpu_count']} CPUs ({info['cpu_affinity']})")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()), flush=True)
    rows = []
    for n in args.sizes:
        rows.append(bench(n, args))
        print(f"{n} nodes: P({rows[-1]['outcome']} | do({rows[-1]['treatment']})) done", flush=True)

    print()
    print_table(rows)
    print()
    print("|An|: nodes in An(treatment, outcome); |Z|: size of the smallest set; times are")
    print("medians; 'old': listing every minimal set, as identify used to, for --budget seconds.")
    failed = [(r["nodes"], k) for r in rows for k, ok in r["checks"].items() if not ok]
    for nodes, check in failed:
        print(f"CHECK FAILED  {nodes} nodes: {check}")
    checks = goals(rows)
    for check in checks:
        print(f"{'MET    ' if check['met'] else 'NOT MET'}  {check['goal']}: {check['value']}")
    write_results(args, args.output, machine=info, rows=rows, goals=checks)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
