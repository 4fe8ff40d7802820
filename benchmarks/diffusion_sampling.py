"""DDIM sampling speed: the fused `lax.scan` sampler beside the unfused one and PyTorch.

The issue's goal: DDIM at 50 steps as one jit-compiled `lax.scan`, images/s at batch 256, at
least 2x CausalDiffAE's PyTorch sampler on the same CPU where it can run side by side, else the
ratio to our own unfused sampler. CausalDiffAE's code cannot be installed here (it needs MPI
and its own improved_diffusion fork), so this measures, on the same model and inputs:

1. fused: `jax.jit` of `causalvision.nn.ddim_sample` (all steps one `jax.lax.scan`), the model
   state, schedule, noise and conditioning passed as arguments (nothing constant-folded);
   lowering + XLA compilation timed apart (`.lower()` then `.compile()`), then the first call;
2. unfused: `ddim_sample_unfused`, a Python loop over one jitted DDIM step (its first call,
   which compiles the step, timed apart). The timed rounds alternate fused, unfused, fused, …
   so that a load that comes and goes on a shared machine weighs on both alike;
3. PyTorch (when `torch` is importable): a port of the same UNet written here (`torch_unet`,
   the same layers in the same order, NCHW, eager) running the same DDIM loop under
   `torch.no_grad()` with `torch.set_num_threads(os.cpu_count())`, in a subprocess under
   `--peer-python` (default: this interpreter), after the JAX rounds. It loads the JAX model's
   weights, so besides the parameter counts (printed; they must agree within 1%) its noise
   prediction and its sample are compared with JAX's. Without torch the peer is skipped with a
   one-line note. The worker runs with `OMP_WAIT_POLICY=PASSIVE` (`--peer-omp-wait-policy`;
   '' inherits the environment): PyTorch's OpenMP threads otherwise spin at every barrier,
   and when any other process shares the cores that made its DDIM sample ~3x slower here
   (JAX's pool has no such cliff), a measurement of the machine's load, not of PyTorch.

The model is `causalvision.nn.UNet` (improved-diffusion's UNet as CausalDiffAE configures it,
conditioning z added to the timestep embedding) with every kernel drawn LeCun-normal: the
zero-initialised last layers of a fresh UNet would make ε̂ identically zero, and the check that
fused and unfused samples agree (max |Δ| < 1e-4, recorded) would then check nothing. Schedule:
linear, T = 1000; DDIM η = 0, 50 steps (τ = 0, 20, …, 980), x̂0 clipped to [-1, 1] as
improved-diffusion's sampler does by default (`--no-clip`: not), guidance scale 1 (one model
pass per step), z ~ N(0, I) of width 16, x_T ~ N(0, I).

Default sizes: CausalDiffAE's MorphoMNIST decoder (32x32x1, multipliers (1, 2, 2), attention
at side 8) at base width 16 instead of 128, one residual block per level instead of 3, GroupNorm
in 8 groups (improved-diffusion's 32 do not divide width 16): 281,265 parameters with
cond_size 16 (width 32, the issue's suggestion, has 1.1 M and takes ~90 s a sample on 2 cores).
One batch-256 UNet pass takes 0.6-0.9 s on a 2-core CPU, a 50-step sample 30-45 s; each sampler
runs a first call and `--rounds` (2) timed samples, so the default run takes 5-7 minutes on 2
cores. images/s = batch / median sample time over the rounds. Run:

    .venv/bin/python benchmarks/diffusion_sampling.py
    .venv/bin/python benchmarks/diffusion_sampling.py --base-width 32 --num-groups 32
    .venv/bin/python benchmarks/diffusion_sampling.py --resolution 8 --base-width 4 \
        --num-groups 2 --attention 4 --cond-size 3 --batch 2 --steps 3 --rounds 1 --jax-only \
        --output /tmp/ddim.json

Results are printed as a table and written as JSON (default
`benchmarks/results/diffusion_sampling.json`). On a shared machine rates vary from run to
run: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import fmt, jax_machine_info, print_columns, worker_result, write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "diffusion_sampling.json"

TRAIN_STEPS = 1000  # the linear schedule's T
GOAL_FACTOR = 2.0
PARAM_TOLERANCE = 0.01
AGREEMENT = 1e-4  # fused vs unfused samples, max |Δ|
INSTALL_HINT = "pip install -e '.[bench]' (or pip install torch==2.13.0 for the CPU build)"


def time_rounds(run: Callable[[], Any], rounds: int) -> list[float]:
    """Seconds per call of `run` (which must block), one entry per round."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------------------------------
