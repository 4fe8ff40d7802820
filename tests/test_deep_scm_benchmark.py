"""The deep-SCM throughput benchmark stays runnable: a tiny run, checking what it measured."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def test_deep_scm_throughput_benchmark_runs_and_reports_positive_rates(tmp_path, uncached_env):
    output = tmp_path / "deep_scm_throughput.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "deep_scm_throughput.py"), "--quick",
               "--output", str(output)]  # fmt: skip
    done = subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=600, env=uncached_env
    )
    assert "causal-gen: skipped: pass --causal-gen PATH" in done.stdout
    result = json.loads(output.read_text())
    rows = {(r["what"], r["library"]): r for r in result["rows"]}
    assert set(rows) == {
        ("train step", "causalvision"),
        ("counterfactual", "causalvision"),
        ("train step", "causal-gen (PyTorch)"),
    }
    for what in ("train step", "counterfactual"):
        ours = rows[(what, "causalvision")]
        assert ours["batch"] == 4 and ours["rate"] > 0 and ours["compile_s"] > 0, ours
        assert ours["flops_per_step"] > 0 and 0 < ours["peak_fraction"] < 1, ours
    assert rows[("train step", "causalvision")]["restart_compile_s"] > 0
    assert rows[("train step", "causal-gen (PyTorch)")]["note"].startswith("skipped")
    assert result["matmul_peak"]["flop_rate"] > 0
    assert result["model"]["params"] == 11_160  # HVAEConfig.tiny, the --quick HVAE
