"""Issue 17: counterfactual captioning (See-or-Guess's TE and NDE fine-tuning) against the
captioner it starts from, on captioned scenes whose hallucinations are known exactly.

For each seed of `--seeds` (default 0,1,2), in this process with
`causalvision.train.train_and_evaluate`:

1. the baseline: `experiments/captioning.py:{--size}` (default "cpu"; "tiny" for smoke runs,
   "default" for the 64 px model), the language-model loss only, for `--steps` steps
   (default: the preset's own) at batch `--batch` (the preset's) on `--train-size` generated
   scenes (the preset's);
2. "+TE" and "+NDE": the same preset with `model.effect=total` / `direct` and
   `model.init_from` the baseline, each for `--ft-steps` steps (default a third of the
   baseline's, See-or-Guess's 2 epochs against 5) at a tenth of the preset's learning rate
   with a tenth of its warm-up (the fine-tuning the experiment file describes), same batch
   and training scenes. Both fine-tunings get the same budget.

The seed sets `trainer.seed` and `data.seed` = 10·seed (training scenes 10·seed, the runs'
eval split 10·seed + 1). Periodic evaluation is off; one checkpoint is saved at the end. The
captioner evaluated is the run's EMA model when it keeps one, else its model.

Evaluation, per seed, on `--num` (256) held-out scenes drawn with seed 10·seed + 2 (never
trained on), captions decoded by beam search (`--beam`, 3; the raw summed log-probability,
no length penalty) through `nnx.jit`, in batches of `--decode-batch` (64):

- factual images: CIDEr-D and BLEU-4 against the one true caption per image
  (`causalvision.metrics.captioning`; CIDEr-D's document frequencies over these scenes),
  object recall and precision, CHAIR_i and CHAIR_s against `true_objects`;
- removed-object images: one visible object per scene, drawn by `numpy.random.default_rng`
  (10·seed + 3), removed (`remove_object`: do(present_k = 0), re-rendered); CHAIR_i and
  CHAIR_s against the removed scene's `true_objects`;
- masked-object images: the same objects masked (`mask_object`, See-or-Guess's black box and
  blur, the task's defaults); CHAIR against the masked scene's `true_objects`.
- the confounder: on the removed and masked images whose hidden object is the star while the
  triangle stays visible, the share of captions naming a star ("star guessed"), and whose
  hidden object is the triangle while the star stays, the share naming a triangle.

Counterfactual images are put on the uint8 storage grid (`quantize_image`) like the
training images. Timings: each training run's wall seconds and samples/s (the median of its
train lines' `steps_per_second`, the first, which holds the compilation, left out when there
are others, times the batch), and each model's beam-search decoding images/s at batch
`--decode-batch`: the first call (compilation) timed apart, the median of 3 more calls.

Results are the mean ± standard deviation over the seeds (0 for one seed). Goals (`goals` in
the JSON, `met` computed from the stored means):

- g1: CHAIR_i on masked and on removed images is at most half the baseline's, for +TE and
  for +NDE (each model meets it only on both image kinds; a baseline CHAIR_i of 0 leaves the
  reduction undefined: not met);
- g2: factual CIDEr-D and object recall within 1 point of the baseline for +TE and +NDE:
  no more than 1 point below it, CIDEr-D in points of CIDEr-D x 100 (CIDEr-D 0.85 is 85
  points) and recall in percentage points;
- g3: decoding images/s at batch 64 reported for every model.

    .venv/bin/python benchmarks/cf_captioning.py                       # ~16 min on 2 cores
    .venv/bin/python benchmarks/cf_captioning.py --size tiny --seeds 0 --steps 4 \\
        --ft-steps 2 --num 8 --output /tmp/cf.json                      # smoke, < 1 min

Runs go to `--workdir` (default a temporary directory, deleted at the end unless `--keep`; a
given `--workdir` is kept). Prints a progress line per stage and a table, and writes
`benchmarks/results/cf_captioning.json` (`--output`; the command, the machine, every timing,
the per-seed metrics, their means and standard deviations, and the goals) and beside it a
`.png`: the first seed's first 4 held-out scenes, factual | masked | removed, with the true
caption and each model's caption above each image.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    Parser,
    fmt,
    jax_machine_info,
    parse_seeds,
    print_columns,
    require_positive,
    run_main,
    timed_training,
    write_results,
)

RESULTS = ROOT / "benchmarks" / "results" / "cf_captioning.json"
EXPERIMENT = ROOT / "experiments" / "captioning.py"
SIZES = ("cpu", "tiny", "default")
# Model name -> the captioning task's `model.effect`.
MODELS = {"baseline": "none", "+TE": "total", "+NDE": "direct"}
KINDS = ("factual", "masked", "removed")
FT_LR_FACTOR = 0.1  # fine-tuning learning rate (and warm-up) against the baseline's
TIMED_CALLS = 3
GOAL_BATCH = 64
GRID_SCENES = 4
SEED_STRIDE = 10  # data seeds 10·seed (+1 eval split, +2 held-out scenes, +3 object draw)
CHAIR_GOAL = (
    "CHAIR_i on masked and on removed images reduced by >= 50% relative to the baseline, "
    "for +TE and for +NDE (each only if both image kinds)"
)
QUALITY_GOAL = (
    "factual CIDEr-D (x100 points) and object recall (percentage points) no more than 1 point "
    "below the baseline, for +TE and for +NDE"
)
RATE_GOAL = f"beam-search decoding images/s at batch {GOAL_BATCH} reported for every model"
# The table's columns: (heading, record path, scale, format).
COLUMNS = (
    ("CIDEr-D", ("factual", "cider_d"), 100, ".1f"),
    ("BLEU-4", ("factual", "bleu4"), 100, ".1f"),
    ("recall %", ("factual", "recall"), 100, ".1f"),
    ("precision %", ("factual", "precision"), 100, ".1f"),
    ("CHAIR_i %", ("factual", "chair_i"), 100, ".1f"),
    ("CHAIR_s %", ("factual", "chair_s"), 100, ".1f"),
    ("masked CHAIR_i %", ("masked", "chair_i"), 100, ".1f"),
    ("masked CHAIR_s %", ("masked", "chair_s"), 100, ".1f"),
    ("removed CHAIR_i %", ("removed", "chair_i"), 100, ".1f"),
    ("removed CHAIR_s %", ("removed", "chair_s"), 100, ".1f"),
    ("decode img/s", ("decode", "images_per_s"), 1, ".1f"),
    ("train samples/s", ("train", "samples_per_s"), 1, ".1f"),
)


def run_config(args: argparse.Namespace, seed: int, model: str, baseline: Path | None) -> Any:
    """The `Config` of `model` ("baseline", "+TE", "+NDE") for `seed` at the budget."""
    from causalvision.train import load_config

    config = load_config(f"{EXPERIMENT}:{args.size}")
    trainer, data = config.trainer, config.data
    steps = args.steps if model == "baseline" else args.ft_steps
    changes: dict[str, Any] = {
        "num_steps": steps,
        "batch_size": args.batch,
        "seed": seed,
        "log_every": max(1, steps // 20),
        "eval_every": None,
        "checkpoint_every": steps,
        "progress": False,
        "warmup_steps": min(trainer.warmup_steps, max(0, steps - 1)),
    }
    if model != "baseline":
        changes["learning_rate"] = trainer.learning_rate * FT_LR_FACTOR
        changes["warmup_steps"] = min(round(trainer.warmup_steps * FT_LR_FACTOR), max(0, steps - 1))
    settings = config.model
    if model != "baseline":
        effect = {"effect": MODELS[model], "init_from": str(baseline)}
        if isinstance(settings, dict):
            settings = {**settings, **effect}
        else:
            settings = dataclasses.replace(settings, **effect)
    return dataclasses.replace(
        config,
        trainer=dataclasses.replace(trainer, **changes),
        data=dataclasses.replace(data, size=args.train_size, seed=SEED_STRIDE * seed),
        model=settings,
    )


def held_out_scenes(config: Any, num: int, seed: int) -> dict[str, Any]:
    """The held-out factual scenes and their removed and masked counterparts: per kind the
    examples (images on the storage grid, float32) and their true object categories."""
    import numpy as np

    from causalvision.data import GeneratedSource, quantize_image, stack_examples
    from causalvision.train.data import dataset_of

    dataset = dataset_of(config.data)
    source = GeneratedSource(dataset, num, seed=SEED_STRIDE * seed + 2)
    factual = stack_examples([source[i] for i in range(num)])
    visible = np.asarray(dataset.visible(factual))
    rng = np.random.default_rng(SEED_STRIDE * seed + 3)
    slots = np.where(visible, rng.random(visible.shape), -1.0).argmax(axis=1)
    removed = dataset.remove_object(factual, slots)
    masked = dataset.mask_object(factual, slots)
    scenes = {}
    for kind, examples in (("factual", factual), ("masked", masked), ("removed", removed)):
        image = examples["image"]
        if kind != "factual":  # rendered in [0, 1]: onto the grid the captioner trained on
            image = quantize_image(dataset, image)
        scenes[kind] = {
            "image": np.asarray(image, np.float32),
            "captions": [str(c) for c in dataset.captions(examples)],
            "objects": dataset.true_objects(examples),
        }
    shapes = dataset.shapes
    hidden = np.asarray([int(factual[f"shape_{k}"][i]) for i, k in enumerate(slots)])
    scenes["hidden"] = [shapes[s] for s in hidden]
    return scenes


def decoder(beam: int) -> Any:
    from flax import nnx

    return nnx.jit(lambda model, images: model.beam_search(images, beam_size=beam)[0])


def caption(model: Any, images: Any, batch: int, decode: Any, vocabulary: Any) -> list[str]:
    """Beam-search captions of `images` in batches of `batch` (the last one padded)."""
    import jax.numpy as jnp
    import numpy as np

    out = []
    for start in range(0, len(images), batch):
        part = images[start : start + batch]
        padded = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
        tokens = np.asarray(decode(model, jnp.asarray(padded)))[: len(part)]
        out += vocabulary.decode(tokens)
    return out


def time_decoding(model: Any, images: Any, batch: int, decode: Any) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    reps = -(-batch // len(images))
    x = jnp.asarray(np.concatenate([images] * reps)[:batch])

    def call() -> float:
        start = time.perf_counter()
        jax.block_until_ready(decode(model, x))
        return time.perf_counter() - start

    first = call()
    times = [call() for _ in range(TIMED_CALLS)]
    median = statistics.median(times)
    return {
        "batch": batch,
        "first_call_s": first,
        "times_s": times,
        "median_s": median,
        "images_per_s": batch / median,
    }


def score(captions: dict[str, list[str]], scenes: dict[str, Any]) -> dict[str, Any]:
    """The metrics of one model's captions of each kind of image."""
    from causalvision.data import get_dataset
    from causalvision.metrics.captioning import (
        ObjectVocabulary,
        bleu,
        chair,
        cider_d,
        object_recall_precision,
    )

    vocabulary = ObjectVocabulary(get_dataset("captioned_scenes").object_vocabulary())
    out: dict[str, Any] = {}
    for kind in KINDS:
        truth = scenes[kind]["objects"]
        row = dict(chair(captions[kind], truth, vocabulary))
        if kind == "factual":
            references = [[c] for c in scenes[kind]["captions"]]
            row["cider_d"] = cider_d(captions[kind], references)
            row["bleu4"] = bleu(captions[kind], references)
            row.update(object_recall_precision(captions[kind], truth, vocabulary))
        else:
            row.update(confounder(captions[kind], scenes, kind, vocabulary))
        out[kind] = row
    return out


