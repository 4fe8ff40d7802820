"""Slot-attention autoencoder training throughput: causalvision (JAX) beside PyTorch (issue 15).

The model is `causalvision.nn.SlotAttentionAutoEncoder` (Locatello et al. 2020's object-
discovery autoencoder): a convolutional encoder (`--widths`, 5x5, stride 1, ReLU), a soft
position embedding, LayerNorm + MLP, slot attention (`--num-slots` slots of 64, 3 iterations,
GRU and a residual MLP of 128), and a spatial-broadcast decoder (8x8 grid plus a position
embedding, 5x5 transposed convolutions of `--widths`, the first log2(resolution / 8) with
stride 2, then a 3x3 one to RGB + an alpha logit), the masks a softmax over the slots.

The peer is a PyTorch autoencoder of the same architecture and size written here (below,
`torch_model`): the same layers in the same order, NCHW convolutions, `torch.nn.GRUCell`
(which has a recurrent bias that Flax's `nnx.GRUCell` lacks: 3 x slot_size parameters more).
Both parameter counts are printed and must agree within 1%.

Measured in one run, on whatever CPU runs this: training images/s of the full step
(forward, MSE reconstruction loss, backward, Adam at lr 4e-4) on random images in [-1, 1]
at `--batch`. JAX: one `jax.jit` of the (params, optimizer) state, donated; its compilation
is timed on its own (`.lower()` then `.compile()`), and the first call of the compiled step
separately. PyTorch: eager mode, its first step timed separately. The rate is the median over
`--rounds` rounds of `--steps` steps each, after `--warmup` untimed steps. The peers run one
after the other, each in its own process on all cores: JAX in this one (XLA uses every core),
PyTorch in a subprocess under `--peer-python` (default: this interpreter) with
`torch.set_num_threads(os.cpu_count())`. Without torch the peer is skipped with a note
(install it with `pip install -e '.[bench]'`, or `pip install torch==2.13.0` for the CPU
build) and the JAX figure is still reported.

A 64x64 step at batch 64 takes tens of seconds on a 2-core CPU, so the defaults are
resolution 32, batch 64, the paper's widths (64 x 4) and 7 slots, 3 rounds of 2 steps after
1 warm-up step: about five minutes for both peers on 2 cores. Run:

    .venv/bin/python benchmarks/slot_attention_throughput.py
    .venv/bin/python benchmarks/slot_attention_throughput.py --resolution 64 --steps 1 --rounds 3
    .venv/bin/python benchmarks/slot_attention_throughput.py --resolution 16 --batch 4 \
        --steps 1 --rounds 1 --warmup 0 --widths 8 8 --jax-only --output /tmp/sa.json

Results are printed as a table and written as JSON (default
`benchmarks/results/slot_attention_throughput.json`). On a shared machine rates vary by
~10% from run to run: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import fmt, jax_machine_info, print_columns, worker_result, write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "slot_attention_throughput.json"

LEARNING_RATE = 4e-4  # the paper's
SLOT_SIZE, MLP_HIDDEN, NUM_ITERATIONS = 64, 128, 3
ENCODER_KERNEL, DECODER_KERNEL, DECODER_INITIAL = 5, 5, 8
GOAL_FACTOR = 1.5
PARAM_TOLERANCE = 0.01
INSTALL_HINT = "pip install -e '.[bench]' (or pip install torch==2.13.0 for the CPU build)"


def time_rounds(run: Callable[[], None], rounds: int, steps: int) -> list[float]:
    """Seconds per call of `run` (which must block), one entry per round of `steps` calls."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            run()
        times.append((time.perf_counter() - start) / steps)
    return times


def decoder_initial(resolution: int) -> int:
    return min(DECODER_INITIAL, resolution)


# ----------------------------------------------------------------------------------------------
# The peer: a PyTorch slot-attention autoencoder of the same architecture and size.


