"""A small training run in its own process, for the multi-device, multi-host and kill tests.

  python tests/train_worker.py WORKDIR [--devices N] [--steps S] [--sleep SEC]
      [--coordinator HOST:PORT --num-processes P --process-id K]

Trains a 2-layer MLP regressor on fixed synthetic data through `causalvision.train.train`
and writes the final parameters to WORKDIR/params_<process>.npz. `--sleep` slows the data
pipeline so a test can kill the run between checkpoints.
"""

import argparse
import pathlib
import sys
import time

import jax


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--checkpoint-every", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    parser.add_argument("--restore-check", action="store_true")
    args = parser.parse_args()

    jax.config.update("jax_num_cpu_devices", args.devices)  # before any backend starts
    from causalvision.train import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)

    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from causalvision.data import ArraySource
    from causalvision.train import Task, TrainerConfig, restore, train

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype(np.float32)
    y = (np.sin(x[:, :1] * 2.0) + 0.5 * x[:, 1:2] * x[:, 2:3]).astype(np.float32)

    class Slow:
        def __call__(self, example):
            time.sleep(args.sleep)
            return example

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(8, 32, rngs=rngs)
            self.out = nnx.Linear(32, 1, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.tanh(self.hidden(x)))

    def loss(model, batch, key):
        # Label noise from the per-step key (so a resumed run must restore the key), which
        # depends on an example's position in the global batch, hence off for comparisons
        # across process counts.
        noise = args.noise * jax.random.normal(key, batch["y"].shape)
        error = model(batch["x"]) - (batch["y"] + noise)
        return jnp.mean(error**2), {}

    task = Task(
        init_model=MLP,
        loss=loss,
        train_source=ArraySource({"x": x, "y": y}),
        transforms=(Slow(),) if args.sleep else (),
    )
    config = TrainerConfig(
        num_steps=args.steps,
        batch_size=32,
        learning_rate=3e-2,
        schedule="cosine",
        ema_decay=0.9,
        log_every=4,
        checkpoint_every=args.checkpoint_every,
        progress=False,
    )
    result = train(task, config, args.workdir)
    params = nnx.state(result.model, nnx.Param)
    flat = {
        "/".join(str(k) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_leaves_with_path(jax.device_get(params))
    }
    workdir = pathlib.Path(args.workdir)
    np.savez(workdir / f"params_{jax.process_index()}.npz", **flat)
    if args.restore_check:  # every process reads the shared checkpoint back
        restored = restore(task, config, args.workdir)
        same = jax.tree.map(
            lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
            jax.device_get(nnx.state(restored.model, nnx.Param)),
            jax.device_get(params),
        )
        print(f"restored step={restored.step} equal={all(jax.tree.leaves(same))}", flush=True)
    print(f"done process={jax.process_index()} devices={jax.device_count()}", flush=True)
    if args.coordinator:
        jax.distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
