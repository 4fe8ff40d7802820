"""Issue 16: the VAE, HVAE and diffusion image mechanisms side by side, same data, same budget.

For each dataset (`--datasets`, default the pendulum and Morpho digits) the three deep SCMs
differ only in their image mechanism. Each is trained in this process by
`causalvision.train.train_and_evaluate` from its experiment preset (`--size`: "demo", the
minutes-on-a-CPU presets, or "tiny", seconds) with the same budget overriding the preset:
`--steps` steps (default 1,500) at batch `--batch` (32) on the same `--train-size` generated
training examples (default 8,192 for demo, 128 for tiny), the data config being the dataset's
HVAE preset's for all three. Each keeps its preset's model, optimiser, learning rate,
schedule and EMA. Periodic evaluation is off; one checkpoint is saved at the end.

- Morpho: `experiments/morpho_vae.py`, `morpho_hvae.py`, `diffusion_scm.py:morpho_{size}`.
- pendulum: `pendulum_hvae.py`, `diffusion_scm.py:pendulum_{size}`; there is no pendulum VAE
  preset, so the VAE is the Morpho VAE preset (model, optimiser) on the pendulum's data.
- pseudo-oracle, once per dataset: `experiments/morpho_oracle.py:{size}` (an
  `attribute_predictor`) on the dataset's data config (at the oracle preset's size).
  `experiment_config` holds every derivation.

Every counterfactual below is each mechanism's default procedure (`model.scm()`: latents and
pixel residual abducted) except that the diffusion mechanism runs `--cf-steps` DDIM steps
(default 50, the demo presets' own `ddim_steps`), in the evaluation and the timing alike.
Measured, per dataset and mechanism:

1. training: wall seconds of `train_and_evaluate` (compilation included) and samples/s, the
   median of the train lines' `steps_per_second` (the first, which holds the compilation, left
   out when there are others) times the batch;
2. counterfactual images/s: `image_counterfactual_fn` (what the evaluation calls: the jitted
   `SCM.counterfactual`) on `--cf-batch` (64) held-out images under do(angle) (pendulum) or
   do(thickness) (Morpho) at the attribute's typical high value (`typical_interventions`).
   The first call (compilation) is timed apart; the rate is the batch over the median of 2
   more calls;
3. parameters of the image model and of the whole deep SCM (`nnx.Param` leaves);
4. quality, `causalvision.audit.evaluate_run` on `--num` (64) held-out examples with the
   evaluators "ground_truth", "effectiveness" and "composition" (1 null cycle). The
   interventions are the evaluators' defaults: each attribute alone, values drawn from the
   held-out marginal, then a random subset ("random"). Per intervention: L1 (0-255) to the
   dataset's exact counterfactual, and effectiveness: each attribute's MAE (accuracy for the
   digit) read off the counterfactual image against its counterfactual value, by the
   dataset's exact measurement ("meas.", Morpho's thickness and intensity; the pendulum has
   none) and by the pseudo-oracle ("pred."). Composition: L1 to the factual image after one
   null intervention (about 0 by construction, the pixel residual being abducted). A
   mechanism's "mean L1" is the mean over its interventions, "random" included. For
   reference, the row "(unchanged)" scores the factual image itself as the counterfactual
   (the same examples and interventions): what a mechanism that changes nothing scores.

Goals (`goals` in the JSON): the diffusion mechanism has the lowest mean L1 to the exact
counterfactual of the three on the pendulum at this budget, and lower than "(unchanged)";
counterfactual images/s at 50 DDIM steps reported for every mechanism.

    .venv/bin/python benchmarks/mechanism_comparison.py            # ~30 min on 2 cores
    .venv/bin/python benchmarks/mechanism_comparison.py --size tiny --datasets pendulum \\
        --steps 2 --batch 8 --num 4 --cf-batch 2 --cf-steps 1 --output /tmp/mc.json  # smoke

Runs go to `--workdir` (default a temporary directory, deleted at the end unless `--keep`; a
given `--workdir` is kept). Prints a progress line per stage and two tables, and writes
`benchmarks/results/mechanism_comparison.json` (`--output`; the command, the machine, every
timing and metric, and the goals) and beside it a `.png`: for the first dataset, the first
6 units of the timed batch, factual | exact counterfactual | each mechanism's counterfactual.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    Failure,
    Parser,
    fmt,
    jax_machine_info,
    print_columns,
    require_positive,
    run_main,
    timed_training,
    write_results,
)

RESULTS = ROOT / "benchmarks" / "results" / "mechanism_comparison.json"
DATASETS = ("pendulum", "morpho")
MECHANISMS = ("vae", "hvae", "diffusion")
SIZES = ("demo", "tiny")
# Experiment presets by (dataset, mechanism); "{size}" is "demo" or "tiny".
PRESETS = {
    ("morpho", "vae"): "experiments/morpho_vae.py:{size}",
    ("morpho", "hvae"): "experiments/morpho_hvae.py:{size}",
    ("morpho", "diffusion"): "experiments/diffusion_scm.py:morpho_{size}",
    ("pendulum", "hvae"): "experiments/pendulum_hvae.py:{size}",
    ("pendulum", "diffusion"): "experiments/diffusion_scm.py:pendulum_{size}",
}
VAE_PRESET = "experiments/morpho_vae.py:{size}"  # the pendulum VAE: this on the pendulum's data
ORACLE_PRESET = "experiments/morpho_oracle.py:{size}"
# The intervened attribute of the timed counterfactuals and of the image grid.
FOCUS = {"pendulum": "angle", "morpho": "thickness"}
COMPOSITION_CYCLES = 1
EVALS = {
    "ground_truth": {"type": "ground_truth"},
    "effectiveness": {"type": "effectiveness"},
    "composition": {"type": "composition", "cycles": COMPOSITION_CYCLES},
}
# The reference row: the factual image as its own counterfactual.
UNCHANGED = "(unchanged)"
TIMED_CALLS = 2
GRID_UNITS = 6
GOAL_STEPS = 50
L1_GOAL = (
    "diffusion has the lowest L1 to the exact counterfactual on the pendulum, and below the "
    "factual image's own"
)
RATE_GOAL = f"counterfactual images/s at {GOAL_STEPS} DDIM steps reported"


def experiment_config(dataset: str, mechanism: str, size: str) -> Any:
    """The completed `Config` of `mechanism` ("vae", "hvae", "diffusion" or "oracle") on
    `dataset` at `size`, before the budget: its preset, with the dataset's HVAE preset's data
    config (one for all mechanisms); the oracle's keeps its preset's data size."""
    from causalvision.train import load_config
    from causalvision.train.config import complete_config

    def path(spec: str) -> str:
        return str(ROOT / spec.format(size=size))

    data = load_config(path(PRESETS[(dataset, "hvae")])).data
    if mechanism == "oracle":
        base = load_config(path(ORACLE_PRESET))
        data = dataclasses.replace(data, size=base.data.size, eval_size=base.data.eval_size)
    elif (dataset, mechanism) in PRESETS:
        base = load_config(path(PRESETS[(dataset, mechanism)]))
    elif (dataset, mechanism) == ("pendulum", "vae"):
        base = load_config(path(VAE_PRESET))
    else:
        raise ValueError(f"no config for mechanism {mechanism!r} on {dataset!r}")
    # Completed again: the image shape and context width follow the new data.
    return complete_config(dataclasses.replace(base, data=data))


def with_budget(config: Any, args: argparse.Namespace) -> Any:
    """`config` at the benchmark's budget: steps, batch, training size; one final checkpoint,
    no periodic evaluation, ~20 train lines to take the median rate of."""
    trainer = dataclasses.replace(
        config.trainer,
        num_steps=args.steps,
        batch_size=args.batch,
        log_every=max(1, args.steps // 20),
        eval_every=None,
        checkpoint_every=args.steps,
        progress=False,
    )
    return dataclasses.replace(
        config, trainer=trainer, data=dataclasses.replace(config.data, size=args.train_size)
    )


def preset_name(dataset: str, mechanism: str, size: str) -> str:
    if mechanism == "oracle":
        return f"{ORACLE_PRESET.format(size=size)} on the {dataset} data"
    if (dataset, mechanism) in PRESETS:
        return PRESETS[(dataset, mechanism)].format(size=size)
    return f"{VAE_PRESET.format(size=size)} on the {dataset} data"


def focus_do(dataset: Any, name: str) -> dict[str, float]:
    """The typical high value of attribute `name` (`typical_interventions`)."""
    from causalvision.audit import typical_interventions

    return [do for do in typical_interventions(dataset) if list(do) == [name]][-1]


def time_counterfactuals(
    workdir: Path, dataset_name: str, mechanism: str, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cf timing and parameter counts, grid images) of a trained run."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from causalvision.audit import held_out_examples, image_counterfactual_fn, load_deep_scm
    from causalvision.train.data import dataset_of

    options = image_options(mechanism, args)
    config, model, scm = load_deep_scm(workdir, **options)
    dataset = dataset_of(config.data)
    examples = held_out_examples(config, args.cf_batch)
    do_value = focus_do(dataset, FOCUS[dataset_name])
    name, value = next(iter(do_value.items()))
    specs = {s.name: s for s in dataset.attribute_specs}
    dtype = jnp.int32 if specs[name].categorical else jnp.float32
    do = {name: jnp.full((args.cf_batch,), value, dtype)}
    images = jnp.asarray(examples["image"])
    parents = {n: jnp.asarray(examples[n]) for n in dataset.attributes}
    cf_fn = image_counterfactual_fn(scm, dataset, batch_size=args.cf_batch)

    def call() -> tuple[float, Any]:
        start = time.perf_counter()
        out = jax.block_until_ready(cf_fn(images, parents, do))
        return time.perf_counter() - start, out

    first_s, out = call()
    times = [call()[0] for _ in range(TIMED_CALLS)]
    median = statistics.median(times)

    def count(module: Any) -> int:
        return int(sum(leaf.size for leaf in jax.tree.leaves(nnx.state(module, nnx.Param))))

    shown = min(GRID_UNITS, args.cf_batch)
    record = {
        "cf": {
            "batch": args.cf_batch,
            "do": do_value,
            "options": options,
            "first_call_s": first_s,
            "times_s": times,
            "median_s": median,
            "images_per_s": args.cf_batch / median,
            "finite": bool(jnp.isfinite(out).all()),
        },
        "params": {"image_model": count(model.image_model), "deep_scm": count(model)},
    }
    grid = {
        "do": do_value,
        "dataset": dataset,
        # Every per-unit leaf cut to the shown units (Morpho's "style" is a dict of them).
        "examples": jax.tree.map(lambda v: np.asarray(v)[:shown], examples),
        "model": np.asarray(out[:shown]),
    }
    return record, grid


def image_options(mechanism: str, args: argparse.Namespace) -> dict[str, Any]:
    """The counterfactual options of `mechanism`: its defaults, but `--cf-steps` DDIM steps."""
    return {"num_steps": args.cf_steps} if mechanism == "diffusion" else {}


def evaluate(
    workdir: Path, oracle: Path, out: Path, options: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    from causalvision.audit import evaluate_run

    start = time.perf_counter()
    metrics = evaluate_run(
        workdir, out, oracle_workdir=oracle, num=args.num, evals=EVALS, **options
    )
    return {"eval_seconds": time.perf_counter() - start, **summary(metrics)}


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The table's figures from an evaluation's metrics (which are kept too)."""
    l1 = {
        m.group(1): v
        for k, v in metrics.items()
        if (m := re.fullmatch(r"gt_error/do\((.+)\)/l1", k))
    }
    effectiveness: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        m = re.fullmatch(r"effectiveness/do\((.+)\)/(measured|predicted)/(.+_(?:mae|acc))", key)
        if m:
            effectiveness.setdefault(m.group(1), {})[f"{m.group(2)}/{m.group(3)}"] = value
    return {
        "gt_l1": l1,
        "mean_gt_l1": statistics.fmean(l1.values()) if l1 else None,
        "effectiveness": effectiveness,
        "composition_l1": metrics.get(f"composition_l1_{COMPOSITION_CYCLES}"),
        "metrics": metrics,
    }


