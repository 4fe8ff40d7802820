"""Deep-SCM image mechanism throughput: causalvision's HVAE side by side with causal-gen's.

The model is `HVAEConfig()`, causal-gen's Morpho-MNIST HVAE (32x32x1 images, widths
16..256, 20 stochastic decoder layers of 16 channels, 12 context values, conditional prior).
Measured on whatever CPU runs this, in one run:

1. train: samples/s of the full training step at `--batch-sizes` (default 32 and 128):
   negative ELBO forward, backward, global-norm clipping at 350, AdamW (lr 1e-3, betas
   (0.9, 0.9), weight decay 0.01) and causal-gen's update skip (grad norm >= 500 or a NaN
   loss keeps the old state). One `jax.jit` with the (params, optimizer) state donated, in
   the split/merge functional style (REFERENCE §9.1). Compilation is timed on its own as
   `jax.jit(step).lower(...)` and `.compile()`; the rate is the median over `--rounds` timed
   rounds of `--steps` steps each, after warm-up steps.
2. counterfactual: images/s of abduction + prediction through the HVAE's mechanism (jit) at
   `--cf-batch`: abduct the exogenous noise of factual images under their parents, predict
   under shuffled parents.
   A restart is timed too: a new process traces, lowers and compiles the same step with the
   persistent compilation cache this run filled (what a resumed `causalvision train` sees).
3. FLOP/s: XLA's cost analysis of the compiled step (`compiled.cost_analysis()["flops"]`)
   divided by the step time, as a fraction of this machine's fp32 GEMM peak, measured in the
   same run as the median rate of a jitted 2048x2048 float32 matmul.
4. peer: causal-gen's own PyTorch `HVAE` (biomedia-mira/causal-gen, `src/vae.py`) with its
   Morpho hyperparameters (`src/hps.py` and the `src/main.py` argument defaults, conditional
   prior, its conditioning dropout), trained by the same step as its trainer
   (`src/trainer.py`: AdamW, forward, backward, `clip_grad_norm_(350)`, skip at 500, step,
   warm-up scheduler step; no EMA update, as we time none), and its counterfactual
   (`abduct(x, pa, cf_parents)` + `forward_latents`). It runs in a subprocess under
   `--peer-python` (default `.venv-bench/bin/python`, which has torch) with 2 torch threads,
   importing causal-gen from `--causal-gen PATH` at run time (the code is never copied here).
   Without `--causal-gen` the peer is skipped with a note. To get it:

       git clone https://github.com/biomedia-mira/causal-gen /tmp/causal-gen

Run:

    .venv/bin/python benchmarks/deep_scm_throughput.py --causal-gen /tmp/causal-gen
    .venv/bin/python benchmarks/deep_scm_throughput.py --quick --output /tmp/dst.json

`--quick` is a smoke run: `HVAEConfig.tiny` (two resolutions, one block each), batch 4, one
round of one step, peers only if `--causal-gen` is given. Results are printed as a table and
written as JSON (default `benchmarks/results/deep_scm_throughput.json`). JAX runs on the CPU
unless JAX_PLATFORMS says otherwise; XLA uses all cores. On a shared machine rates vary by
~10% from run to run: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import fmt, jax_machine_info, print_columns, worker_result, write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "deep_scm_throughput.json"
PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"

LEARNING_RATE, BETAS, WEIGHT_DECAY = 1e-3, (0.9, 0.9), 0.01
GRAD_CLIP, GRAD_SKIP = 350.0, 500.0
TORCH_THREADS = 2
# The goal: >= 1.5x the faster of PyTorch causal-gen (56 samples/s at batch 32, 73.5 at
# 128, 2-core CPU) and causal-genx (50.6 / 41.6), compiled in under 20 s.
GOAL_FACTOR = 1.5
REFERENCE_RATES = {32: {"causal-gen": 56.0, "causal-genx": 50.6},
                   128: {"causal-gen": 73.5, "causal-genx": 41.6}}  # fmt: skip
GOAL_COMPILE_S = 20.0


# ----------------------------------------------------------------------------------------------
# Shared helpers (no JAX or torch import here: the peer worker runs without JAX).


def median_rate(run: Callable[[], None], rounds: int, steps: int) -> list[float]:
    """Seconds per call of `run` (which must block), one entry per round of `steps` calls."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            run()
        times.append((time.perf_counter() - start) / steps)
    return times


