"""One-GPU check of the Morpho deep SCM: speed, FLOP/s, and quality after minutes of training.

The model is the full HVAE deep SCM of `experiments/morpho_hvae.py` (default preset: causal-gen's
Morpho HVAE, ~1.8M parameters, with the attribute flows). One command, in order:

1. train step: samples/s and compile time at `--batch-sizes` (32, 128, 512), in float32 and in
   bfloat16. The step is the one `causalvision train` runs (the trainer's own step function:
   loss, gradients, clipping, AdamW, parameter EMA, non-finite check), jitted with its state
   donated; compilation is timed as `.lower()` + `.compile()`, then the median over `--rounds`
   of `--steps` steps after `--warmup` steps, each round ended by `block_until_ready`.
2. counterfactual: images/s of `SCM.counterfactual` under do(thickness) at `--cf-batch` (512),
   jitted: abduct intensity's and the image's noise, predict thickness -> intensity -> image.
3. FLOP/s: XLA's cost analysis of each compiled program (`compiled.cost_analysis()["flops"]`,
   else the unoptimised HLO's count) over its time, against the device's dense peak for the
   row's dtype (`PEAK_FLOPS`, by `device_kind`; none for unknown devices). JAX computes float32
   convolutions and matmuls on TF32 tensor cores on Ampere and newer GPUs by default, so float32
   rows also report the fraction of the TF32 peak.
4. quality: trains the pseudo-oracle (`experiments/morpho_oracle.py`, `--oracle-steps` steps,
   or reuse one with `--oracle DIR`), then the deep SCM (`causalvision train`, default preset,
   periodic evaluation off) for `--minutes` of wall time from launch: once the time is up and
   the run has logged a step, it is sent SIGTERM, finishes its step, saves and exits. Then
   `causalvision evaluate --pixel-noise mean` scores it; the report lists composition after 1
   and 10 null cycles, effectiveness (thickness and intensity MAE, measured; digit accuracy,
   predicted by the oracle) and the L1 to the true counterfactual per intervention, against
   causal-gen's published Morpho figures.

bfloat16: the library has no compute dtype (its HVAE and flows are float32 throughout), and
casting the parameters and the images to bfloat16 is not enough: the parent encoding and the
latent noise stay float32 and meet bfloat16 kernels in convolutions, which `lax` refuses. So
`bf16_matmuls` rewrites the loss's jaxpr: every float32 convolution and matrix product takes
bfloat16 operands and gives bfloat16 (accumulated in float32 on the GPU) back as float32.
Autodiff carries that to the backward pass, whose convolutions also run on bfloat16 operands.
Everything else (activations between products, the loss, parameters, optimiser state) stays
float32. Each row records the operand types of every convolution and dot of the lowered step,
which shows the rewrite took. One difference beyond the dtype: bfloat16 rows differentiate the
HVAE's k x k convolutions by JAX's own rule; float32 rows use the library's `conv_same` rule,
which only picks layouts that XLA:CPU runs faster.

Every program compiles cold: the persistent compilation cache is off, here and in the
`causalvision` subprocesses. Runs go to `--workdir` (default: a new temporary directory, kept).

Run:

    .venv/bin/python benchmarks/gpu_check.py                  # one GPU, < 8 minutes
    .venv/bin/python benchmarks/gpu_check.py --smoke          # any machine, tiny sizes

Without a GPU it stops with one line and exit status 2. `--smoke` runs every stage end to end
at tiny sizes (the `tiny` presets, batch 8, a counterfactual batch of 16, a few steps, training
stopped at its first logged step after one second) and marks the goals as not measured.
Results are printed and written as JSON (default `benchmarks/results/gpu_check.json`,
`gpu_check_smoke.json` for `--smoke`).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import logging.handlers
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from _common import ROOT, fmt, print_columns, version, write_results

START = time.perf_counter()
RESULTS = ROOT / "benchmarks" / "results"
# Relative to ROOT, where the `causalvision` subprocesses run.
HVAE_EXPERIMENT = "experiments/morpho_hvae.py"
ORACLE_EXPERIMENT = "experiments/morpho_oracle.py"

# Dense FLOP/s by dtype, from NVIDIA's datasheets (SXM boards unless named), matched in order
# as substrings of `device_kind`: "NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-80GB".
PEAK_FLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"bfloat16": 756e12, "tensorfloat32": 378e12, "float32": 51e12}),
    ("H100", {"bfloat16": 989e12, "tensorfloat32": 495e12, "float32": 67e12}),
    ("H200", {"bfloat16": 989e12, "tensorfloat32": 495e12, "float32": 67e12}),  # H100's cores
    ("A100", {"bfloat16": 312e12, "tensorfloat32": 156e12, "float32": 19.5e12}),
)
# causal-gen's Morpho-MNIST HVAE (mean images), the quality goal of ten GPU-minutes:
# (metrics.json key, what it is, "<=" or ">=", target).
QUALITY_GOALS = (
    ("composition_l1_1", "composition L1 after 1 null cycle", "<=", 0.44),
    ("composition_l1_10", "composition L1 after 10 null cycles", "<=", 1.55),
    ("effectiveness/do(thickness)/measured/thickness_mae", "thickness MAE, do(thickness)", "<=",
     0.09),
    ("effectiveness/do(intensity)/measured/intensity_mae", "intensity MAE, do(intensity)", "<=",
     3.5),
    ("effectiveness/do(digit)/predicted/digit_acc", "digit accuracy, do(digit)", ">=", 0.97),
)  # fmt: skip
GPU_BUDGET_S = 600.0  # "within 10 GPU-minutes"
TOTAL_GOAL_S = 480.0  # this check, end to end
SMOKE_NOTE = "smoke run: not a measurement"
DTYPES = ("float32", "bfloat16")
BF16_NOTE = (
    "bf16_matmuls: bfloat16 operands for every convolution and matmul, forward and backward; "
    "activations between them, loss, parameters and optimiser state float32"
)


class StageError(RuntimeError):
    """A `causalvision` subprocess failed; the message ends with its last output lines."""


# ----------------------------------------------------------------------------------------------
# bfloat16 convolutions and matmuls, by rewriting a jaxpr.

_MATMULS = frozenset({"dot_general", "conv_general_dilated"})
# Primitives whose body runs once as it is, so inlining it keeps the program's meaning. Inlined
# custom_jvp/vjp calls lose their custom rule; only those holding matmuls are inlined (the
# HVAE's `conv_same`, whose rule only picks faster layouts for XLA:CPU).
_CALLS = frozenset({"pjit", "jit", "closed_call", "core_call", "remat", "checkpoint",
                    "custom_jvp_call", "custom_vjp_call"})  # fmt: skip


def _body(eqn) -> tuple[Any, Sequence[Any]] | None:
    """(jaxpr, consts) of a call-like equation's body, or None."""
    from jax.extend import core

    if eqn.primitive.name not in _CALLS:
        return None
    for name in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        body = eqn.params.get(name)
        if isinstance(body, core.ClosedJaxpr):
            return body.jaxpr, body.consts
        if isinstance(body, core.Jaxpr):
            return body, ()
    return None


