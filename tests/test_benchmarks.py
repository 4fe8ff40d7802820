"""Benchmarks stay runnable: a tiny run of each, checking the answers they time are right."""

import json
import math
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def test_scm_queries_benchmark_runs_and_its_exact_answers_are_exact(tmp_path, uncached_env):
    output = tmp_path / "scm_queries.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "scm_queries.py"), "--n", "1000",
               "--inference-n", "50", "--svi-steps", "20", "--repeats", "2", "--skip-peers",
               "--partial-n", "50", "--partial-samples", "100", "--partial-methods", "svi",
               "--partial-variants", "u", "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=uncached_env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {(r["query"], r["library"]): r for r in json.loads(output.read_text())["rows"]}
    for query in ("exact cf, 3-node", "exact cf, 20-node"):
        ours = rows[(query, "causalvision")]
        assert ours["error"] < 1e-4, (query, ours["error"])
        assert ours["units_per_s"] > 0
    assert rows[("inference twin-world, 3-node", "causalvision (warm)")]["time_s"] > 0
    # Hidden confounder: with Y observed, Y_cf = Y + B (x' - X) in every posterior draw.
    hidden = rows[("partial cf, U hidden, SVI", "causalvision (warm)")]
    assert hidden["time_s"] > 0 and hidden["y_cf_max_error"] < 1e-4, hidden
    assert math.isfinite(rows[("partial cf, U hidden, SVI", "causalvision (cold)")]["error"])
    assert rows[("partial cf, U hidden, SVI", "ChiRho (warm)")]["note"] == "skipped (--skip-peers)"


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


def test_gpu_check_smoke_run_goes_through_every_stage(tmp_path, uncached_env):
    output = tmp_path / "gpu_check.json"
    env = {**uncached_env, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--output",
               str(output), "--workdir", str(tmp_path / "runs")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())

    rows = {(r["dtype"], r["batch"]): r for r in result["train_step"]}
    assert set(rows) == {("float32", 8), ("bfloat16", 8)}
    for r in rows.values():
        assert r["samples_per_s"] > 0 and r["compile_s"] > 0 and math.isfinite(r["loss"]), r
        assert r["flops_per_step"] > 0 and r["flop_rate"] > 0, r
    # Every convolution and matmul of the step, backward ones included, in the row's dtype.
    (products,) = rows[("float32", 8)]["matmul_operand_types"].values()
    assert rows[("float32", 8)]["matmul_operand_types"] == {"f32/f32": products}
    assert rows[("bfloat16", 8)]["matmul_operand_types"] == {"bf16/bf16": products}
    cf = result["counterfactual"]
    assert cf["batch"] == 16 and cf["images_per_s"] > 0 and cf["flops_per_call"] > 0, cf
    assert cf["finite"]

    # Trained until the time box sent SIGTERM, saved, then scored.
    deep_scm = result["training"]["deep_scm"]
    assert deep_scm["sigterm_at_s"] is not None and deep_scm["steps"] >= 1, deep_scm
    assert result["training"]["oracle"]["steps"] == 4
    quality = result["quality"]
    for key in ("composition_l1_1", "composition_l1_10",
                "effectiveness/do(digit)/predicted/digit_acc"):  # fmt: skip
        assert math.isfinite(quality[key]), (key, quality[key])
    # Measured on a few steps' blurs: numbers, or null (NaN) where no stroke is found.
    for key in ("effectiveness/do(thickness)/measured/thickness_mae",
                "effectiveness/do(intensity)/measured/intensity_mae"):  # fmt: skip
        assert key in quality and (quality[key] is None or quality[key] >= 0), (key, quality)
    interventions = ("digit", "thickness", "intensity", "random")
    assert set(quality["gt_error_l1"]) == {f"do({name})" for name in interventions}
    assert all(math.isfinite(v) for v in quality["gt_error_l1"].values())

    assert len(result["goals"]) == 6
    assert all(g["met"] is None and "not a measurement" in g["value"] for g in result["goals"])
    assert result["machine"]["device_kind"] == "cpu" and result["machine"]["cpu_count"] >= 1