# ----------------------------------------------------------------------------------------------
# The peer: causal-gen's PyTorch HVAE, run by `--peer-worker` in the benchmark venv.


def causal_gen_src(path: Path) -> Path | None:
    """The directory holding causal-gen's `vae.py` (PATH itself or PATH/src), or None."""
    for candidate in (path / "src", path):
        if (candidate / "vae.py").is_file() and (candidate / "hps.py").is_file():
            return candidate
    return None


def peer_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time causal-gen's train step and counterfactual; returns the result rows' numbers."""
    import numpy as np
    import torch

    torch.set_num_threads(TORCH_THREADS)
    src = causal_gen_src(args.causal_gen)
    sys.path.insert(0, str(src))
    from hps import HPARAMS_REGISTRY, add_arguments
    from vae import HVAE

    hps = add_arguments(argparse.ArgumentParser()).parse_args([])  # src/main.py's defaults
    hps.__dict__.update(HPARAMS_REGISTRY["morphomnist"].__dict__)  # then the Morpho set
    hps.hps, hps.cond_prior = "morphomnist", True  # as its Morpho launch command
    torch.manual_seed(7)
    model = HVAE(hps)
    for module in model.modules():  # src/main.py zeroes every conv bias
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.zeros_(module.bias)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=hps.lr, weight_decay=hps.wd, betas=tuple(hps.betas)
    )
    warmup = hps.lr_warmup_steps  # its linear warm-up (src/utils.py needs imageio: not imported)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda=lambda i: 1.0 if i > warmup else i / warmup
    )
    rng = np.random.default_rng(0)

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = rng.integers(0, 256, (size, 1, hps.input_res, hps.input_res))
        x = (torch.tensor(pixels, dtype=torch.float32) - 127.5) / 127.5
        digit = np.eye(10)[rng.integers(0, 10, size)]
        pa = np.concatenate([rng.uniform(-1, 1, (size, 2)), digit], axis=1)  # [-1, 1] norm
        pa = torch.tensor(pa, dtype=torch.float32)[..., None, None]
        return x, pa.repeat(1, 1, hps.input_res, hps.input_res)  # its expand_pa

    def train_step(x: torch.Tensor, pa: torch.Tensor) -> None:  # src/trainer.py, accu_steps 1
        model.train()
        out = model(x, pa, beta=hps.beta)
        out["elbo"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), hps.grad_clip)
        nan = torch.isnan(out["nll"]).sum() + torch.isnan(out["kl"]).sum()
        if grad_norm < hps.grad_skip and nan == 0:
            optimizer.step()
            scheduler.step()
        model.zero_grad(set_to_none=True)

    result: dict[str, Any] = {"params": params, "train": {}, "versions": {
        "torch": torch.__version__, "torch_threads": torch.get_num_threads()}}  # fmt: skip
    for size in args.batch_sizes:
        x, pa = batch(size)
        start = time.perf_counter()
        train_step(x, pa)
        first = time.perf_counter() - start
        for _ in range(args.warmup):
            train_step(x, pa)
        times = median_rate(lambda x=x, pa=pa: train_step(x, pa), args.rounds, args.steps)
        result["train"][size] = {"first_step_s": first, "times_s": times}

    model.eval()
    x, pa = batch(args.cf_batch)
    cf_pa = pa[torch.randperm(args.cf_batch)]

    @torch.no_grad()
    def counterfactual() -> None:  # its counterfactual: abduct under pa, decode under pa*
        latents = model.abduct(x, pa, cf_parents=cf_pa)
        model.forward_latents(latents, parents=cf_pa)

    counterfactual()
    times = median_rate(counterfactual, args.rounds, 1)
    result["counterfactual"] = {"times_s": times}
    return result


def run_peer(args: argparse.Namespace) -> tuple[dict[str, Any] | None, str]:
    """causal-gen's numbers from a worker subprocess, or (None, why not)."""
    if args.causal_gen is None:
        return None, "skipped: pass --causal-gen PATH (a causal-gen checkout or its src/)"
    if causal_gen_src(args.causal_gen) is None:
        return None, f"skipped: no causal-gen vae.py and hps.py under {args.causal_gen}"
    if not Path(args.peer_python).exists():
        return None, f"skipped: no peer interpreter {args.peer_python} (needs torch)"
    command = [str(args.peer_python), str(Path(__file__).resolve()), "--peer-worker",
               "--causal-gen", str(args.causal_gen), "--batch-sizes",
               *map(str, args.batch_sizes), "--rounds", str(args.rounds), "--steps",
               str(args.steps), "--warmup", str(args.warmup), "--cf-batch",
               str(args.cf_batch)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(TORCH_THREADS)}
    return worker_result(command, env)