def unchanged_baseline(config: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The L1 to the exact counterfactual of the factual image itself, for the evaluation's
    examples and interventions (the same key and examples as `evaluate_run`'s): what a
    mechanism that changes nothing scores, a reference for the models' L1."""
    import jax
    import numpy as np

    from causalvision.audit import held_out_examples
    from causalvision.metrics import CounterfactualSubject, run_evaluators
    from causalvision.train.data import dataset_of

    examples = held_out_examples(config, args.num)
    examples["image"] = examples["image"].astype(np.uint8)  # stored images, as evaluate_run's
    subject = CounterfactualSubject(
        lambda images, parents, do: images,
        examples,
        key=jax.random.key(0),
        dataset=dataset_of(config.data),
    )
    evals = {"ground_truth": EVALS["ground_truth"]}
    metrics = {name: value for _, name, value in run_evaluators(evals, subject)}
    return {k: v for k, v in summary(metrics).items() if k in ("gt_l1", "mean_gt_l1")}


def run_dataset(name: str, root: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    """(the dataset's record, grid images by mechanism) for dataset `name`."""
    import numpy as np

    from causalvision.audit import true_counterfactual

    print(f"[{name}] oracle: training {preset_name(name, 'oracle', args.size)} ...", flush=True)
    oracle_dir = root / name / "oracle"
    oracle_config = experiment_config(name, "oracle", args.size)
    oracle_config = dataclasses.replace(
        oracle_config, trainer=dataclasses.replace(oracle_config.trainer, progress=False)
    )
    oracle = {
        "preset": preset_name(name, "oracle", args.size),
        **timed_training(oracle_config, oracle_dir),
    }
    held_out = {k: round(v, 3) for k, v in (oracle["eval"] or {}).items() if k != "step"}
    print(f"[{name}] oracle: trained in {oracle['train_seconds']:.1f} s; its errors on "
          f"held-out images {held_out}", flush=True)  # fmt: skip
    unchanged = unchanged_baseline(experiment_config(name, "hvae", args.size), args)
    print(f"[{name}] the factual image's L1 to the exact counterfactual: "
          f"{unchanged['mean_gt_l1']:.2f}", flush=True)  # fmt: skip
    record: dict[str, Any] = {"oracle": oracle, "unchanged": unchanged, "mechanisms": {}}
    grids: dict[str, Any] = {}
    for mechanism in MECHANISMS:
        tag = f"[{name}/{mechanism}]"
        workdir = root / name / mechanism
        config = with_budget(experiment_config(name, mechanism, args.size), args)
        print(f"{tag} training {args.steps} steps at batch {args.batch} ...", flush=True)
        row: dict[str, Any] = {"preset": preset_name(name, mechanism, args.size)}
        row.update(timed_training(config, workdir))
        print(f"{tag} trained in {row['train_seconds']:.1f} s, "
              f"{fmt(row['samples_per_s'], '.1f')} samples/s", flush=True)  # fmt: skip
        print(f"{tag} timing counterfactuals at batch {args.cf_batch} ...", flush=True)
        timing, grid = time_counterfactuals(workdir, name, mechanism, args)
        row.update(timing)
        grids[mechanism] = grid
        cf = row["cf"]
        print(f"{tag} {cf['images_per_s']:.1f} images/s (first call {cf['first_call_s']:.1f} s); "
              f"{row['params']['image_model']:,} image-model parameters", flush=True)  # fmt: skip
        print(f"{tag} evaluating {args.num} held-out examples ...", flush=True)
        out = root / name / f"{mechanism}_eval"
        options = image_options(mechanism, args)
        row.update(evaluate(workdir, root / name / "oracle", out, options, args))
        print(f"{tag} evaluated in {row['eval_seconds']:.1f} s: mean L1 to the exact "
              f"counterfactual {fmt(row['mean_gt_l1'], '.2f')}", flush=True)  # fmt: skip
        record["mechanisms"][mechanism] = row
    # The exact counterfactual of the shown units, re-rendered from their attributes.
    first = next(iter(grids.values()))
    truth = true_counterfactual(first["examples"], first["do"], first["dataset"])["image"]
    grid = {
        "do": first["do"],
        "factual": first["examples"]["image"],
        "truth": np.asarray(truth),
        "models": {m: g["model"] for m, g in grids.items()},
    }
    record["interventions"] = list(next(iter(record["mechanisms"].values()))["gt_l1"])
    return record, grid


def draw_grid(grid: dict[str, Any], dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    columns = [("factual", grid["factual"]), ("exact cf", grid["truth"])]
    columns += [
        (f"{m.upper() if m != 'diffusion' else m} cf", v) for m, v in grid["models"].items()
    ]
    units = len(grid["factual"])
    fig, axes = plt.subplots(
        units, len(columns), figsize=(1.6 * len(columns), 1.6 * units + 0.6), squeeze=False
    )
    for j, (title, images) in enumerate(columns):
        for i in range(units):
            image = np.clip(np.asarray(images[i], np.float32), 0, 255) / 255.0
            ax = axes[i, j]
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
    do = ", ".join(f"{k}={v:g}" for k, v in grid["do"].items())
    fig.suptitle(f"{dataset}: do({do})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_tables(datasets: dict[str, Any]) -> None:
    print()
    lines = []
    for name, record in datasets.items():
        for mechanism, row in record["mechanisms"].items():
            lines.append((
                name, mechanism, fmt(row["mean_gt_l1"], ".2f"), fmt(row["composition_l1"], ".3f"),
                fmt(row["train_seconds"], ".0f"), fmt(row["samples_per_s"], ".1f"),
                fmt(row["cf"]["images_per_s"], ".2f"), fmt(row["cf"]["first_call_s"], ".1f"),
                f"{row['params']['image_model']:,}", f"{row['params']['deep_scm']:,}",
                fmt(row["eval_seconds"], ".0f"),
            ))  # fmt: skip
        unchanged = fmt(record["unchanged"]["mean_gt_l1"], ".2f")
        lines.append((name, UNCHANGED, unchanged, *["-"] * 8))
    print_columns(("dataset", "mechanism", "mean L1", f"composition L1 ({COMPOSITION_CYCLES})",
                   "train s", "train samples/s", "cf images/s", "cf first call s",
                   "image params", "deep SCM params", "eval s"), lines)  # fmt: skip
    for name, record in datasets.items():
        rows = record["mechanisms"]
        columns = sorted({c for row in rows.values() for e in row["effectiveness"].values()
                          for c in e}, key=lambda c: (not c.startswith("measured"), c))  # fmt: skip
        header = ["mechanism", "do", "L1 to exact cf"]
        for column in columns:
            oracle, metric = column.split("/")
            attribute, _, kind = metric.rpartition("_")
            header.append(f"{'meas.' if oracle == 'measured' else 'pred.'} {attribute} {kind}")
        lines = []
        for mechanism, row in rows.items():
            for case, l1 in row["gt_l1"].items():
                scores = row["effectiveness"].get(case, {})
                lines.append([mechanism, case, fmt(l1, ".2f")]
                             + [fmt(scores.get(c), ".3g") for c in columns])  # fmt: skip
        for case, l1 in record["unchanged"]["gt_l1"].items():
            lines.append([UNCHANGED, case, fmt(l1, ".2f"), *["-"] * len(columns)])
        print(f"\n{name}: per intervention (L1 on 0-255; effectiveness MAE, or accuracy)")
        print_columns(header, lines)


def goals(datasets: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    pendulum = datasets.get("pendulum")
    if pendulum is None:
        rows.append({"goal": L1_GOAL, "value": "not measured (pendulum not run)", "met": False})
    else:
        l1 = {m: r["mean_gt_l1"] for m, r in pendulum["mechanisms"].items()}
        finite = all(v is not None and math.isfinite(v) for v in l1.values())
        unchanged = pendulum["unchanged"]["mean_gt_l1"]
        # Lowest of the three, and below the factual image's own error: a mechanism that
        # changes nothing must not meet the goal.
        met = (
            finite
            and all(l1["diffusion"] < v for m, v in l1.items() if m != "diffusion")
            and l1["diffusion"] < unchanged
        )
        value = {
            "mean_l1": {m: v and round(v, 3) for m, v in l1.items()},
            "unchanged_mean_l1": round(unchanged, 3),
            "steps": args.steps,
            "batch": args.batch,
        }
        rows.append({"goal": L1_GOAL, "value": value, "met": bool(met)})
    rates = {
        name: {m: r["cf"]["images_per_s"] for m, r in record["mechanisms"].items()}
        for name, record in datasets.items()
    }
    measured = all(v > 0 for by in rates.values() for v in by.values())
    rows.append({
        "goal": RATE_GOAL,
        "value": {"images_per_s": rates, "ddim_steps": args.cf_steps, "batch": args.cf_batch},
        "met": bool(measured and args.cf_steps == GOAL_STEPS),
    })  # fmt: skip
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated, of {', '.join(DATASETS)}")  # fmt: skip
    parser.add_argument("--size", default="demo", choices=SIZES, help="which presets")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each model")
    parser.add_argument("--batch", type=int, default=32, help="training batch of each model")
    parser.add_argument("--train-size", type=int, default=None,
                        help="training examples (default 8192 for demo, 128 for tiny)")  # fmt: skip
    parser.add_argument("--num", type=int, default=64, help="held-out examples evaluated")
    parser.add_argument("--cf-batch", type=int, default=64, help="batch of the timed cf")
    parser.add_argument("--cf-steps", type=int, default=GOAL_STEPS,
                        help="DDIM steps of the diffusion's counterfactuals")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="where runs go (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary runs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if not names or unknown or len(set(names)) != len(names):
        parser.error(f"--datasets: expected distinct names of {DATASETS}, got {args.datasets!r}")
    args.datasets = names
    if args.train_size is None:
        args.train_size = 8192 if args.size == "demo" else 128
    require_positive(parser, args, ("steps", "batch", "train_size", "num", "cf_batch", "cf_steps"))
    if args.batch > args.train_size:
        parser.error(f"--batch {args.batch} is larger than --train-size {args.train_size}")
    if args.workdir is not None:
        taken = [args.workdir / d for d in names if (args.workdir / d).exists()]
        if taken:
            parser.error(f"--workdir: {taken[0]} exists (runs would resume); choose another")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import jax

    if "JAX_PLATFORMS" not in os.environ:
        jax.config.update("jax_platforms", "cpu")
    # Build every config first: a bad setting fails here, before any training.
    try:
        for name in args.datasets:
            for mechanism in (*MECHANISMS, "oracle"):
                with_budget(experiment_config(name, mechanism, args.size), args)
    except ValueError as error:
        raise Failure(" ".join(str(error).split())) from None
    root = args.workdir or Path(tempfile.mkdtemp(prefix="mechanism_comparison-"))
    start = time.perf_counter()
    datasets, grids = {}, {}
    try:
        for name in args.datasets:
            datasets[name], grids[name] = run_dataset(name, root, args)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    minutes = (time.perf_counter() - start) / 60
    print_tables(datasets)
    checks = goals(datasets, args)
    print()
    for check in checks:
        print(f"{'met' if check['met'] else 'NOT met'}: {check['goal']} ({check['value']})")
    png = args.output.with_suffix(".png")
    first = args.datasets[0]
    draw_grid(grids[first], first, png)
    kept = args.workdir is not None or args.keep
    if kept:
        print(f"runs kept in {root}")
    write_results(
        args,
        args.output,
        machine=jax_machine_info(["jax", "flax", "optax", "numpy"], None),
        timings={"minutes": minutes},
        workdir=str(root) if kept else None,
        datasets=datasets,
        chart=str(png.relative_to(ROOT) if png.is_relative_to(ROOT) else png),
        goals=checks,
    )
    return 0


if __name__ == "__main__":
    run_main(main, "mechanism_comparison")