def _has_matmul(jaxpr) -> bool:
    from jax.extend import core

    return any(
        eqn.primitive.name in _MATMULS or any(map(_has_matmul, core.jaxprs_in_params(eqn.params)))
        for eqn in jaxpr.eqns
    )


def _eval_bf16(jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    """`jax.core.eval_jaxpr`, with float32 matmuls and convolutions on bfloat16 operands."""
    import jax.numpy as jnp
    from jax import lax
    from jax.extend import core

    env: dict[Any, Any] = {}

    def read(var):
        return var.val if isinstance(var, core.Literal) else env[var]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        body = _body(eqn)
        if eqn.primitive.name in _MATMULS and eqn.outvars[0].aval.dtype == jnp.float32:
            # bfloat16 in and out (the GPU accumulates in float32), float32 to the rest: the
            # program's other types do not change, and autodiff casts the cotangents to
            # bfloat16 too, so the backward convolutions run on bfloat16 as well.
            low = [lax.convert_element_type(x, jnp.bfloat16) for x in inputs]
            params = {**eqn.params, "preferred_element_type": jnp.dtype(jnp.bfloat16)}
            outputs = [lax.convert_element_type(eqn.primitive.bind(*low, **params), jnp.float32)]
        elif body is not None and _has_matmul(body[0]):
            outputs = _eval_bf16(*body, inputs)
        elif any(map(_has_matmul, core.jaxprs_in_params(eqn.params))):
            raise NotImplementedError(f"bf16_matmuls: matmuls inside {eqn.primitive.name}")
        else:
            bound = eqn.primitive.get_bind_params(eqn.params)
            # Older JAX returns (subfuns, params), JAX 0.10 the params alone.
            subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
            with eqn.ctx.manager:
                outputs = eqn.primitive.bind(*subfuns, *inputs, **params)
            if not eqn.primitive.multiple_results:
                outputs = [outputs]
        env.update(zip(eqn.outvars, outputs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def bf16_matmuls(fn: Callable) -> Callable:
    """`fn` with every float32 convolution and matrix product on bfloat16 operands.

    `fn` takes and returns pytrees of arrays; it is traced to a jaxpr at each call (inside
    `jit`: once per compilation) and evaluated with those products rewritten.
    """
    import jax

    def low_precision(*args):
        closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat = _eval_bf16(closed.jaxpr, closed.consts, jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(shape), flat)

    return low_precision


def bf16_loss(loss: Callable) -> Callable:
    """A trainer loss `(model, batch, key) -> (value, metrics)` under `bf16_matmuls`."""
    from flax import nnx

    def low_precision(model, batch, key):
        graphdef, state = nnx.split(model)
        pure = lambda state, batch, key: loss(nnx.merge(graphdef, state), batch, key)
        return bf16_matmuls(pure)(state, batch, key)

    return low_precision


_PRODUCT = re.compile(
    r"stablehlo\.(?:convolution|dot_general)[^\n]*: \(tensor<([^>]*)>, tensor<([^>]*)>\)"
)


def matmul_operand_types(lowered) -> dict[str, int]:
    """How many convolutions and matmuls of a lowered program take each operand type pair."""
    kinds = collections.Counter(
        "/".join(t.split("x")[-1] for t in m.groups()) for m in _PRODUCT.finditer(lowered.as_text())
    )
    return dict(sorted(kinds.items()))


# ----------------------------------------------------------------------------------------------
# Throughput: the train step and the counterfactual.


def flops_of(lowered, compiled) -> tuple[float | None, str | None]:
    """XLA's FLOPs per call of a program and where they come from ("compiled" or "lowered")."""
    for source, stage in (("compiled", compiled), ("lowered", lowered)):
        try:
            analysis = stage.cost_analysis()
        except Exception:  # some backends have no cost model for a stage
            continue
        if isinstance(analysis, list | tuple):  # older JAX: one dict per program
            analysis = analysis[0] if analysis else None
        flops = (analysis or {}).get("flops")
        # After optimisation a GPU program may hide its convolutions in library calls.
        if flops is not None and flops > 0:
            return float(flops), source
    return None, None


def peak_flops(device_kind: str) -> dict[str, float] | None:
    for name, peaks in PEAK_FLOPS:
        if name in device_kind:
            return peaks
    return None


def seconds_per_call(run: Callable[[], Any], rounds: int, calls: int) -> list[float]:
    """Seconds per call of `run` in each of `rounds` rounds of `calls` calls.

    `run` returns what to block on; only a round's last call is waited for, as a training loop
    only waits when it logs.
    """
    import jax

    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            out = run()
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / calls)
    return times


def morpho_batch(size: int, seed: int = 0) -> dict[str, Any]:
    """A Morpho batch as the data pipeline ships it: uint8 images, int digits, float attributes.

    Random values in the attributes' ranges: only shapes and dtypes matter for speed.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (size, 32, 32, 1), dtype=np.uint8),
        "digit": rng.integers(0, 10, size).astype(np.int32),
        "thickness": rng.uniform(1.5, 4.0, size).astype(np.float32),
        "intensity": rng.uniform(80.0, 250.0, size).astype(np.float32),
    }


def timed_compile(fn, *args) -> tuple[Any, Any, float, float]:
    """`(lowered, compiled, lower_s, compile_s)` of a jitted `fn` for `args`."""
    start = time.perf_counter()
    lowered = fn.lower(*args)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    return lowered, compiled, lowered_at - start, time.perf_counter() - lowered_at


def flop_figures(flops: float | None, seconds: float, dtype: str, peaks) -> dict[str, Any]:
    rate = flops / seconds if flops else None
    peak = peaks and peaks[dtype]
    out = {
        "flop_rate": rate,
        "peak_flop_rate": peak,
        "peak_fraction": rate and peak and rate / peak,
    }
    if dtype == "float32":
        tf32 = peaks and peaks["tensorfloat32"]
        out["tf32_peak_fraction"] = rate and tf32 and rate / tf32
    return out


def bench_train_step(config, dtype: str, batch_size: int, args, device, peaks) -> dict[str, Any]:
    """One row: the trainer's step of a fresh deep SCM at `batch_size`, in `dtype`."""
    import jax

    from causalvision.train import Task, build_model, distributed
    from causalvision.train.data import dataset_of, prepare_examples

    # The trainer's own state and step (private names): exactly what `causalvision train` runs.
    from causalvision.train.trainer import _initial_state, _make_train_step

    dataset = dataset_of(config.data)
    loss = lambda model, batch, key: model.loss(batch, key)  # the deep_scm task's loss
    task = Task(
        init_model=build_model(config),
        loss=bf16_loss(loss) if dtype == "bfloat16" else loss,
        train_source=(),
        prepare=lambda batch: prepare_examples(dataset, batch),
    )
    trainer = dataclasses.replace(config.trainer, batch_size=batch_size)
    graphdef, state, _ = _initial_state(task, trainer, distributed.data_mesh([device]))
    step = jax.jit(_make_train_step(graphdef, task, trainer), donate_argnums=0)
    batch = jax.device_put(morpho_batch(batch_size), device)
    lowered, compiled, lower_s, compile_s = timed_compile(step, state, batch)
    flops, flops_source = flops_of(lowered, compiled)
    operand_types = matmul_operand_types(lowered)

    def run():
        nonlocal state
        state, metrics = compiled(state, batch)
        return metrics["loss"]

    if args.warmup:
        seconds_per_call(run, 1, args.warmup)
    times = seconds_per_call(run, args.rounds, args.steps)
    step_s = statistics.median(times)
    return {
        "dtype": dtype, "batch": batch_size, "lower_s": lower_s, "compile_s": compile_s,
        "step_s": step_s, "samples_per_s": batch_size / step_s, "times_s": times,
        "flops_per_step": flops, "flops_source": flops_source,
        **flop_figures(flops, step_s, dtype, peaks), "matmul_operand_types": operand_types,
        "loss": float(run()),  # one more step: a finite loss says the program computes
    }  # fmt: skip


def bench_counterfactual(config, batch_size: int, args, device, peaks) -> dict[str, Any]:
    """The deep SCM's counterfactual under do(thickness) of `batch_size` images (jit)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from causalvision.train import build_model

    graphdef, params = nnx.split(build_model(config)(nnx.Rngs(0)))

    @jax.jit
    def counterfactual(params, factual, thickness):
        scm = nnx.merge(graphdef, params).scm()
        return scm.counterfactual(factual, {"thickness": thickness})["image"]

    batch = morpho_batch(batch_size)
    factual = {**batch, "image": batch["image"].astype(np.float32)}  # the 0-255 scale
    thickness = np.random.default_rng(1).permutation(batch["thickness"])
    factual, thickness = jax.device_put((factual, thickness), device)
    lowered, compiled, lower_s, compile_s = timed_compile(
        counterfactual, params, factual, thickness
    )
    flops, flops_source = flops_of(lowered, compiled)
    run = lambda: compiled(params, factual, thickness)
    finite = bool(jnp.isfinite(run()).all())
    times = seconds_per_call(run, args.rounds, args.steps)
    step_s = statistics.median(times)
    return {
        "do": "thickness", "batch": batch_size, "lower_s": lower_s, "compile_s": compile_s,
        "step_s": step_s, "images_per_s": batch_size / step_s, "times_s": times,
        "flops_per_call": flops, "flops_source": flops_source,
        **flop_figures(flops, step_s, "float32", peaks), "finite": finite,
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Quality: `causalvision train` and `causalvision evaluate` in subprocesses.


def run_cli(
    command: Sequence[str],
    log: Path,
    env: Mapping[str, str],
    limit_s: float,
    poll: Callable[[subprocess.Popen, float], None] | None = None,
) -> float:
    """Runs `causalvision COMMAND` with its output in `log`; returns its wall time in seconds.

    `poll(process, elapsed)` is called every 0.2 s while it runs; past `limit_s` it is killed.
    Raises `StageError` if it fails.
    """
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "causalvision.cli", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=ROOT,
        )
        try:
            while process.poll() is None:
                time.sleep(0.2)
                elapsed = time.perf_counter() - start
                if elapsed > limit_s:
                    raise StageError(f"causalvision {command[0]} ran past {limit_s:.0f} s")
                if poll is not None:
                    poll(process, elapsed)
        except BaseException:
            process.kill()
            process.wait()
            raise
    if process.returncode != 0:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        tail = " | ".join(line for line in lines if line)[-2000:]
        raise StageError(f"causalvision {command[0]} exited with {process.returncode}: {tail}")
    return time.perf_counter() - start


def _logged_a_step(workdir: Path) -> bool:
    metrics = workdir / "metrics.jsonl"
    return metrics.exists() and '"split": "train"' in metrics.read_text()


def run_training(
    experiment: str,
    workdir: Path,
    overrides: Sequence[str],
    env: Mapping[str, str],
    budget_s: float | None = None,
) -> dict[str, Any]:
    """`causalvision train EXPERIMENT` into `workdir`, sent SIGTERM once `budget_s` is up.

    The trainer turns SIGTERM into "finish the step, save, exit" only once its loop runs (before,
    the signal would kill it unsaved), so the signal also waits for the first logged step.
    """
    from causalvision.train import read_metrics

    sigterm_at: list[float] = []

    def stop_when_due(process: subprocess.Popen, elapsed: float) -> None:
        if budget_s is not None and not sigterm_at and elapsed >= budget_s:
            if _logged_a_step(workdir):
                process.send_signal(signal.SIGTERM)
                sigterm_at.append(elapsed)

    command = ["train", experiment, "--workdir", str(workdir)]
    for override in overrides:
        command += ["--set", override]
    log = workdir.with_name(workdir.name + ".log")
    wall_s = run_cli(command, log, env, (budget_s or 0) + 1800, stop_when_due)
    lines = read_metrics(workdir / "metrics.jsonl").get("train", [])
    rates = [line["steps_per_second"] for line in lines[1:] or lines]  # the first has the compile
    return {
        "experiment": experiment,
        "workdir": str(workdir),
        "log": str(log),
        "wall_s": wall_s,
        "sigterm_at_s": sigterm_at[0] if sigterm_at else None,
        "steps": max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()),
        "steps_per_s": statistics.median(rates) if rates else None,
        "last_logged_loss": lines[-1]["loss"] if lines else None,
    }


def check_quality(args, preset: str, workdir: Path, env: Mapping[str, str], record: dict) -> None:
    """Stage 4 into `record`: the oracle, the time-boxed deep SCM, and its evaluation."""
    oracle = args.oracle
    if oracle is None:
        n = args.oracle_steps
        print(f"[oracle] training {n} steps ...")
        oracle = workdir / "oracle"
        overrides = [f"trainer.num_steps={n}", f"trainer.eval_every={n}",
                     f"trainer.checkpoint_every={n}", "trainer.progress=False"]  # fmt: skip
        run = record["oracle"] = run_training(
            f"{ORACLE_EXPERIMENT}:{preset}", oracle, overrides, env
        )
        print(f"[oracle] {run['steps']} steps in {run['wall_s']:.1f} s")

    budget_s = 1.0 if args.smoke else 60.0 * args.minutes
    # Periodic evaluation off (its compile would eat the budget); `evaluate` runs only the
    # evaluators the report reads, and on a real run the grids, to look at.
    evals = {name: {"type": name} for name in ("composition", "effectiveness", "ground_truth")}
    if not args.smoke:
        evals["grids"] = {"type": "grids"}
    overrides = ["trainer.eval_every=None", "trainer.progress=False", f"evals={evals!r}"]
    if args.smoke:  # the tiny preset stops after 6 steps: run on until the SIGTERM
        overrides += ["trainer.num_steps=100000", "trainer.checkpoint_every=100000",
                      "trainer.log_every=1"]  # fmt: skip
    print(f"[deep SCM] training for {budget_s:g} s of wall time ...")
    deep_scm = workdir / "deep_scm"
    run = record["deep_scm"] = run_training(
        f"{HVAE_EXPERIMENT}:{preset}", deep_scm, overrides, env, budget_s
    )
    print(
        f"[deep SCM] {run['steps']} steps in {run['wall_s']:.1f} s, SIGTERM at "
        f"{fmt(run['sigterm_at_s'], '.1f')} s ({fmt(run['steps_per_s'], '.1f')} steps/s)"
    )

    print(f"[evaluate] {args.eval_n} held-out images, mean images ...")
    out = workdir / "evaluate"
    command = ["evaluate", "--workdir", str(deep_scm), "--oracle", str(oracle), "--out",
               str(out), "--n", str(args.eval_n), "--pixel-noise", "mean"]  # fmt: skip
    wall_s = run_cli(command, workdir / "evaluate.log", env, limit_s=1800)
    record["evaluate"] = {"out": str(out), "wall_s": wall_s}
    print(f"[evaluate] done in {wall_s:.1f} s")
    record["metrics"] = json.loads((out / "metrics.json").read_text())


def quality(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The goals' metrics, and the L1 (0-255) to the true counterfactual per intervention."""
    out = {key: metrics.get(key) for key, *_ in QUALITY_GOALS}
    out["gt_error_l1"] = {
        match.group(1): value
        for key, value in metrics.items()
        if (match := re.fullmatch(r"gt_error/(do\(.+\))/l1", key))
    }
    return out


def goals(
    scores: Mapping[str, Any] | None, training_s: float | None, total_s: float, smoke: bool
) -> list[dict[str, Any]]:
    rows = []
    for key, what, op, target in QUALITY_GOALS:
        row = {"goal": f"causal-gen Morpho quality within 10 GPU-minutes: {what} {op} {target:g}"}
        value = scores and scores[key]
        if smoke:
            row.update(value=SMOKE_NOTE, met=None)
        elif value is None or training_s is None:
            row.update(value="not measured (see error)", met=False)
        else:
            ok = value <= target if op == "<=" else value >= target
            row.update(
                value=f"{value:.4g} after {training_s / 60:.1f} GPU-minutes of training",
                met=ok and training_s <= GPU_BUDGET_S,
            )
        rows.append(row)
    rows.append({
        "goal": f"gpu_check finishes in under {TOTAL_GOAL_S / 60:g} minutes on one GPU",
        "value": SMOKE_NOTE if smoke else f"{total_s / 60:.2f} minutes",
        "met": None if smoke else total_s < TOTAL_GOAL_S,
    })  # fmt: skip
    return rows


# ----------------------------------------------------------------------------------------------
# The machine and the report.


def subprocess_env() -> dict[str, str]:
    """Sets this process's environment up before JAX starts; returns the subprocesses' one.

    Everything compiles cold: no persistent compilation cache, here or in the `causalvision`
    subprocesses. This process does not preallocate GPU memory (JAX takes 75% of it at start),
    so that the trainers it starts can.
    """
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    os.environ["CAUSALVISION_CACHE_DIR"] = ""  # the `causalvision` program's own cache: off
    env = dict(os.environ)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def first_device() -> tuple[Any, str]:
    """JAX's first device and, if it is no GPU, why not in one line (with JAX's warnings)."""
    import jax

    # JAX logs a warning when it falls back to the CPU: hold it back for that one line.
    logger = logging.getLogger("jax._src.xla_bridge")
    held = logging.handlers.BufferingHandler(capacity=100)
    logger.addHandler(held)
    propagate, logger.propagate = logger.propagate, False
    try:
        device = jax.devices()[0]
    except Exception as error:  # e.g. JAX_PLATFORMS names a backend that cannot start
        return None, f"JAX has no device: {' '.join(str(error).split()) or repr(error)}"
    finally:
        logger.removeHandler(held)
        logger.propagate = propagate
    warnings = [r.getMessage() for r in held.buffer if r.levelno >= logging.WARNING]
    if device.platform == "gpu":
        for warning in warnings:
            print(f"jax: {warning}", file=sys.stderr)
        return device, ""
    return device, f"no GPU: JAX runs on {device.platform}" + "".join(
        f"; jax: {' '.join(w.split())}" for w in warnings
    )


def machine_info(device) -> dict[str, Any]:
    import jax

    packages = ("causalvision", "jax", "jaxlib", "flax", "optax", "numpy", "jax-cuda12-plugin",
                "jax-cuda13-plugin")  # fmt: skip
    return {
        "device_kind": device.device_kind,
        "platform": device.platform,
        "devices": [str(d) for d in jax.devices()],
        "device_memory_bytes": (device.memory_stats() or {}).get("bytes_limit"),
        "default_matmul_precision": jax.config.jax_default_matmul_precision,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "versions": {p: v for p in packages if (v := version(p)) is not None},
        "env": {k: os.environ[k] for k in ("XLA_FLAGS", "CUDA_VISIBLE_DEVICES") if k in os.environ},
    }


def tflops(rate: float | None) -> str:
    return fmt(rate and rate / 1e12, ".3f")


def print_report(report: Mapping[str, Any]) -> None:
    print()
    header = ("train step", "batch", "compile s", "step ms", "samples/s", "TFLOP/s", "of peak",
              "conv/dot operands")  # fmt: skip
    print_columns(header, [
        (r["dtype"], str(r["batch"]), f"{r['lower_s']:.1f} + {r['compile_s']:.1f}",
         f"{1e3 * r['step_s']:.2f}", f"{r['samples_per_s']:,.0f}", tflops(r["flop_rate"]),
         fmt(r["peak_fraction"], ".2%"),
         ", ".join(f"{n} {types}" for types, n in r["matmul_operand_types"].items()))
        for r in report["train_step"]
    ])  # fmt: skip
    cf = report["counterfactual"]
    print(
        f"\ncounterfactual, do(thickness), batch {cf['batch']}: {cf['images_per_s']:,.0f} "
        f"images/s, compile {cf['lower_s']:.1f} + {cf['compile_s']:.1f} s, "
        f"{tflops(cf['flop_rate'])} TFLOP/s"
    )
    print(
        "compile s: trace and lower + XLA. of peak: of the dtype's dense peak on this device "
        f"({report['peak_flops'] or 'unknown'})"
    )
    scores = report.get("quality")
    if scores:
        print()
        for key, what, *_ in QUALITY_GOALS:
            print(f"  {what:45s} {fmt(scores[key], '.4g')}")
        for do, value in scores["gt_error_l1"].items():
            print(f"  {'L1 to the true counterfactual, ' + do:45s} {value:.4g}")
    print()
    for goal in report["goals"]:
        mark = {True: "MET    ", False: "NOT MET", None: "-      "}[goal["met"]]
        print(f"{mark}  {goal['goal']}: {goal['value']}")


# ----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="deep SCM training, wall time")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--cf-batch", type=int, default=512, help="counterfactual batch")
    parser.add_argument("--steps", type=int, default=20, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls after compiling")
    parser.add_argument("--oracle-steps", type=int, default=1000, help="pseudo-oracle training")
    parser.add_argument("--oracle", type=Path, default=None, help="a trained oracle run to reuse")
    parser.add_argument("--eval-n", type=int, default=256, help="held-out images to evaluate")
    parser.add_argument("--workdir", type=Path, default=None, help="runs go here (new or empty)")
    parser.add_argument("--output", type=Path, default=None, help="JSON results file")
    parser.add_argument("--smoke", action="store_true", help="tiny end-to-end run, any machine")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_sizes, args.cf_batch, args.steps, args.rounds, args.warmup = [8], 16, 2, 1, 1
        args.oracle_steps, args.eval_n = 4, 16
    if args.output is None:
        args.output = RESULTS / ("gpu_check_smoke.json" if args.smoke else "gpu_check.json")
    counts = (*args.batch_sizes, args.cf_batch, args.steps, args.rounds, args.oracle_steps)
    if min(counts) < 1 or args.eval_n < 1 or args.warmup < 0 or not args.minutes > 0:
        parser.error("batch sizes, steps, rounds and --eval-n must be >= 1, --minutes > 0")
    # Absolute paths: the subprocesses run in ROOT.
    args.oracle = args.oracle and args.oracle.resolve()
    args.workdir = args.workdir and args.workdir.resolve()
    if args.oracle is not None and not (args.oracle / "config.json").is_file():
        parser.error(f"--oracle: {args.oracle} holds no training run (no config.json)")
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir: {args.workdir} is not empty (training there would resume)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a pipe as they come
    env = subprocess_env()
    device, no_gpu = first_device()
    if device is None or (no_gpu and not args.smoke):
        print(f"gpu_check: {no_gpu}; run it on a GPU, or with --smoke", file=sys.stderr)
        return 2

    import jax
    from flax import nnx

    from causalvision.train import build_model, load_config
    from causalvision.train.config import complete_config

    if device.platform == "gpu" and jax.device_count() > 1:
        # The trainers would train on every GPU: give them this process's first one.
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    preset = "tiny" if args.smoke else "default"
    config = complete_config(load_config(f"{ROOT / HVAE_EXPERIMENT}:{preset}"))
    abstract = nnx.eval_shape(lambda: build_model(config)(nnx.Rngs(0)))
    params = sum(p.size for p in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    peaks = peak_flops(device.device_kind)
    print(f"{device.device_kind}: the {preset} deep SCM, {params:,} parameters")
    stage_s: dict[str, float] = {}
    report: dict[str, Any] = {
        "machine": machine_info(device),
        "model": {
            "experiment": f"{HVAE_EXPERIMENT}:{preset}",
            "params": params,
            "image": repr(config.model.image),
        },
        "bf16": BF16_NOTE,
        "peak_flops": peaks,
        "train_step": [],
        "stage_s": stage_s,
    }

    tick = time.perf_counter()
    for dtype in args.dtypes:
        for size in args.batch_sizes:
            row = bench_train_step(config, dtype, size, args, device, peaks)
            report["train_step"].append(row)
            print(
                f"[train step] {dtype}, batch {size}: compile {row['lower_s']:.1f} + "
                f"{row['compile_s']:.1f} s, {row['samples_per_s']:,.1f} samples/s, "
                f"{tflops(row['flop_rate'])} TFLOP/s ({fmt(row['peak_fraction'], '.2%')} "
                "of peak)"
            )
    stage_s["train_step"] = time.perf_counter() - tick

    tick = time.perf_counter()
    cf = report["counterfactual"] = bench_counterfactual(config, args.cf_batch, args, device, peaks)
    stage_s["counterfactual"] = time.perf_counter() - tick
    print(
        f"[counterfactual] do(thickness), batch {cf['batch']}: compile {cf['lower_s']:.1f} + "
        f"{cf['compile_s']:.1f} s, {cf['images_per_s']:,.1f} images/s, "
        f"{tflops(cf['flop_rate'])} TFLOP/s"
    )

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"[runs] in {workdir}")
    training: dict[str, Any] = {"workdir": str(workdir)}
    report["training"] = training
    try:
        check_quality(args, preset, workdir, env, training)
    except StageError as error:
        report["error"] = str(error)
        print(f"gpu_check: {error}", file=sys.stderr)
    for name in ("oracle", "deep_scm", "evaluate"):
        if name in training:
            stage_s[name] = training[name]["wall_s"]
    deep_scm = training.get("deep_scm", {})
    same_step = ("float32", config.trainer.batch_size)
    bench = next((r for r in report["train_step"] if (r["dtype"], r["batch"]) == same_step), None)
    if bench and deep_scm.get("steps_per_s"):
        # Below 1: the trainer loses time outside its step (the input pipeline, logging).
        deep_scm["of_step_rate"] = deep_scm["steps_per_s"] * bench["step_s"]
    metrics = training.pop("metrics", None)
    report["quality"] = scores = metrics and quality(metrics)
    report["total_s"] = time.perf_counter() - START
    training_s = deep_scm.get("wall_s")
    report["goals"] = goals(scores, training_s, report["total_s"], args.smoke)
    print_report(report)
    write_results(args, args.output, **_json_safe(report))
    return 1 if "error" in report else 0


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null: strict JSON has no such numbers (a blank image measures
    NaN after the smoke run's few steps)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