# The peer: a PyTorch port of the same UNet, loading the JAX model's weights.


def torch_unet(args: argparse.Namespace):
    """The PyTorch UNet for `args` (built in the worker, where torch is imported). Module and
    parameter names follow the NNX module's paths, so the JAX weights load by name."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    emb_size, groups = 4 * args.base_width, args.num_groups

    def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None, :]
        emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        return F.pad(emb, (0, dim % 2))

    class ResBlock(nn.Module):
        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.norm1 = nn.GroupNorm(groups, cin)
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
            self.emb = nn.Linear(emb_size, cout)
            self.norm2 = nn.GroupNorm(groups, cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

        def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
            h = self.conv1(F.silu(self.norm1(x)))
            h = h + self.emb(F.silu(emb))[:, :, None, None]
            h = self.conv2(F.silu(self.norm2(h)))
            return (x if self.skip is None else self.skip(x)) + h

    class AttentionBlock(nn.Module):
        def __init__(self, features: int):
            super().__init__()
            self.heads = args.num_heads
            self.norm = nn.GroupNorm(groups, features)
            self.qkv = nn.Linear(features, 3 * features)
            self.proj = nn.Linear(features, features)

        def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
            b, c, h, w = x.shape
            d = c // self.heads
            tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
            qkv = self.qkv(tokens).reshape(b, h * w, 3, self.heads, d)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
            logits = torch.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(d)
            out = torch.einsum("bnqk,bknd->bqnd", logits.softmax(dim=-1), v).reshape(b, h * w, c)
            return x + self.proj(out).transpose(1, 2).reshape(b, c, h, w)

    class Downsample(nn.Module):
        def __init__(self, features: int):
            super().__init__()
            self.conv = nn.Conv2d(features, features, 3, stride=2, padding=1)

        def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    class Upsample(nn.Module):
        def __init__(self, features: int):
            super().__init__()
            self.conv = nn.Conv2d(features, features, 3, padding=1)

        def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))

    class Sequence(nn.Module):
        def __init__(self, layers: list[nn.Module]):
            super().__init__()
            self.layers = nn.ModuleList(layers)

        def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x, emb)
            return x

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            width, mult = args.base_width, args.channel_mult
            self.time_in = nn.Linear(width, emb_size)
            self.time_out = nn.Linear(emb_size, emb_size)
            self.cond_embed = nn.Linear(args.cond_size, emb_size) if args.cond_size else None
            self.conv_in = nn.Conv2d(args.channels, width, 3, padding=1)

            def block(cin: int, cout: int, side: int) -> list[nn.Module]:
                layers: list[nn.Module] = [ResBlock(cin, cout)]
                if side in args.attention:
                    layers.append(AttentionBlock(cout))
                return layers

            down, skips, ch, side = [], [width], width, args.resolution
            for level, m in enumerate(mult):
                for _ in range(args.num_res_blocks):
                    down.append(Sequence(block(ch, width * m, side)))
                    ch = width * m
                    skips.append(ch)
                if level < len(mult) - 1:
                    down.append(Sequence([Downsample(ch)]))
                    skips.append(ch)
                    side //= 2
            self.down = nn.ModuleList(down)
            self.middle = Sequence([ResBlock(ch, ch), AttentionBlock(ch), ResBlock(ch, ch)])
            up = []
            for level, m in reversed(list(enumerate(mult))):
                for i in range(args.num_res_blocks + 1):
                    layers = block(ch + skips.pop(), width * m, side)
                    ch = width * m
                    if level > 0 and i == args.num_res_blocks:
                        layers.append(Upsample(ch))
                        side *= 2
                    up.append(Sequence(layers))
            self.up = nn.ModuleList(up)
            self.norm_out = nn.GroupNorm(groups, ch)
            self.conv_out = nn.Conv2d(ch, args.channels, 3, padding=1)

        def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
            emb = self.time_out(F.silu(self.time_in(timestep_embedding(t, args.base_width))))
            if self.cond_embed is not None:
                z = torch.zeros(x.shape[0], args.cond_size) if cond is None else cond
                emb = emb + self.cond_embed(z)
            h = self.conv_in(x)
            skips = [h]
            for block in self.down:
                h = block(h, emb)
                skips.append(h)
            h = self.middle(h, emb)
            for block in self.up:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            return self.conv_out(F.silu(self.norm_out(h)))

    return UNet()


def peer_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time the PyTorch DDIM sampler; returns the result's numbers (or why it was skipped)."""
    try:
        import numpy as np
        import torch
    except ImportError as error:
        return {"skipped": f"skipped: torch is not importable ({error}); {INSTALL_HINT}"}

    torch.set_num_threads(os.cpu_count() or 1)
    model = torch_unet(args).eval()
    params = sum(p.numel() for p in model.parameters())  # before loading: its own count
    with np.load(args.peer_inputs) as data:
        arrays = {k: torch.from_numpy(data[k]) for k in data.files}
    model.load_state_dict({k[len("param:") :]: v for k, v in arrays.items() if "param:" in k})
    x_T, cond, eps_t = arrays["x_T"], arrays.get("cond"), arrays["eps_t"]
    plan_t, plan_a, plan_a_next = arrays["plan_t"].tolist(), arrays["plan_a"], arrays["plan_a_next"]
    batch = x_T.shape[0]

    def sample() -> torch.Tensor:
        x = x_T
        for t, a, a_next in zip(plan_t, plan_a, plan_a_next, strict=True):
            eps = model(x, torch.full((batch,), t, dtype=torch.int64), cond)
            x0 = (x - torch.sqrt(1.0 - a) * eps) / torch.sqrt(a)
            if args.clip_x0:  # improved-diffusion's clip_denoised
                x0 = x0.clamp(-1.0, 1.0)
                eps = (x - torch.sqrt(a) * x0) / torch.sqrt(1.0 - a)
            x = torch.sqrt(a_next) * x0 + torch.sqrt(1.0 - a_next) * eps
        return x

    with torch.no_grad():
        eps = model(x_T, torch.full((batch,), int(eps_t), dtype=torch.int64), cond)
        eps_diff = float((eps - arrays["eps_ref"]).abs().max())
        start = time.perf_counter()
        out = sample()
        first = time.perf_counter() - start
        times = time_rounds(sample, args.rounds)
    sample_diff = float((out - arrays["x0_ref"]).abs().max())
    return {"params": params, "first_call_s": first, "times_s": times,
            "eps_max_abs_diff": eps_diff, "sample_max_abs_diff": sample_diff,
            "versions": {"torch": torch.__version__,
                         "torch_threads": torch.get_num_threads(),
                         "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}}  # fmt: skip


def peer_command(args: argparse.Namespace, inputs: Path) -> list[str]:
    return [str(args.peer_python), str(Path(__file__).resolve()), "--peer-worker",
            "--peer-inputs", str(inputs), "--resolution", str(args.resolution),
            "--channels", str(args.channels), "--base-width", str(args.base_width),
            "--channel-mult", *map(str, args.channel_mult),
            "--num-res-blocks", str(args.num_res_blocks), "--attention", *map(str, args.attention),
            "--num-heads", str(args.num_heads), "--num-groups", str(args.num_groups),
            "--cond-size", str(args.cond_size), "--batch", str(args.batch),
            "--steps", str(args.steps), "--rounds", str(args.rounds),
            *(["--no-clip"] if not args.clip_x0 else [])]  # fmt: skip


def run_peer(args: argparse.Namespace, inputs: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The PyTorch numbers from a worker subprocess, or (None, why not)."""
    import numpy as np

    if args.jax_only:
        return None, "skipped: --jax-only"
    if not Path(args.peer_python).exists():
        return None, f"skipped: no peer interpreter {args.peer_python}; {INSTALL_HINT}"
    with tempfile.TemporaryDirectory(prefix="ddim-peer-") as folder:
        path = Path(folder) / "inputs.npz"
        np.savez(path, **inputs)
        env = dict(os.environ)
        if args.peer_omp_wait_policy:
            env["OMP_WAIT_POLICY"] = args.peer_omp_wait_policy
        return worker_result(peer_command(args, path), env)


# ----------------------------------------------------------------------------------------------
# causalvision.


def unet_config(args: argparse.Namespace):
    from causalvision.nn.diffusion import UNetConfig

    return UNetConfig(
        resolution=args.resolution,
        channels=args.channels,
        base_width=args.base_width,
        channel_mult=tuple(args.channel_mult),
        num_res_blocks=args.num_res_blocks,
        attention_resolutions=tuple(args.attention),
        num_heads=args.num_heads,
        cond_size=args.cond_size,
        num_groups=args.num_groups,
    )


def build_model(config):
    """The UNet with every kernel LeCun-normal (fresh ones zero the last layer of each block)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from causalvision.nn.diffusion import UNet

    model = UNet(config, rngs=nnx.Rngs(0))
    key = jax.random.key(1)
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        kernel = variable[...]
        if path[-1] == "kernel" and not jnp.any(kernel):
            key, draw = jax.random.split(key)
            fan_in = math.prod(kernel.shape[:-1])
            variable[...] = jax.random.normal(draw, kernel.shape) / math.sqrt(fan_in)
    return model


def torch_layout(model) -> dict[str, Any]:
    """The UNet's parameters by PyTorch name (`param:down.0.layers.0.conv1.weight`), in
    PyTorch's layouts: OIHW convolutions, (out, in) linear weights."""
    import numpy as np
    from flax import nnx

    out = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = np.asarray(variable[...], np.float32)
        name = {"kernel": "weight", "scale": "weight"}.get(path[-1], path[-1])
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        elif value.ndim == 2:
            value = value.T
        key = ".".join([*map(str, path[:-1]), name])
        out[f"param:{key}"] = np.ascontiguousarray(value)
    return out


def bench_jax(model, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(fused row, unfused row, inputs for the peer)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from causalvision.nn.diffusion import (
        NoiseSchedule,
        ddim_sample,
        ddim_sample_unfused,
        ddim_timesteps,
    )

    schedule = NoiseSchedule.linear(TRAIN_STEPS)
    graphdef, state = nnx.split(model)
    key_x, key_z = jax.random.split(jax.random.key(2))
    x_T = jax.random.normal(key_x, (args.batch, *model.image_shape), jnp.float32)
    cond = (
        jax.random.normal(key_z, (args.batch, args.cond_size), jnp.float32)
        if args.cond_size
        else None
    )

    def fused_fn(state, schedule, x_T, cond):
        model = nnx.merge(graphdef, state)
        return ddim_sample(model, schedule, x_T, cond, num_steps=args.steps, clip_x0=args.clip_x0)

    start = time.perf_counter()
    lowered = jax.jit(fused_fn).lower(state, schedule, x_T, cond)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    xla_s = time.perf_counter() - start

    def fused() -> Any:
        return compiled(state, schedule, x_T, cond).block_until_ready()

    def unfused() -> Any:
        out = ddim_sample_unfused(
            model, schedule, x_T, cond, num_steps=args.steps, clip_x0=args.clip_x0
        )
        return out.block_until_ready()

    runs = {"fused": fused, "unfused": unfused}
    rows: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        start = time.perf_counter()
        out = run()
        rows[name] = {"first_call_s": time.perf_counter() - start, "times_s": [], "out": out}
    # The rounds alternate between the two samplers, so that a load that comes and goes on a
    # shared machine weighs on both alike.
    for _ in range(args.rounds):
        for name, run in runs.items():
            rows[name]["times_s"] += time_rounds(run, 1)
    for name, row in rows.items():
        print(f"  {name}: first call {row['first_call_s']:.1f} s, rounds "
              f"{', '.join(f'{t:.1f}' for t in row['times_s'])} s", flush=True)  # fmt: skip
    fused_row, unfused_row = rows["fused"], rows["unfused"]
    fused_row.update(lower_s=lower_s, xla_compile_s=xla_s, compile_s=lower_s + xla_s)
    x0 = fused_row.pop("out")
    x0_unfused = unfused_row.pop("out")
    unfused_row["max_abs_diff_vs_fused"] = float(jnp.max(jnp.abs(x0_unfused - x0)))
    fused_row["sample_abs_max"] = float(jnp.max(jnp.abs(x0)))

    # For the peer: one noise prediction at the first step, and the whole plan.
    timesteps = ddim_timesteps(TRAIN_STEPS, args.steps)
    levels = np.concatenate([[1.0], np.asarray(schedule.alphas_cumprod)[timesteps]])
    order = np.arange(args.steps - 1, -1, -1)
    eps_t = int(timesteps[-1])
    predict = jax.jit(lambda state, x, t, cond: nnx.merge(graphdef, state)(x, t, cond))
    eps = predict(state, x_T, jnp.full((args.batch,), eps_t, jnp.int32), cond)
    nchw = (0, 3, 1, 2)
    inputs = {
        **torch_layout(model),
        "x_T": np.asarray(x_T).transpose(nchw),
        **({} if cond is None else {"cond": np.asarray(cond)}),
        "eps_t": np.int64(eps_t),
        "eps_ref": np.asarray(eps).transpose(nchw),
        "x0_ref": np.asarray(x0).transpose(nchw),
        "plan_t": timesteps[order].astype(np.int64),
        "plan_a": levels[order + 1].astype(np.float32),
        "plan_a_next": levels[order].astype(np.float32),
    }
    return fused_row, unfused_row, inputs


# ----------------------------------------------------------------------------------------------
# Report.


def machine_info(peer: dict[str, Any] | None) -> dict[str, Any]:
    return jax_machine_info(("causalvision", "jax", "jaxlib", "flax", "numpy", "torch"), peer)


def goals(rows: dict[str, dict[str, Any]], args: argparse.Namespace, why: str) -> list[dict]:
    """The goal rows, computed from the table's rows (keyed by sampler)."""
    fused, unfused, peer = rows["fused"], rows["unfused"], rows["pytorch"]
    prefix = f"DDIM {args.steps} steps, batch {args.batch}"
    ratio = fused["rate"] / unfused["rate"]
    out = [{"goal": f"{prefix}: fused lax.scan sampler >= {GOAL_FACTOR:g}x the unfused sampler",
            "value": f"{ratio:.2f}x ({fused['rate']:.2f} vs {unfused['rate']:.2f} images/s)",
            "met": ratio >= GOAL_FACTOR}]  # fmt: skip
    target = f"{prefix}: fused JAX sampler >= {GOAL_FACTOR:g}x the PyTorch DDIM sampler"
    target += " of the same UNet"
    if "rate" not in peer:
        out.append({"goal": target, "value": f"not measured (PyTorch peer {why})", "met": None})
    else:
        ratio = fused["rate"] / peer["rate"]
        out.append({"goal": target, "value": f"{ratio:.2f}x ({fused['rate']:.2f} vs "
                    f"{peer['rate']:.2f} images/s)", "met": ratio >= GOAL_FACTOR})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=32, help="image side")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--base-width", type=int, default=16)
    parser.add_argument("--channel-mult", type=int, nargs="+", default=[1, 2, 2])
    parser.add_argument("--num-res-blocks", type=int, default=1)
    parser.add_argument("--attention", type=int, nargs="*", default=[8],
                        help="feature-map sides with self-attention")  # fmt: skip
    parser.add_argument("--num-heads", type=int, default=1)
    parser.add_argument("--num-groups", type=int, default=8, help="GroupNorm groups")
    parser.add_argument("--cond-size", type=int, default=16, help="width of z (0: none)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (of T = 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="timed samples per sampler (median)")
    parser.add_argument("--no-clip", dest="clip_x0", action="store_false",
                        help="do not clip the predicted x0 to [-1, 1]")  # fmt: skip
    parser.add_argument("--jax-only", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--peer-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--peer-omp-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY of the PyTorch worker ('': inherit)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--peer-inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.batch, args.rounds, args.cond_size + 1) < 1:
        parser.error("--batch and --rounds must be >= 1, --cond-size >= 0")
    if not 1 <= args.steps <= TRAIN_STEPS:
        parser.error(f"--steps must be in [1, {TRAIN_STEPS}]")
    if args.peer_worker:
        print(json.dumps(peer_worker(args)))
        return 0

    import jax
    from flax import nnx

    if "JAX_PLATFORMS" not in os.environ:
        jax.config.update("jax_platforms", "cpu")
    try:
        config = unet_config(args)
        model = build_model(config)
    except ValueError as error:
        parser.error(str(error))
    params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    print(f"settings: {config}", flush=True)
    print(f"UNet: {params:,} parameters; batch {args.batch}, {args.steps} DDIM steps, "
          f"{args.rounds} rounds", flush=True)  # fmt: skip

    print("causalvision (JAX) ...", flush=True)
    fused, unfused, inputs = bench_jax(model, args)
    print("PyTorch peer ...", flush=True)
    peer, why = run_peer(args, inputs)
    if peer is None:
        print(f"PyTorch peer {why}", flush=True)

    rows = {
        "fused": {"sampler": "fused: jit(lax.scan)", "params": params, **fused,
                  "note": f"trace/lower {fused['lower_s']:.1f} s + XLA "
                          f"{fused['xla_compile_s']:.1f} s"},
        "unfused": {"sampler": "unfused: loop of jit(step)", "params": params, **unfused,
                    "note": "first call compiles the step"},
        "pytorch": {"sampler": "PyTorch eager", "note": why},
    }  # fmt: skip
    if peer is not None:
        threads = peer["versions"]["torch_threads"]
        rows["pytorch"].update({k: v for k, v in peer.items() if k != "versions"})
        policy = peer["versions"]["OMP_WAIT_POLICY"] or "default"
        rows["pytorch"]["note"] = f"no_grad, {threads} threads, OMP wait {policy}"
    for row in rows.values():
        if "times_s" in row:
            row["sample_s"] = statistics.median(row["times_s"])
            row["rate"] = args.batch / row["sample_s"]
            row["fused_over_this"] = rows["fused"]["rate"] / row["rate"]
    table = [(r["sampler"], fmt(r.get("params"), ","), fmt(r.get("compile_s"), ".1f"),
              fmt(r.get("first_call_s"), ".1f"), fmt(r.get("sample_s"), ".2f"),
              fmt(r.get("rate"), ".2f"), fmt(r.get("fused_over_this"), ".2f"), r["note"])
             for r in rows.values()]  # fmt: skip
    print()
    print_columns(("sampler", "params", "compile s", "first call s", "sample s", "images/s",
                   "fused / this", "note"), table)  # fmt: skip
    print()
    print(f"images/s: batch / median time of one {args.steps}-step sample over {args.rounds} "
          "rounds. compile s: JAX's trace/lower + XLA compile, before the first call.")  # fmt: skip

    diff = unfused["max_abs_diff_vs_fused"]
    checks = {
        "fused_vs_unfused_max_abs_diff": diff,
        "fused_vs_unfused_agree": diff < AGREEMENT,
        "sample_abs_max": fused["sample_abs_max"],
    }
    print(f"fused vs unfused sample: max |diff| {diff:.2e} (must be < {AGREEMENT:g})")
    if peer is not None:
        gap = abs(params - peer["params"]) / peer["params"]
        checks.update(
            params_gap=gap,
            params_within_tolerance=gap <= PARAM_TOLERANCE,
            torch_eps_max_abs_diff=peer["eps_max_abs_diff"],
            torch_sample_max_abs_diff=peer["sample_max_abs_diff"],
        )
        print(f"parameters: JAX {params:,}, PyTorch {peer['params']:,} ({gap:.2%})")
        print(f"PyTorch vs JAX: noise prediction max |diff| {peer['eps_max_abs_diff']:.2e}, "
              f"sample max |diff| {peer['sample_max_abs_diff']:.2e} (|x0| max "
              f"{fused['sample_abs_max']:.2f})")  # fmt: skip
    checks_goals = goals(rows, args, why)
    for check in checks_goals:
        mark = {True: "MET    ", False: "NOT MET", None: "NOT RUN"}[check["met"]]
        print(f"{mark}  {check['goal']}: {check['value']}")

    write_results(
        args,
        args.output,
        model={
            "config": repr(config),
            "params": params,
            "peer_params": peer["params"] if peer else None,
            "schedule": f"linear, T = {TRAIN_STEPS}",
            "sampler": f"DDIM eta 0, {args.steps} steps, guidance 1, "
            + ("x0 clipped to [-1, 1]" if args.clip_x0 else "no clipping"),
            "weights": "every kernel LeCun normal (no zero-initialised layer)",
        },
        machine=machine_info(peer),
        rows=list(rows.values()),
        checks=checks,
        goals=checks_goals,
    )
    failures = [] if checks["fused_vs_unfused_agree"] else ["fused and unfused samples differ"]
    if peer is not None and not checks["params_within_tolerance"]:
        failures.append(f"parameter counts differ by {checks['params_gap']:.2%}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