# ----------------------------------------------------------------------------------------------
# causalvision.


def quick_config():
    from causalvision.nn.hvae import HVAEConfig

    return HVAEConfig.tiny((32, 32, 1), 12)


def morpho_batch(size: int, seed: int = 0):
    """Random images on the 0-255 grid `(size, 32, 32, 1)` and Morpho parents `(size,)` each."""
    import jax
    import jax.numpy as jnp

    k_x, k_digit, k_thick, k_int = jax.random.split(jax.random.key(seed), 4)
    images = jax.random.randint(k_x, (size, 32, 32, 1), 0, 256).astype(jnp.float32)
    parents = {
        "digit": jax.random.randint(k_digit, (size,), 0, 10),
        "thickness": jax.random.uniform(k_thick, (size,), minval=1.5, maxval=4.0),
        "intensity": jax.random.uniform(k_int, (size,), minval=80.0, maxval=250.0),
    }
    return images, parents


MORPHO_SPEC = [
    ("digit", "categorical", 10),
    ("thickness", "continuous", (2.5, 0.5)),
    ("intensity", "continuous", (191.0, 40.0)),
]


def flops_of(compiled) -> float | None:
    """XLA's FLOP count of a compiled computation (None when the backend gives none)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and flops > 0 else None


def make_train_step(model):
    """The jitted functional step over the donated `(model, optimizer)` state.

    Returns `(state, step)` with `step(state, x, context, key) -> (state, loss, grad_norm)`.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from causalvision.scm import lenient_promotion
    from causalvision.train.optim import global_norm

    # Raveled into one vector, as `causalvision.train.make_optimizer` runs every rule.
    tx = optax.flatten(
        optax.chain(
            optax.clip_by_global_norm(GRAD_CLIP),
            optax.adamw(LEARNING_RATE, b1=BETAS[0], b2=BETAS[1], weight_decay=WEIGHT_DECAY),
        )
    )
    with lenient_promotion():
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    def step(state, x, context, key):
        model, optimizer = nnx.merge(graphdef, state)
        (loss, _), grads = nnx.value_and_grad(lambda m: m.loss(x, context, key), has_aux=True)(
            model
        )
        grad_norm = global_norm(grads)
        with lenient_promotion():
            optimizer.update(model, grads)
        new = nnx.state((model, optimizer))
        # causal-gen's trainer skips the update on a huge gradient or a NaN loss.
        keep = (grad_norm < GRAD_SKIP) & jnp.isfinite(loss)
        new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, state)
        return new, loss, grad_norm

    return state, jax.jit(step, donate_argnums=0)


def compile_train_step(config, batch_size: int, key):
    """A fresh HVAE's train step, lowered and compiled for one Morpho batch.

    Returns `(state, compiled, x, context, lower_s, compile_s)`.
    """
    from flax import nnx

    from causalvision.nn.hvae import HVAE
    from causalvision.nn.image_mechanism import ParentEncoding, from_pixels

    state, step = make_train_step(HVAE(config, rngs=nnx.Rngs(0)))
    images, parents = morpho_batch(batch_size)
    x, context = from_pixels(images), ParentEncoding(MORPHO_SPEC)(parents)
    start = time.perf_counter()
    lowered = step.lower(state, x, context, key)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    return state, compiled, x, context, lower_s, time.perf_counter() - start