def torch_model(args: argparse.Namespace):
    """The PyTorch autoencoder for `args` (built in the worker, where torch is imported)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def grid(side: int) -> torch.Tensor:
        """`(1, side, side, 4)`: `[y, x, 1 - y, 1 - x]`, each from 0 to 1."""
        r = torch.linspace(0.0, 1.0, side)
        yx = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1)
        return torch.cat([yx, 1.0 - yx], dim=-1)[None]

    class SoftPositionEmbed(nn.Module):
        def __init__(self, channels: int, side: int):
            super().__init__()
            self.dense = nn.Linear(4, channels)
            self.register_buffer("grid", grid(side))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # NCHW
            return x + self.dense(self.grid).permute(0, 3, 1, 2)

    class SlotAttention(nn.Module):
        def __init__(self, in_features: int, num_slots: int, d: int, iters: int, hidden: int):
            super().__init__()
            self.num_slots, self.iters, self.scale = num_slots, iters, d**-0.5
            self.norm_inputs, self.norm_slots = nn.LayerNorm(in_features), nn.LayerNorm(d)
            self.project_k = nn.Linear(in_features, d, bias=False)
            self.project_v = nn.Linear(in_features, d, bias=False)
            self.project_q = nn.Linear(d, d, bias=False)
            self.gru = nn.GRUCell(d, d)
            self.norm_mlp = nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d))
            self.slots_mu = nn.Parameter(torch.empty(1, 1, d))
            self.slots_log_sigma = nn.Parameter(torch.empty(1, 1, d))
            nn.init.xavier_uniform_(self.slots_mu)
            nn.init.xavier_uniform_(self.slots_log_sigma)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            b, _, _ = inputs.shape
            d = self.slots_mu.shape[-1]
            noise = torch.randn(b, self.num_slots, d)
            slots = self.slots_mu + self.slots_log_sigma.exp() * noise
            x = self.norm_inputs(inputs)
            k, v = self.project_k(x), self.project_v(x)
            for _ in range(self.iters):
                previous = slots
                q = self.project_q(self.norm_slots(slots)) * self.scale
                attention = torch.einsum("bnd,bkd->bnk", k, q).softmax(dim=-1) + 1e-8
                attention = attention / attention.sum(dim=1, keepdim=True)
                updates = torch.einsum("bnk,bnd->bkd", attention, v)
                slots = self.gru(updates.reshape(-1, d), previous.reshape(-1, d)).reshape(b, -1, d)
                slots = slots + self.mlp(self.norm_mlp(slots))
            return slots

    class AutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            widths, res = args.widths, args.resolution
            self.initial = decoder_initial(res)
            upsamplings = round(math.log2(res // self.initial))
            layers, cin = [], 3
            for width in widths:
                layers += [nn.Conv2d(cin, width, ENCODER_KERNEL, padding="same"), nn.ReLU()]
                cin = width
            self.encoder = nn.Sequential(*layers)
            self.encoder_position = SoftPositionEmbed(widths[-1], res)
            self.encoder_mlp = nn.Sequential(
                nn.LayerNorm(widths[-1]), nn.Linear(widths[-1], widths[-1]), nn.ReLU(),
                nn.Linear(widths[-1], widths[-1]),
            )  # fmt: skip
            self.slot_attention = SlotAttention(
                widths[-1], args.num_slots, SLOT_SIZE, NUM_ITERATIONS, MLP_HIDDEN
            )
            self.decoder_position = SoftPositionEmbed(SLOT_SIZE, self.initial)
            layers, cin, pad = [], SLOT_SIZE, DECODER_KERNEL // 2
            for i, width in enumerate(widths):
                stride = 2 if i < upsamplings else 1
                layers += [nn.ConvTranspose2d(cin, width, DECODER_KERNEL, stride=stride,
                                              padding=pad, output_padding=stride - 1),
                           nn.ReLU()]  # fmt: skip
                cin = width
            layers.append(nn.ConvTranspose2d(cin, 4, 3, stride=1, padding=1))
            self.decoder = nn.Sequential(*layers)

        def forward(self, images: torch.Tensor) -> torch.Tensor:  # NCHW in [-1, 1]
            h = self.encoder_position(self.encoder(images))
            h = self.encoder_mlp(h.flatten(2).transpose(1, 2))  # (B, N, C)
            slots = self.slot_attention(h)
            b, k, d = slots.shape
            h = slots.reshape(b * k, d, 1, 1).expand(-1, -1, self.initial, self.initial)
            h = self.decoder(self.decoder_position(h))
            h = h.reshape(b, k, *h.shape[1:])
            recons, masks = h[:, :, :3], h[:, :, 3:].softmax(dim=1)
            return (recons * masks).sum(dim=1)

    return AutoEncoder(), F


def peer_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time the PyTorch training step; returns the result's numbers (or why it was skipped)."""
    try:
        import torch
    except ImportError as error:
        return {"skipped": f"skipped: torch is not importable ({error}); {INSTALL_HINT}"}

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model, F = torch_model(args)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    images = torch.rand(args.batch, 3, args.resolution, args.resolution) * 2.0 - 1.0
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(images), images)
        loss.backward()
        optimizer.step()
        box[0] = loss.item()  # eager CPU ops are synchronous; this reads it back all the same

    box = [None]
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(args.warmup):
        step()
    times = time_rounds(step, args.rounds, args.steps)
    return {"params": params, "first_step_s": first, "times_s": times, "loss": box[0],
            "versions": {"torch": torch.__version__,
                         "torch_threads": torch.get_num_threads()}}  # fmt: skip


