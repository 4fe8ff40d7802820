"""Input throughput: can the data side keep a training step fed on a small CPU?

Three measurements, all in images/s, on whatever CPU runs this (JAX on the CPU). Every row is
the median of `--rounds` timed rounds (all rounds are in the JSON):

1. render: the synthetic generators, `dataset.sample(key, --render-batch)` (attributes +
   float32 image) after one warm-up call compiles it: Morpho digits 32x32x1, the pendulum at
   64x64x3 and 96x96x3.
2. pipeline: `make_pipeline` at `--batch-size` (default 128, default threads and prefetch)
   serving Morpho digits from
   - an in-memory uint8 `ArraySource` (images pre-rendered), shuffled every epoch;
   - a `GeneratedSource` read in order (`shuffle=False`): each chunk of 256 examples is
     rendered on the fly once, so this is the render-on-the-fly rate;
   - a `GeneratedSource` read shuffled with a cache bounded to 8 chunks: a global shuffle
     touches another chunk for almost every example and re-renders it (only
     `--shuffled-batches` batches are timed: it is slow by design, this row says how slow);
   - the same with its default cache, holding every chunk: rendered on first touch, then memory;
   - the TFDS array_record files `build_dataset("morpho_digits")` writes, read with
     `load_source` (PNG-decoded per example), shuffled (unless `--skip-tfds`).
   One untimed batch first (thread start-up, first render).
3. train: a representative step, a 3-layer conv net (32-64-128 channels, 3x3, ReLU, 2x2
   average pooling) + dense over 10 digits, Flax NNX, optax adam, softmax cross-entropy, one
   `jax.jit` with the state donated, on `(batch, 32, 32, 1)` uint8 images scaled in the step:
   - alone, on one batch already on the device: the step's own consumption rate;
   - fed end to end by the in-memory and by the in-order on-the-fly pipeline, both sharing
     the cores (JAX dispatches the step asynchronously, so reading the next batch overlaps it).

The verdict is `pipeline images/s / train-step images/s` per pipeline: above 1 the pipeline
alone outruns the step. The end-to-end rows show what is left when both share the CPU. Run:

    .venv/bin/python benchmarks/data_throughput.py
    .venv/bin/python benchmarks/data_throughput.py --quick --output /tmp/data_throughput.json

Results are printed as a table and written as JSON (default
`benchmarks/results/data_throughput.json`). Thread settings are left at their defaults. On a
shared machine rates vary by ~10% from run to run: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from _common import host_info, print_columns, write_results

if "JAX_PLATFORMS" not in os.environ:
    jax.config.update("jax_platforms", "cpu")

import jax.numpy as jnp
import optax
from flax import nnx

from causalvision.data import (
    ArraySource,
    GeneratedSource,
    MorphoDigits,
    Pendulum,
    make_pipeline,
)
from causalvision.data.pipeline import DEFAULT_NUM_THREADS, DEFAULT_PREFETCH

RESULTS = Path(__file__).resolve().parent / "results" / "data_throughput.json"
NUM_CLASSES = 10


# ----------------------------------------------------------------------------------------------
# Helpers.


def row(stage: str, what: str, images: int, times: list[float], note: str = "") -> dict:
    """A result row; `images` per timed round, the rate from the median round."""
    median = statistics.median(times)
    return {
        "stage": stage,
        "what": what,
        "images": images,
        "time_s": median,
        "images_per_s": images / median,
        "rounds_s": times,
        "note": note,
    }


# ----------------------------------------------------------------------------------------------
# 1. Rendering.


def bench_render(name: str, dataset: MorphoDigits | Pendulum, args) -> dict:
    batch = args.render_batch
    jax.block_until_ready(dataset.sample(jax.random.key(0), batch)["image"])  # compile
    times = []
    for k in range(args.rounds):
        start = time.perf_counter()
        jax.block_until_ready(dataset.sample(jax.random.key(k + 1), batch)["image"])
        times.append(time.perf_counter() - start)
    return row("render", name, batch, times, f"sample() of {batch}; median of {args.rounds}")


# ----------------------------------------------------------------------------------------------
# 2. Pipelines.


def time_rounds(it: Iterator[dict], num_batches: int, rounds: int) -> tuple[int, list[float]]:
    """Images per round and the seconds of `rounds` rounds of `num_batches` batches each.

    One untimed batch first: it starts the reader threads (and renders a first chunk).
    """
    next(it)
    times = []
    for _ in range(rounds):
        images, start = 0, time.perf_counter()
        for _ in range(num_batches):
            images += len(next(it)["image"])
        times.append(time.perf_counter() - start)
    return images, times


def bench_pipeline(what, source, args, *, shuffle: bool, num_batches: int, rounds: int, note):
    ds = make_pipeline(source, batch_size=args.batch_size, seed=0, shuffle=shuffle, shard=(0, 1))
    images, times = time_rounds(iter(ds), num_batches, rounds)
    return row("pipeline", what, images, times, f"{note}; median of {rounds}")


# ----------------------------------------------------------------------------------------------
# 3. A representative training step.


class ConvNet(nnx.Module):
    """3x3 convs of 32, 64, 128 channels, each ReLU + 2x2 average pool, then dense to 10."""

    def __init__(self, rngs: nnx.Rngs):
        self.convs = nnx.List(
            [
                nnx.Conv(1, 32, (3, 3), rngs=rngs),
                nnx.Conv(32, 64, (3, 3), rngs=rngs),
                nnx.Conv(64, 128, (3, 3), rngs=rngs),
            ]
        )
        self.head = nnx.Linear(4 * 4 * 128, NUM_CLASSES, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:  # (B, 32, 32, 1) -> (B, 10)
        for conv in self.convs:
            x = nnx.avg_pool(jax.nn.relu(conv(x)), (2, 2), strides=(2, 2))
        return self.head(x.reshape(x.shape[0], -1))


def make_train_step():
    """(state, images uint8 (B, 32, 32, 1), labels (B,)) -> (state, loss), state donated."""
    model = ConvNet(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    def step(state, images, labels):
        model, optimizer = nnx.merge(graphdef, state)

        def loss_fn(model):
            x = images.astype(jnp.float32) / 255.0
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    return jax.jit(step, donate_argnums=0), state


def labels_of(batch: dict) -> np.ndarray:
    return batch["digit"].astype(np.int32)


def bench_train_alone(batch: dict, args) -> dict:
    step, state = make_train_step()
    images, labels = jax.device_put(batch["image"]), jax.device_put(labels_of(batch))
    state, loss = step(state, images, labels)  # compile
    jax.block_until_ready(loss)
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.train_steps):
            state, loss = step(state, images, labels)
        jax.block_until_ready((state, loss))
        times.append(time.perf_counter() - start)
    note = (
        f"conv 32-64-128 + dense, adam, donated state, one fixed batch; "
        f"{args.train_steps} steps, median of {args.rounds}"
    )
    return row("train", "train step alone", len(labels) * args.train_steps, times, note)


def bench_train_fed(what: str, source: Any, args, *, shuffle: bool) -> dict:
    step, state = make_train_step()
    ds = make_pipeline(source, batch_size=args.batch_size, seed=0, shuffle=shuffle, shard=(0, 1))
    it = iter(ds)
    batch = next(it)
    state, loss = step(state, batch["image"], labels_of(batch))  # compile
    jax.block_until_ready(loss)
    times = []
    for _ in range(args.rounds):
        images, start = 0, time.perf_counter()
        for _ in range(args.train_steps):
            batch = next(it)
            # Dispatch is asynchronous: the next batch is read while this step runs.
            state, loss = step(state, batch["image"], labels_of(batch))
            images += len(batch["image"])
        jax.block_until_ready((state, loss))
        times.append(time.perf_counter() - start)
    note = f"pipeline and step share the CPU; {args.train_steps} steps, median of {args.rounds}"
    return row("train", what, images, times, note)


# ----------------------------------------------------------------------------------------------
# Report.


def machine_info() -> dict[str, Any]:
    packages = ("causalvision", "jax", "jaxlib", "flax", "optax", "grain", "numpy")
    return {
        **host_info(packages),
        "jax_platforms": os.environ.get("JAX_PLATFORMS", "cpu (set by the benchmark)"),
        "jax_devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "pipeline_defaults": {"num_threads": DEFAULT_NUM_THREADS, "prefetch": DEFAULT_PREFETCH},
    }


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pipeline images/s over the lone train step's, per pipeline; > 1 keeps the step fed."""
    step = next(r for r in rows if r["what"] == "train step alone")["images_per_s"]
    out = []
    for r in rows:
        if r["stage"] == "pipeline":
            ratio = r["images_per_s"] / step
            out.append({"pipeline": r["what"], "ratio": ratio, "keeps_step_fed": ratio > 1.0})
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("stage", "what", "images", "time s", "images/s", "note")
    lines = []
    for r in rows:
        lines.append((
            r["stage"], r["what"], str(r["images"]), f"{r['time_s']:.3f}",
            f"{r['images_per_s']:,.0f}", r["note"],
        ))  # fmt: skip
    print_columns(header, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; rows give the median")
    parser.add_argument("--render-batch", type=int, default=256, help="images per sample()")
    parser.add_argument("--batch-size", type=int, default=128, help="pipeline / train batch")
    parser.add_argument("--batches", type=int, default=20, help="batches per pipeline round")
    parser.add_argument("--size", type=int, default=8192, help="examples per source")
    parser.add_argument(
        "--shuffled-batches",
        type=int,
        default=2,
        help="batches of the shuffled GeneratedSource with an 8-chunk cache",
    )
    parser.add_argument("--tfds-size", type=int, default=4096, help="examples built to TFDS")
    parser.add_argument("--skip-tfds", action="store_true", help="no TFDS array_record row")
    parser.add_argument("--train-steps", type=int, default=10, help="steps per train round")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)  # fmt: skip
    if args.quick:
        # 256 = GeneratedSource's chunk: the render benchmark compiles the chunks' render.
        args.rounds, args.render_batch, args.batch_size, args.batches = 1, 256, 16, 2
        args.size, args.tfds_size, args.shuffled_batches, args.train_steps = 256, 256, 1, 2
    counts = ("rounds", "render_batch", "batch_size", "batches", "size", "shuffled_batches",
              "tfds_size", "train_steps")  # fmt: skip
    if min(getattr(args, name) for name in counts) < 1:
        parser.error("every size and count must be >= 1")
    # An in-order GeneratedSource must not wrap around within the timed rounds (it would serve
    # chunks from its cache): one untimed batch, then rounds of batches or of train steps.
    needed = (1 + args.rounds * max(args.batches, args.train_steps)) * args.batch_size
    if args.size < needed:
        parser.error(f"--size must be >= (1 + rounds * max(batches, train_steps)) * "
                     f"batch_size = {needed}")  # fmt: skip
    if not args.skip_tfds and args.tfds_size < 2 * args.batch_size:
        parser.error("--tfds-size must be >= 2 * batch_size")

    info = machine_info()
    print(f"machine: {info['processor']}, {info['cpu_count']} CPUs, JAX on {info['jax_devices']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"pipeline defaults: {info['pipeline_defaults']}", flush=True)

    rows: list[dict[str, Any]] = []
    morpho = MorphoDigits()
    for name, dataset in (
        ("morpho_digits 32x32x1", morpho),
        ("pendulum 64x64x3", Pendulum(64)),
        ("pendulum 96x96x3", Pendulum(96)),
    ):
        rows.append(bench_render(name, dataset, args))
        print(f"render {name}: {rows[-1]['images_per_s']:,.0f} images/s", flush=True)

    # The in-memory set: the same uint8 examples a GeneratedSource serves, read once.
    start = time.perf_counter()
    generated = GeneratedSource(morpho, size=args.size, seed=1)
    examples = [generated[i] for i in range(args.size)]
    memory = ArraySource({
        "image": np.stack([e["image"] for e in examples]),
        "digit": np.array([e["digit"] for e in examples]),
    })  # fmt: skip
    print(f"pre-rendered {args.size} examples in {time.perf_counter() - start:.1f} s", flush=True)

    def pipeline(what, source, *, shuffle, num_batches=args.batches, rounds=args.rounds, note):
        rows.append(
            bench_pipeline(
                what,
                source,
                args,
                shuffle=shuffle,
                num_batches=num_batches,
                rounds=rounds,
                note=note,
            )
        )
        print(f"pipeline {what}: {rows[-1]['images_per_s']:,.0f} images/s", flush=True)

    pipeline(
        "in-memory uint8 ArraySource", memory, shuffle=True, note=f"{args.size} examples, shuffled"
    )
    pipeline(
        "GeneratedSource, in order",
        GeneratedSource(morpho, size=args.size, seed=2),
        shuffle=False,
        note="renders each chunk of 256 once, on the fly",
    )
    pipeline(
        "GeneratedSource, shuffled, 8-chunk cache",
        GeneratedSource(morpho, size=args.size, seed=3, cache_chunks=8),
        shuffle=True,
        num_batches=args.shuffled_batches,
        rounds=1,
        note=f"{args.size} examples, cache_chunks=8: re-renders chunks",
    )
    pipeline(
        "GeneratedSource, shuffled (default cache)",
        GeneratedSource(morpho, size=args.size, seed=3),
        shuffle=True,
        note="every chunk rendered on first touch, then kept",
    )
    if not args.skip_tfds:
        from causalvision.data import build_dataset, load_source

        with tempfile.TemporaryDirectory() as data_dir:
            start = time.perf_counter()
            build_dataset("morpho_digits", size=args.tfds_size, data_dir=data_dir, progress=False)
            build_s = time.perf_counter() - start
            source = load_source("morpho_digits", data_dir=data_dir)
            pipeline(
                "TFDS array_record (load_source)",
                source,
                shuffle=True,
                num_batches=min(args.batches, args.tfds_size // args.batch_size - 1),
                note=f"{args.tfds_size} examples built in {build_s:.1f} s, shuffled",
            )

    first = next(iter(make_pipeline(memory, batch_size=args.batch_size, shard=(0, 1))))
    rows.append(bench_train_alone(first, args))
    rows.append(bench_train_fed("train fed by in-memory pipeline", memory, args, shuffle=True))
    fresh = GeneratedSource(morpho, size=args.size, seed=4)
    rows.append(
        bench_train_fed("train fed by GeneratedSource, in order", fresh, args, shuffle=False)
    )
    checks = ratios(rows)

    print()
    print_table(rows)
    print()
    print("pipeline images/s / train-step images/s (> 1: the pipeline alone outruns the step):")
    for check in checks:
        verdict = "keeps the step fed" if check["keeps_step_fed"] else "SLOWER than the step"
        print(f"  {check['pipeline']}: {check['ratio']:.2f}x ({verdict})")

    write_results(
        args,
        args.output,
        machine=info,
        rows=rows,
        pipeline_over_train_step=checks,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