def bench_train(config, batch_size: int, args) -> dict[str, Any]:
    import jax

    key = jax.random.key(1)
    state, compiled, x, context, lower_s, compile_s = compile_train_step(config, batch_size, key)
    flops = flops_of(compiled)

    keys = iter(jax.random.split(key, args.warmup + args.rounds * args.steps + 1))
    box = [state]

    def run() -> None:
        box[0], loss, _ = compiled(box[0], x, context, next(keys))
        loss.block_until_ready()

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    for _ in range(args.warmup):
        run()
    times = median_rate(run, args.rounds, args.steps)
    step_s = statistics.median(times)
    return {
        "lower_s": lower_s, "compile_s": compile_s, "first_step_s": first, "step_s": step_s,
        "rate": batch_size / step_s, "flops_per_step": flops, "times_s": times,
    }  # fmt: skip


def restart_worker(config, args) -> dict[int, dict[str, float]]:
    """In a fresh process, as a restarted run: trace, lower and compile each train step with
    the persistent compilation cache that the main run filled."""
    import jax

    out = {}
    for batch_size in args.batch_sizes:
        *_, lower_s, compile_s = compile_train_step(config, batch_size, jax.random.key(1))
        out[batch_size] = {"lower_s": lower_s, "compile_s": compile_s}
    return out