def run_peer(args: argparse.Namespace) -> tuple[dict[str, Any] | None, str]:
    """The PyTorch numbers from a worker subprocess, or (None, why not)."""
    if args.jax_only:
        return None, "skipped: --jax-only"
    if not Path(args.peer_python).exists():
        return None, f"skipped: no peer interpreter {args.peer_python}; {INSTALL_HINT}"
    command = [str(args.peer_python), str(Path(__file__).resolve()), "--peer-worker",
               "--resolution", str(args.resolution), "--batch", str(args.batch),
               "--num-slots", str(args.num_slots), "--widths", *map(str, args.widths),
               "--rounds", str(args.rounds), "--steps", str(args.steps),
               "--warmup", str(args.warmup)]  # fmt: skip
    return worker_result(command)


# ----------------------------------------------------------------------------------------------
# causalvision.


def jax_config(args: argparse.Namespace):
    from causalvision.nn import SlotAttentionAutoEncoder

    return SlotAttentionAutoEncoder.Config(
        resolution=args.resolution,
        num_slots=args.num_slots,
        slot_size=SLOT_SIZE,
        num_iterations=NUM_ITERATIONS,
        mlp_hidden=MLP_HIDDEN,
        encoder_widths=tuple(args.widths),
        encoder_kernel=ENCODER_KERNEL,
        encoder_strides=(1,) * len(args.widths),
        decoder_initial=decoder_initial(args.resolution),
        decoder_widths=tuple(args.widths),
        decoder_kernel=DECODER_KERNEL,
    )


def bench_jax(config, args: argparse.Namespace) -> dict[str, Any]:
    import jax
    import optax
    from flax import nnx

    from causalvision.nn import SlotAttentionAutoEncoder
    from causalvision.scm import lenient_promotion

    model = SlotAttentionAutoEncoder(config, rngs=nnx.Rngs(0))
    params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    with lenient_promotion():
        optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATE), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    def step(state, images, key):
        model, optimizer = nnx.merge(graphdef, state)
        (loss, _), grads = nnx.value_and_grad(lambda m: m.loss(images, key), has_aux=True)(model)
        with lenient_promotion():
            optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    shape = (args.batch, args.resolution, args.resolution, config.channels)
    images = jax.random.uniform(jax.random.key(2), shape, minval=-1.0, maxval=1.0)
    keys = iter(jax.random.split(jax.random.key(1), 1 + args.warmup + args.rounds * args.steps))
    start = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=0).lower(state, images, jax.random.key(3))
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    box = [state, None]

    def run() -> None:
        box[0], box[1] = compiled(box[0], images, next(keys))
        box[1].block_until_ready()

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    for _ in range(args.warmup):
        run()
    times = time_rounds(run, args.rounds, args.steps)
    return {"params": params, "lower_s": lower_s, "xla_compile_s": compile_s,
            "compile_s": lower_s + compile_s, "first_step_s": first, "times_s": times,
            "loss": float(box[1])}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Report.


def machine_info(peer: dict[str, Any] | None) -> dict[str, Any]:
    return jax_machine_info(
        ("causalvision", "jax", "jaxlib", "flax", "optax", "numpy", "torch"), peer
    )


