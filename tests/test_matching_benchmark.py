"""The deconfounded-matching benchmark stays runnable, and its numbers are consistent."""

import json
import math
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "deconfounded_matching.py"


def test_matching_benchmark_scores_both_heads_on_both_splits(tmp_path, uncached_env):
    output = tmp_path / "matching.json"
    command = [sys.executable, str(SCRIPT), "--size", "tiny", "--steps", "2", "--seeds", "0,1",
               "--train-size", "48", "--num", "24", "--head-steps", "3", "--batch", "16",
               "--prototypes", "4", "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=uncached_env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    seeds = result["seeds"]
    assert list(seeds) == ["0", "1"]
    for record in seeds.values():
        # The held-out scenes keep the confounder (every triangle comes with a star); the
        # broken ones are the same scenes with shape_1 redrawn, so some triangles lose it.
        assert record["scenes"]["held_out"]["star_given_triangle"] == 1.0
        assert record["scenes"]["confounder_broken"]["star_given_triangle"] < 1.0
        for head in ("plain", "deconfounded"):
            assert math.isfinite(record[head]["train"]["last_loss"])
            for split in ("held_out", "confounder_broken"):
                r = record[head][split]
                for side in ("i2t", "t2i"):
                    assert 0 <= r[f"{side}_r1"] <= r[f"{side}_r5"] <= r[f"{side}_r10"] <= 1
    # The summary is the mean and standard deviation over the two seeds.
    cell = result["summary"]["deconfounded"]["held_out/i2t_r5"]
    values = [s["deconfounded"]["held_out"]["i2t_r5"] for s in seeds.values()]
    assert math.isclose(cell["mean"], sum(values) / 2)
    assert math.isclose(cell["std"], abs(values[0] - values[1]) / math.sqrt(2))
    (goal,) = result["goals"]
    assert set(goal) == {"goal", "value", "met"} and goal["met"] is True
    assert goal["value"]["plain/held_out/t2i_r1"] == round(
        result["summary"]["plain"]["held_out/t2i_r1"]["mean"], 4
    )
    assert output.with_suffix(".png").stat().st_size > 0


def test_matching_benchmark_refuses_bad_input_in_one_line(tmp_path, uncached_env):
    for arguments, expected in (
        (["--captioner", str(tmp_path)], f"--captioner: {tmp_path} holds no run (no config.json)"),
        (["--num", "5"], "--num: expected >= 10 (the largest K), got 5"),
        (["--lr", "0"], "--lr: expected > 0, got 0.0"),
    ):
        command = [sys.executable, str(SCRIPT), *arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=uncached_env)
        assert done.returncode == 2
        assert done.stderr.strip() == f"deconfounded_matching: error: {expected}"
