"""Benchmarks stay runnable: a tiny run of each, checking the answers they time are right."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def test_scm_queries_benchmark_runs_and_its_exact_answers_are_exact(tmp_path, uncached_env):
    output = tmp_path / "scm_queries.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "scm_queries.py"), "--n", "1000",
               "--inference-n", "50", "--svi-steps", "20", "--repeats", "2", "--skip-peers",
               "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=uncached_env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {(r["query"], r["library"]): r for r in json.loads(output.read_text())["rows"]}
    for query in ("exact cf, 3-node", "exact cf, 20-node"):
        ours = rows[(query, "causalvision")]
        assert ours["error"] < 1e-4, (query, ours["error"])
        assert ours["units_per_s"] > 0
    assert rows[("inference twin-world, 3-node", "causalvision (warm)")]["time_s"] > 0


def test_graph_scaling_benchmark_runs_and_its_answers_are_checked(tmp_path, uncached_env):
    output = tmp_path / "graph_scaling.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "graph_scaling.py"), "--sizes", "30",
               "60", "--repeats", "1", "--budget", "0.1", "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=uncached_env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(output.read_text())["rows"]
    assert [r["nodes"] for r in rows] == [30, 60]
    for r in rows:
        assert all(r["checks"].values()), r["checks"]
        assert r["smallest_size"] > 0 and r["identify_s"] > 0