def goals(ours: dict[str, Any], peer: dict[str, Any] | None, why: str) -> list[dict[str, Any]]:
    out = []
    target = f"train images/s: causalvision >= {GOAL_FACTOR}x PyTorch in this run"
    if peer is None:
        out.append({"goal": target, "value": f"not measured (PyTorch peer {why})", "met": None})
        return out
    ratio = ours["rate"] / peer["rate"]
    out.append({"goal": target, "value": f"{ratio:.2f}x ({ours['rate']:.1f} vs "
                f"{peer['rate']:.1f} images/s)", "met": ratio >= GOAL_FACTOR})  # fmt: skip
    gap = abs(ours["params"] - peer["params"]) / peer["params"]
    out.append({"goal": f"parameter counts within {PARAM_TOLERANCE:.0%}",
                "value": f"{ours['params']:,} vs {peer['params']:,} ({gap:.2%})",
                "met": gap <= PARAM_TOLERANCE})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=32, help="image side (power of 2)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--num-slots", type=int, default=7)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 64, 64, 64],
                        help="encoder and decoder convolution widths")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--steps", type=int, default=2, help="train steps per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    parser.add_argument("--jax-only", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--peer-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.resolution, args.batch, args.num_slots, args.rounds, args.steps) < 1:
        parser.error("--resolution, --batch, --num-slots, --rounds and --steps must be >= 1")
    if args.warmup < 0 or min(args.widths) < 1:
        parser.error("--warmup must be >= 0 and --widths positive")
    initial = decoder_initial(args.resolution)
    ratio = args.resolution // initial
    if args.resolution % initial or ratio & (ratio - 1):
        parser.error("--resolution: must be a power of 2 times 8 (or at most 8)")
    if round(math.log2(ratio)) > len(args.widths):
        parser.error(f"--widths: need at least {round(math.log2(ratio))} decoder layers")
    if args.peer_worker:
        print(json.dumps(peer_worker(args)))
        return 0

    import jax

    if "JAX_PLATFORMS" not in os.environ:
        jax.config.update("jax_platforms", "cpu")
    config = jax_config(args)
    print(f"settings: resolution {args.resolution}, batch {args.batch}, {args.num_slots} slots, "
          f"widths {args.widths}, {args.rounds} rounds x {args.steps} steps after "
          f"{args.warmup} warm-up", flush=True)  # fmt: skip

    ours = bench_jax(config, args)
    ours["step_s"] = statistics.median(ours["times_s"])
    ours["rate"] = args.batch / ours["step_s"]
    print(f"causalvision (JAX): {ours['params']:,} parameters, {ours['rate']:.1f} images/s, "
          f"compile {ours['compile_s']:.1f} s", flush=True)  # fmt: skip

    print("PyTorch peer ...", flush=True)
    peer, why = run_peer(args)
    if peer is None:
        print(f"PyTorch peer {why}", flush=True)
    else:
        peer["step_s"] = statistics.median(peer["times_s"])
        peer["rate"] = args.batch / peer["step_s"]
        print(f"PyTorch: {peer['params']:,} parameters, {peer['rate']:.1f} images/s", flush=True)

    if peer is not None:
        ours["causalvision_over_peer"] = ours["rate"] / peer["rate"]
    rows = [{"library": "causalvision (JAX)", **ours,
             "note": f"jit; trace/lower {ours['lower_s']:.1f} s + XLA "
                     f"{ours['xla_compile_s']:.1f} s"}]  # fmt: skip
    if peer is None:
        rows.append({"library": "PyTorch", "note": why})
    else:
        threads = peer["versions"]["torch_threads"]
        rows.append({"library": "PyTorch", **{k: v for k, v in peer.items() if k != "versions"},
                     "note": f"eager, {threads} threads"})  # fmt: skip
    print()
    header = ("library", "params", "compile s", "first step s", "step s", "images/s",
              "cv / peer", "note")  # fmt: skip
    print_columns(header, [(
        r["library"], fmt(r.get("params"), ","), fmt(r.get("compile_s"), ".1f"),
        fmt(r.get("first_step_s"), ".2f"), fmt(r.get("step_s"), ".3f"), fmt(r.get("rate"), ".1f"),
        fmt(r.get("causalvision_over_peer"), ".2f"), r["note"],
    ) for r in rows])  # fmt: skip
    print()
    print("images/s: batch / median step time over rounds (forward, MSE, backward, Adam).")
    print("compile s: JAX's trace/lower + XLA compile, before the first step; first step s:")
    print("the first (compiled) JAX call, or PyTorch's first eager step.")
    checks = goals(ours, peer, why)
    if peer is not None:
        gap = abs(ours["params"] - peer["params"]) / peer["params"]
        assert gap <= PARAM_TOLERANCE, f"parameter counts differ by {gap:.2%}"
    for check in checks:
        mark = {True: "MET    ", False: "NOT MET", None: "NOT RUN"}[check["met"]]
        print(f"{mark}  {check['goal']}: {check['value']}")

    write_results(
        args,
        args.output,
        model={
            "config": repr(config),
            "params": ours["params"],
            "peer_params": peer["params"] if peer else None,
        },
        machine=machine_info(peer),
        rows=rows,
        goals=checks,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