def confounder(
    captions: list[str], scenes: dict[str, Any], kind: str, vocabulary: Any
) -> dict[str, Any]:
    """How often the hidden half of the star-triangle pair is named anyway."""
    out = {}
    for hidden, kept in (("star", "triangle"), ("triangle", "star")):
        rows = [
            i
            for i, (shape, objects) in enumerate(
                zip(scenes["hidden"], scenes[kind]["objects"], strict=True)
            )
            if shape == hidden and kept in objects and hidden not in objects
        ]
        named = sum(hidden in vocabulary.mentions(captions[i]) for i in rows)
        out[f"{hidden}_guessed"] = {"scenes": len(rows), "named": named,
                                    "rate": named / len(rows) if rows else None}  # fmt: skip
    return out


def run_seed(seed: int, root: Path, args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from causalvision.train import load_run
    from causalvision.train.data import dataset_of

    record: dict[str, Any] = {}
    baseline = root / f"seed{seed}" / "baseline"
    scenes = held_out_scenes(run_config(args, seed, "baseline", None), args.num, seed)
    decode = decoder(args.beam)
    grid = {"scenes": {k: scenes[k] for k in KINDS}, "captions": {}}
    for model in MODELS:
        tag = f"[seed {seed} {model}]"
        workdir = baseline if model == "baseline" else root / f"seed{seed}" / model[1:]
        config = run_config(args, seed, model, baseline)
        steps = config.trainer.num_steps
        print(f"{tag} training {steps} steps at batch {config.trainer.batch_size} ...", flush=True)
        row: dict[str, Any] = {"train": timed_training(config, workdir)}
        print(f"{tag} trained in {row['train']['train_seconds']:.1f} s, "
              f"{fmt(row['train']['samples_per_s'], '.1f')} samples/s", flush=True)  # fmt: skip
        _, result = load_run(workdir)
        captioner = result.ema_model if result.ema_model is not None else result.model
        vocabulary = dataset_of(config.data).vocabulary()
        row["decode"] = time_decoding(
            captioner, scenes["factual"]["image"], args.decode_batch, decode
        )
        print(f"{tag} beam-{args.beam} decoding {row['decode']['images_per_s']:.1f} images/s "
              f"at batch {args.decode_batch}", flush=True)  # fmt: skip
        captions = {
            kind: caption(captioner, scenes[kind]["image"], args.decode_batch, decode, vocabulary)
            for kind in KINDS
        }
        row.update(score(captions, scenes))
        row["examples"] = {kind: captions[kind][:GRID_SCENES] for kind in KINDS}
        grid["captions"][model] = captions
        print(f"{tag} {args.num} scenes: CIDEr-D {100 * row['factual']['cider_d']:.1f}, "
              f"CHAIR_i factual {100 * row['factual']['chair_i']:.1f}% masked "
              f"{100 * row['masked']['chair_i']:.1f}% removed "
              f"{100 * row['removed']['chair_i']:.1f}%", flush=True)  # fmt: skip
        record[model] = row
    return record, grid


def value_at(row: dict[str, Any], path: tuple[str, ...]) -> float | None:
    for key in path:
        row = row[key]
    return row


def summarise(seeds: dict[int, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per model, per table column: mean and standard deviation over the seeds."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for model in MODELS:
        out[model] = {}
        for _, path, _, _ in COLUMNS:
            values = [value_at(record[model], path) for record in seeds.values()]
            values = [v for v in values if v is not None]
            if not values:
                continue
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[model]["/".join(path)] = {"mean": statistics.fmean(values), "std": std}
    return out


def print_table(summary: dict[str, Any], num_seeds: int) -> None:
    print(f"\nmean ± std over {num_seeds} seed(s)")
    lines = []
    for model, stats in summary.items():
        cells = [model]
        for _, path, scale, spec in COLUMNS:
            stat = stats.get("/".join(path))
            if stat is None:
                cells.append("-")
            else:
                cells.append(
                    f"{format(scale * stat['mean'], spec)} ± {format(scale * stat['std'], spec)}"
                )
        lines.append(cells)
    print_columns(("model", *(c[0] for c in COLUMNS)), lines)


def goals(summary: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    def mean(model: str, key: str) -> float:
        return summary[model][key]["mean"]

    tuned = [m for m in MODELS if m != "baseline"]
    chair_value, chair_met = {}, True
    for model in tuned:
        kinds = {}
        for kind in ("masked", "removed"):
            base, new = mean("baseline", f"{kind}/chair_i"), mean(model, f"{kind}/chair_i")
            reduction = 1.0 - new / base if base > 0 else None
            kinds[kind] = {"baseline": base, "model": new, "reduction": reduction,
                           "met": reduction is not None and reduction >= 0.5}  # fmt: skip
        chair_value[model] = kinds
        chair_met = chair_met and all(k["met"] for k in kinds.values())
    quality_value, quality_met = {}, True
    for model in tuned:
        entry = {}
        for name, key in (
            ("cider_d_points", "factual/cider_d"),
            ("recall_points", "factual/recall"),
        ):
            base, new = 100 * mean("baseline", key), 100 * mean(model, key)
            entry[name] = {"baseline": base, "model": new, "change": new - base,
                           "met": new >= base - 1.0}  # fmt: skip
        quality_value[model] = entry
        quality_met = quality_met and all(e["met"] for e in entry.values())
    rates = {m: mean(m, "decode/images_per_s") for m in MODELS}
    return [
        {"goal": CHAIR_GOAL, "value": chair_value, "met": bool(chair_met)},
        {"goal": QUALITY_GOAL, "value": quality_value, "met": bool(quality_met)},
        {
            "goal": RATE_GOAL,
            "value": {"images_per_s": rates, "batch": args.decode_batch, "beam": args.beam},
            "met": bool(args.decode_batch == GOAL_BATCH and all(r > 0 for r in rates.values())),
        },
    ]


def draw_grid(grid: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scenes = grid["scenes"]
    shown = min(GRID_SCENES, len(scenes["factual"]["image"]))
    fig, axes = plt.subplots(shown, len(KINDS), figsize=(4.2 * len(KINDS), 3.4 * shown),
                             squeeze=False)  # fmt: skip
    for i in range(shown):
        for j, kind in enumerate(KINDS):
            ax = axes[i, j]
            ax.imshow(np.clip(scenes[kind]["image"][i], 0, 255).astype(np.uint8))
            ax.set_xticks([])
            ax.set_yticks([])
            lines = [f"{kind}, true: {scenes[kind]['captions'][i]}"]
            lines += [f"{m}: {c[kind][i]}" for m, c in grid["captions"].items()]
            ax.set_title("\n".join(lines), fontsize=7, loc="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--size", default="cpu", choices=SIZES,
                        help="experiments/captioning.py preset")  # fmt: skip
    parser.add_argument("--steps", type=int, default=None,
                        help="baseline training steps (default: the preset's)")  # fmt: skip
    parser.add_argument("--ft-steps", type=int, default=None,
                        help="steps of each fine-tuning (default: a third of --steps)")  # fmt: skip
    parser.add_argument("--train-size", type=int, default=None,
                        help="training scenes (default: the preset's)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=None,
                        help="training batch (default: the preset's)")  # fmt: skip
    parser.add_argument("--num", type=int, default=256, help="held-out scenes evaluated")
    parser.add_argument("--beam", type=int, default=3, help="beam size of the decoding")
    parser.add_argument("--decode-batch", type=int, default=GOAL_BATCH,
                        help="images per decoding call (timed and evaluated)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="where runs go (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary runs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    args.seeds = parse_seeds(parser, args.seeds)
    from causalvision.train import load_config

    preset = load_config(f"{EXPERIMENT}:{args.size}")
    if args.steps is None:
        args.steps = preset.trainer.num_steps
    if args.ft_steps is None:
        args.ft_steps = max(1, args.steps // 3)
    if args.train_size is None:
        args.train_size = preset.data.size
    if args.batch is None:
        args.batch = preset.trainer.batch_size
    require_positive(
        parser, args, ("steps", "ft_steps", "train_size", "batch", "num", "beam", "decode_batch")
    )
    if args.batch > args.train_size:
        parser.error(f"--batch {args.batch} is larger than --train-size {args.train_size}")
    if args.workdir is not None:
        runs = [args.workdir / f"seed{s}" for s in args.seeds]
        taken = [run for run in runs if run.exists()]
        if taken:
            parser.error(f"--workdir: {taken[0]} exists (runs would resume); choose another")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import jax

    if "JAX_PLATFORMS" not in os.environ:
        jax.config.update("jax_platforms", "cpu")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="cf_captioning-"))
    start = time.perf_counter()
    seeds, grid = {}, None
    try:
        for seed in args.seeds:
            seeds[seed], seed_grid = run_seed(seed, root, args)
            grid = grid or seed_grid
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    minutes = (time.perf_counter() - start) / 60
    summary = summarise(seeds)
    print_table(summary, len(seeds))
    checks = goals(summary, args)
    print()
    for check in checks:
        print(f"{'met' if check['met'] else 'NOT met'}: {check['goal']}")
    png = args.output.with_suffix(".png")
    draw_grid(grid, png)
    kept = args.workdir is not None or args.keep
    if kept:
        print(f"runs kept in {root}")
    write_results(
        args,
        args.output,
        machine=jax_machine_info(["jax", "flax", "optax", "numpy"], None),
        timings={"minutes": minutes},
        workdir=str(root) if kept else None,
        fine_tuning={"steps": args.ft_steps, "learning_rate_factor": FT_LR_FACTOR},
        seeds={str(s): r for s, r in seeds.items()},
        summary=summary,
        chart=str(png.relative_to(ROOT) if png.is_relative_to(ROOT) else png),
        goals=checks,
    )
    return 0


if __name__ == "__main__":
    run_main(main, "cf_captioning")
