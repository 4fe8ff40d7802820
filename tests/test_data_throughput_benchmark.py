"""The data throughput benchmark stays runnable: a tiny run, checking it measured every stage."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def test_data_throughput_benchmark_runs_and_reports_positive_rates(tmp_path, uncached_env):
    output = tmp_path / "data_throughput.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "data_throughput.py"), "--quick",
               "--output", str(output)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=300, env=uncached_env)
    result = json.loads(output.read_text())
    rows = {(r["stage"], r["what"]): r for r in result["rows"]}
    expected = {
        ("render", "morpho_digits 32x32x1"), ("render", "pendulum 64x64x3"),
        ("render", "pendulum 96x96x3"), ("pipeline", "in-memory uint8 ArraySource"),
        ("pipeline", "GeneratedSource, in order"),
        ("pipeline", "GeneratedSource, shuffled, 8-chunk cache"),
        ("pipeline", "GeneratedSource, shuffled (default cache)"),
        ("pipeline", "TFDS array_record (load_source)"), ("train", "train step alone"),
        ("train", "train fed by in-memory pipeline"),
        ("train", "train fed by GeneratedSource, in order"),
    }  # fmt: skip
    assert set(rows) == expected
    for r in rows.values():
        assert r["images"] > 0 and r["time_s"] > 0 and r["images_per_s"] > 0, r
    # Batches of 16 (--quick): two per pipeline round, one for the 8-chunk-cache shuffled row.
    assert rows[("pipeline", "in-memory uint8 ArraySource")]["images"] == 32
    assert rows[("pipeline", "GeneratedSource, shuffled, 8-chunk cache")]["images"] == 16
    ratios = {c["pipeline"]: c["ratio"] for c in result["pipeline_over_train_step"]}
    assert set(ratios) == {what for stage, what in expected if stage == "pipeline"}
    assert all(ratio > 0 for ratio in ratios.values())