def test_gpu_check_refuses_a_machine_without_gpu_in_one_line(tmp_path, uncached_env):
    output = tmp_path / "gpu_check.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--output", str(output)]
    env = {**uncached_env, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("gpu_check: no GPU") and len(done.stderr.splitlines()) == 1
    assert not output.exists()


def test_slot_attention_throughput_benchmark_runs_jax_only(tmp_path, uncached_env):
    output = tmp_path / "slot_attention_throughput.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "slot_attention_throughput.py"),
               "--resolution", "8", "--batch", "2", "--widths", "8", "--rounds", "1",
               "--steps", "1", "--warmup", "0", "--jax-only", "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=uncached_env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    ours, peer = result["rows"]
    assert ours["rate"] > 0 and ours["compile_s"] > 0 and math.isfinite(ours["loss"]), ours
    assert "rate" not in peer and "--jax-only" in peer["note"]
    (goal,) = result["goals"]
    assert goal["met"] is None and "not measured" in goal["value"]


def test_oc_crl_benchmark_trains_both_models_and_scores_the_goal_from_its_rows(
    tmp_path, uncached_env
):
    output = tmp_path / "oc_crl.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "oc_crl_data_efficiency.py"),
               "--pairs", "32", "--steps", "2", "--seeds", "0", "--test-size", "32",
               "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=uncached_env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"slot", "flat"}
    for row in rows.values():
        assert math.isfinite(row["r2"]) and row["r2"] <= 1.0, row
        assert len(row["probe_matched_r2"]) == 2 and row["train_seconds"] > 0
    (goal,) = result["goals"]
    margin = rows["slot"]["r2"] - rows["flat"]["r2"]
    assert goal["value"]["margins"] == [round(margin, 4)]
    assert goal["met"] == (margin > 0)
    assert output.with_suffix(".png").stat().st_size > 0


def test_diffusion_sampling_benchmark_runs_jax_only_and_scores_goals_from_its_rows(
    tmp_path, uncached_env
):
    output = tmp_path / "diffusion_sampling.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "diffusion_sampling.py"),
               "--resolution", "8", "--base-width", "4", "--num-groups", "2", "--attention", "4",
               "--cond-size", "3", "--batch", "2", "--steps", "3", "--rounds", "1", "--jax-only",
               "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=uncached_env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    fused, unfused, peer = result["rows"]
    for row in (fused, unfused):
        assert row["rate"] > 0 and row["sample_s"] > 0 and row["first_call_s"] > 0, row
    assert fused["compile_s"] > 0
    assert "rate" not in peer and "--jax-only" in peer["note"]
    checks = result["checks"]
    assert checks["fused_vs_unfused_max_abs_diff"] < 1e-4 and checks["fused_vs_unfused_agree"]
    assert math.isfinite(checks["sample_abs_max"]) and checks["sample_abs_max"] > 0
    ours, torch_goal = result["goals"]
    ratio = fused["rate"] / unfused["rate"]
    assert ours["value"].startswith(f"{ratio:.2f}x") and ours["met"] == (ratio >= 2.0)
    assert "3 steps, batch 2" in ours["goal"]
    assert torch_goal["met"] is None and "not measured" in torch_goal["value"]


def test_mechanism_comparison_benchmark_trains_the_three_mechanisms_and_scores_its_goals(
    tmp_path, uncached_env
):
    output = tmp_path / "mechanism_comparison.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "mechanism_comparison.py"), "--size",
               "tiny", "--datasets", "pendulum", "--steps", "2", "--batch", "8", "--num", "4",
               "--cf-batch", "2", "--cf-steps", "1", "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=uncached_env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    (pendulum,) = result["datasets"].values()
    rows = pendulum["mechanisms"]
    assert list(rows) == ["vae", "hvae", "diffusion"]
    interventions = ["angle", "light", "shadow_length", "shadow_position", "random"]
    assert pendulum["interventions"] == interventions
    assert list(pendulum["unchanged"]["gt_l1"]) == interventions  # the reference row
    for row in rows.values():
        assert list(row["gt_l1"]) == interventions
        assert all(math.isfinite(v) and v >= 0 for v in row["gt_l1"].values()), row["gt_l1"]
        assert math.isfinite(row["mean_gt_l1"]) and math.isfinite(row["composition_l1"])
        # The pendulum has no exact measurement: effectiveness is the pseudo-oracle's.
        scores = row["effectiveness"]["angle"]
        assert set(scores) == {f"predicted/{a}_mae" for a in interventions[:4]}, scores
        assert row["params"]["deep_scm"] > row["params"]["image_model"] > 0
        assert row["samples_per_s"] > 0 and row["train_seconds"] > 0
        assert row["cf"]["images_per_s"] > 0 and row["cf"]["finite"]
    assert rows["diffusion"]["metrics"]["num_steps"] == 1  # --cf-steps in the evaluation too
    l1_goal, rate_goal = result["goals"]
    assert all(set(g) == {"goal", "value", "met"} for g in result["goals"])
    means = {m: row["mean_gt_l1"] for m, row in rows.items()}
    assert l1_goal["value"]["mean_l1"] == {m: round(v, 3) for m, v in means.items()}
    unchanged = pendulum["unchanged"]["mean_gt_l1"]
    best = means["diffusion"] < min(means["vae"], means["hvae"], unchanged)
    assert l1_goal["met"] == best
    assert rate_goal["met"] is False and rate_goal["value"]["ddim_steps"] == 1  # not 50
    assert output.with_suffix(".png").stat().st_size > 0


def test_cf_captioning_benchmark_trains_baseline_te_nde_and_scores_goals_from_its_numbers(
    tmp_path, uncached_env
):
    output = tmp_path / "cf_captioning.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "cf_captioning.py"), "--size", "tiny",
               "--seeds", "0", "--steps", "4", "--ft-steps", "2", "--num", "8",
               "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=uncached_env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    models = ["baseline", "+TE", "+NDE"]
    (seed,) = result["seeds"].values()
    assert list(seed) == models and list(result["summary"]) == models
    assert result["fine_tuning"]["steps"] == 2
    for model, row in seed.items():
        assert row["train"]["steps"] == (4 if model == "baseline" else 2)
        assert row["train"]["samples_per_s"] > 0 and row["decode"]["images_per_s"] > 0
        assert row["decode"]["batch"] == 64
        for kind in ("factual", "masked", "removed"):
            assert 0 <= row[kind]["chair_i"] <= 1 and 0 <= row[kind]["chair_s"] <= 1
            assert row[kind]["captions"] == 8
            assert len(row["examples"][kind]) == 4
        for name in ("cider_d", "bleu4", "recall", "precision"):
            assert math.isfinite(row["factual"][name]) and row["factual"][name] >= 0
        # One seed: the summary's mean is that seed's number, its std 0.
        summary = result["summary"][model]["masked/chair_i"]
        assert summary == {"mean": row["masked"]["chair_i"], "std": 0.0}
    assert all(set(g) == {"goal", "value", "met"} for g in result["goals"])
    chair_goal, quality_goal, rate_goal = result["goals"]
    base = seed["baseline"]
    met = True
    for model in ("+TE", "+NDE"):
        for kind in ("masked", "removed"):
            stored = chair_goal["value"][model][kind]
            assert stored["baseline"] == base[kind]["chair_i"]
            assert stored["model"] == seed[model][kind]["chair_i"]
            ok = stored["baseline"] > 0 and stored["model"] <= 0.5 * stored["baseline"]
            met = met and ok
    assert chair_goal["met"] == met
    met = True
    for model in ("+TE", "+NDE"):
        for name, key in (("cider_d_points", "cider_d"), ("recall_points", "recall")):
            stored = quality_goal["value"][model][name]
            assert math.isclose(stored["baseline"], 100 * base["factual"][key])
            assert math.isclose(stored["model"], 100 * seed[model]["factual"][key])
            met = met and stored["model"] >= stored["baseline"] - 1
    assert quality_goal["met"] == met
    assert rate_goal["met"] is True and rate_goal["value"]["batch"] == 64
    assert output.with_suffix(".png").stat().st_size > 0


def test_cf_captioning_benchmark_refuses_bad_input_in_one_line(uncached_env):
    command = [sys.executable, str(ROOT / "benchmarks" / "cf_captioning.py"), "--seeds", "0,x"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=uncached_env)
    assert done.returncode == 2
    expected = "cf_captioning: error: --seeds: expected comma-separated integers, got '0,x'"
    assert done.stderr.strip() == expected


def test_image_alone_benchmark_refuses_a_missing_run_in_one_line(tmp_path, uncached_env):
    # A real run needs a trained deep SCM and predictor (`make demo`); the unit tests of
    # tests/test_amortised_counterfactuals.py cover the query it times.
    script = str(ROOT / "benchmarks" / "image_alone_counterfactuals.py")
    command = [sys.executable, script, "--scm", str(tmp_path), "--predictor", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=uncached_env)
    assert done.returncode == 2
    expected = (
        f"image_alone_counterfactuals: error: --scm: {tmp_path} holds no run (no config.json); "
        f"run `make demo`"
    )
    assert done.stderr.strip() == expected