def bench_restart(args, cache: str) -> dict[int, dict[str, float]]:
    command = [sys.executable, __file__, "--restart-worker", cache, "--batch-sizes",
               *map(str, args.batch_sizes), *(["--quick"] if args.quick else [])]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return {int(k): v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def bench_counterfactual(config, batch_size: int, args) -> dict[str, Any]:
    import jax
    from flax import nnx

    from causalvision.nn.hvae import HVAE
    from causalvision.nn.image_mechanism import ParentEncoding

    encoding = ParentEncoding(MORPHO_SPEC)
    graphdef, params = nnx.split(HVAE(config, rngs=nnx.Rngs(0)))

    @jax.jit
    def counterfactual(params, images, parents, cf_parents):
        mechanism = nnx.merge(graphdef, params).mechanism(encoding)
        return mechanism.predict(mechanism.abduct(images, parents), cf_parents)

    images, parents = morpho_batch(batch_size)
    order = jax.random.permutation(jax.random.key(2), batch_size)
    cf_parents = {k: v[order] for k, v in parents.items()}
    start = time.perf_counter()
    compiled = counterfactual.lower(params, images, parents, cf_parents).compile()
    compile_s = time.perf_counter() - start

    def run() -> None:
        compiled(params, images, parents, cf_parents).block_until_ready()

    run()
    times = median_rate(run, args.rounds, 1)
    step_s = statistics.median(times)
    return {"compile_s": compile_s, "step_s": step_s, "rate": batch_size / step_s,
            "flops_per_step": flops_of(compiled), "times_s": times}  # fmt: skip


def bench_matmul_peak(args, n: int = 2048) -> dict[str, Any]:
    """fp32 GEMM FLOP/s of this machine: a jitted n x n matmul, median over rounds."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(3), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(4), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times = median_rate(
        lambda: matmul(a, b).block_until_ready(), max(args.rounds, 3), args.matmul_repeats
    )
    return {"n": n, "step_s": statistics.median(times), "flops": 2.0 * n**3, "times_s": times}


# ----------------------------------------------------------------------------------------------
# Report.


def machine_info(peer: dict[str, Any] | None) -> dict[str, Any]:
    return jax_machine_info(("causalvision", "jax", "jaxlib", "flax", "optax", "numpy"), peer)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("what", "library", "batch", "compile s", "step s", "rate /s", "GFLOP/s",
              "of peak", "cv / peer", "note")  # fmt: skip
    lines = []
    for r in rows:
        lines.append((
            r["what"], r["library"], str(r["batch"]), fmt(r.get("compile_s"), ".1f"),
            fmt(r.get("step_s"), ".4f"), fmt(r.get("rate"), ".1f"),
            fmt(r.get("flop_rate") and r["flop_rate"] / 1e9, ".1f"),
            fmt(r.get("peak_fraction"), ".1%"),
            fmt(r.get("causalvision_over_peer"), ".2f"), r.get("note", ""),
        ))  # fmt: skip
    print_columns(header, lines)


def goals(rows: list[dict[str, Any]], quick: bool) -> list[dict[str, Any]]:
    if quick:
        return []
    out = []
    for r in rows:
        if r["library"] != "causalvision" or r["what"] != "train step":
            continue
        reference = REFERENCE_RATES.get(r["batch"])
        if reference is not None:
            target = GOAL_FACTOR * max(reference.values())
            out.append({
                "goal": f"train batch {r['batch']}: >= {target:.0f} samples/s "
                        f"({GOAL_FACTOR}x max of {reference})",
                "value": f"{r['rate']:.1f} samples/s", "met": r["rate"] >= target,
            })  # fmt: skip
        ratio = r.get("causalvision_over_peer")
        if ratio is not None:  # the fair test on a CPU faster or slower than the reference one
            out.append({
                "goal": f"train batch {r['batch']}: >= {GOAL_FACTOR}x causal-gen in this run",
                "value": f"{ratio:.2f}x", "met": ratio >= GOAL_FACTOR,
            })  # fmt: skip
        out.append({
            "goal": f"train batch {r['batch']}: compiles in < {GOAL_COMPILE_S:g} s",
            "value": f"{r['compile_s']:.1f} s (trace/lower {r['lower_s']:.1f} + XLA "
                     f"{r['xla_compile_s']:.1f})", "met": r["compile_s"] < GOAL_COMPILE_S,
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--cf-batch", type=int, default=128, help="counterfactual batch")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--steps", type=int, default=5, help="train steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument("--matmul-repeats", type=int, default=10, help="matmuls per round")
    parser.add_argument("--causal-gen", type=Path, default=None, help="causal-gen checkout")
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (see docstring)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--restart-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.cf_batch, args.rounds, args.steps, args.warmup = [4], 4, 1, 1, 0
        args.matmul_repeats = 1
    if min(*args.batch_sizes, args.cf_batch, args.rounds, args.steps) < 1 or args.warmup < 0:
        parser.error("batch sizes, --cf-batch, --rounds and --steps must be >= 1")
    if args.peer_worker:
        print(json.dumps(peer_worker(args)))
        return 0

    import jax

    if "JAX_PLATFORMS" not in os.environ:
        jax.config.update("jax_platforms", "cpu")
    # A fresh persistent compilation cache: this run compiles cold and fills it; a restart
    # in a new process reads it (as the `causalvision` program does on a resumed run).
    cache = args.restart_worker or tempfile.mkdtemp(prefix="cv-bench-cache-")
    jax.config.update("jax_compilation_cache_dir", cache)
    from flax import nnx

    from causalvision.nn.hvae import HVAE, HVAEConfig

    config = quick_config() if args.quick else HVAEConfig()
    if args.restart_worker:
        print(json.dumps(restart_worker(config, args)))
        return 0
    abstract = nnx.eval_shape(lambda: HVAE(config, rngs=nnx.Rngs(0)))
    params = sum(p.size for p in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    print(f"causalvision HVAE: {params:,} parameters; {config}", flush=True)

    peak = bench_matmul_peak(args)
    peak_rate = peak["flops"] / peak["step_s"]
    print(f"fp32 GEMM peak ({peak['n']}^2 matmul): {peak_rate / 1e9:.1f} GFLOP/s", flush=True)

    rows: list[dict[str, Any]] = []
    by_batch: dict[int, dict[str, Any]] = {}
    for size in args.batch_sizes:
        ours = bench_train(config, size, args)
        flop_rate = ours["flops_per_step"] and ours["flops_per_step"] / ours["step_s"]
        by_batch[size] = {
            **ours, "what": "train step", "library": "causalvision", "batch": size,
            "compile_s": ours["lower_s"] + ours["compile_s"], "xla_compile_s": ours["compile_s"],
            "flop_rate": flop_rate, "peak_fraction": flop_rate and flop_rate / peak_rate,
            "note": f"compile: trace/lower {ours['lower_s']:.1f} s, XLA {ours['compile_s']:.1f} s",
        }  # fmt: skip
        rows.append(by_batch[size])
        print(f"causalvision train, batch {size}: {ours['rate']:.1f} samples/s "
              f"(compile {by_batch[size]['compile_s']:.1f} s)", flush=True)  # fmt: skip
    for size, restart in bench_restart(args, cache).items():
        row = by_batch[size]
        row["restart_compile_s"] = restart["lower_s"] + restart["compile_s"]
        row["note"] += f"; restarted: {row['restart_compile_s']:.1f} s (persistent cache)"
        print(f"causalvision train, batch {size}: restarted compile "
              f"{row['restart_compile_s']:.1f} s", flush=True)  # fmt: skip
    ours_cf = bench_counterfactual(config, args.cf_batch, args)
    cf_flop_rate = ours_cf["flops_per_step"] and ours_cf["flops_per_step"] / ours_cf["step_s"]
    cf_row = {
        **ours_cf, "what": "counterfactual", "library": "causalvision", "batch": args.cf_batch,
        "flop_rate": cf_flop_rate, "peak_fraction": cf_flop_rate and cf_flop_rate / peak_rate,
        "note": "GaussianDecoderMechanism abduct + predict (jit)",
    }  # fmt: skip
    rows.append(cf_row)
    print(f"causalvision counterfactual: {ours_cf['rate']:.1f} images/s", flush=True)

    print("causal-gen (PyTorch) ...", flush=True)
    peer, why = run_peer(args)
    if peer is None:
        print(f"causal-gen: {why}")
        for size in args.batch_sizes:
            rows.append({"what": "train step", "library": "causal-gen (PyTorch)",
                         "batch": size, "note": why})  # fmt: skip
    else:
        note = f"{TORCH_THREADS} torch threads, {peer['params']:,} params"
        for size in args.batch_sizes:
            timing = peer["train"][str(size)]
            step_s = statistics.median(timing["times_s"])
            ours = by_batch[size]
            rows.append({
                "what": "train step", "library": "causal-gen (PyTorch)", "batch": size,
                "step_s": step_s, "rate": size / step_s, "first_step_s": timing["first_step_s"],
                "times_s": timing["times_s"], "note": note,
            })  # fmt: skip
            if not args.quick:  # --quick times a tiny model of ours against causal-gen's full one
                ours["causalvision_over_peer"] = ours["rate"] / rows[-1]["rate"]
        cf_s = statistics.median(peer["counterfactual"]["times_s"])
        rows.append({
            "what": "counterfactual", "library": "causal-gen (PyTorch)", "batch": args.cf_batch,
            "step_s": cf_s, "rate": args.cf_batch / cf_s,
            "times_s": peer["counterfactual"]["times_s"],
            "note": "abduct(x, pa, cf_parents) + forward_latents, no_grad",
        })  # fmt: skip
        if not args.quick:
            cf_row["causalvision_over_peer"] = cf_row["rate"] / rows[-1]["rate"]

    print()
    print_table(rows)
    print()
    print("rate: samples/s (train) or images/s (counterfactual), median over rounds; GFLOP/s:")
    print("XLA cost-analysis FLOPs per step / step time; of peak: that over the 2048^2 fp32")
    print(f"matmul rate measured in this run ({peak_rate / 1e9:.1f} GFLOP/s). cv / peer: ratio")
    print("of rates measured side by side in this run.")
    checks = goals(rows, args.quick)
    for check in checks:
        print(f"{'MET    ' if check['met'] else 'NOT MET'}  {check['goal']}: {check['value']}")

    write_results(
        args,
        args.output,
        model={
            "config": repr(config),
            "params": params,
            "peer_params": peer["params"] if peer else None,
        },
        machine=machine_info(peer),
        matmul_peak={**peak, "flop_rate": peak_rate},
        rows=rows,
        goals=checks,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
