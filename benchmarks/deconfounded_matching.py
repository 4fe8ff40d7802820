"""Issue 17: DCIN-style deconfounded image-text matching against the plain head, by recall@K
on captioned scenes, both on held-out scenes and on scenes whose star-triangle confounder is
broken.

1. The captioner: `--captioner RUN` (a `captioning` run's workdir), or a baseline trained here
   with `experiments/captioning.py:{--size}` (default "cpu") for `--steps` steps (default:
   the preset's). Its EMA model when it keeps one, else its model.
2. Features, frozen, per scene: the image's are the captioner's encoder memory `[T, W]`
   mean- and max-pooled over its T positions (`[2W]`); the caption's are its unigram and
   adjacent-bigram counts over the dataset's vocabulary (`[V + V²]`, scaled to unit length),
   a bag-of-words text encoder.
3. Pairs: `--train-size` training scenes (data seed 1000 + seed), `--num` held-out scenes
   (seed 2000 + seed) and the same held-out scenes with the confounder broken: do(shape_1 :=
   a shape drawn uniformly from circle, square, triangle and diamond), re-rendered, so a
   triangle no longer implies a star (P(star | triangle) drops from 1 to 0.4, and P(triangle
   | star) from 0.9 to 0.25). Images are on the uint8 storage grid the captioner trained on.
4. Heads, for each seed of `--seeds`: `causalvision.nn.DeconfoundedMatching` with the same
   projections (`rngs` seeded by the seed), plain (`deconfound=False`) and deconfounded, with
   the intra- and inter-modal dictionaries each `--prototypes` k-means prototypes of the
   training features and their cluster frequencies as the prior
   (`causalvision.nn.confounder_dictionary`). Each trains `--head-steps` steps of Adam
   (`--lr`) on `causalvision.losses.info_nce` (temperature `--temperature`) over random
   batches of `--batch` training pairs, the batch order seeded by the seed.
5. Scores: `causalvision.metrics.recall_at_k` (K = 1, 5, 10) image → text and text → image
   over the held-out gallery, an image matching every text equal to its own caption.

Results are the mean ± standard deviation over seeds. Goal (issue 17): the DCIN-style head's
recall@K on the captioned scenes, reported with and without deconfounding (`met` when every
figure is measured and finite; the comparison is reported as it comes out).

    .venv/bin/python benchmarks/deconfounded_matching.py                    # ~5 min, 2 cores
    .venv/bin/python benchmarks/deconfounded_matching.py --size tiny --steps 4 --seeds 0 \\
        --train-size 64 --num 32 --head-steps 5 --prototypes 4 --output /tmp/m.json  # smoke

Prints a progress line per stage and a table; writes `benchmarks/results/
deconfounded_matching.json` (`--output`: the command, the machine, every timing, the per-seed
recalls, their means and standard deviations, the goal) and beside it a `.png` of the recalls
with their spreads.
"""

from __future__ import annotations

import argparse
import os
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
    jax_machine_info,
    parse_seeds,
    print_columns,
    require_positive,
    run_main,
    timed_training,
    write_results,
)

RESULTS = ROOT / "benchmarks" / "results" / "deconfounded_matching.json"
EXPERIMENT = ROOT / "experiments" / "captioning.py"
SIZES = ("cpu", "tiny", "default")
HEADS = ("plain", "deconfounded")
SPLITS = ("held_out", "confounder_broken")
K_VALUES = (1, 5, 10)
TRAIN_SEED, TEST_SEED = 1000, 2000  # scene seeds, + the run's seed
ENCODE_BATCH = 256
BROKEN_SHAPES = ("circle", "square", "triangle", "diamond")
GOAL = (
    "DCIN-style matching head's image->text and text->image recall@1/5/10 on captioned "
    "scenes (held out, and with the star-triangle confounder broken), with and without "
    "deconfounding"
)


def train_captioner(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import dataclasses

    from causalvision.train import load_config

    config = load_config(f"{EXPERIMENT}:{args.size}")
    steps = args.steps or config.trainer.num_steps
    trainer = dataclasses.replace(
        config.trainer,
        num_steps=steps,
        log_every=max(1, steps // 20),
        eval_every=None,
        checkpoint_every=steps,
        progress=False,
        warmup_steps=min(config.trainer.warmup_steps, max(0, steps - 1)),
    )
    config = dataclasses.replace(config, trainer=trainer)
    print(f"[captioner] training {steps} steps of {args.size} ...", flush=True)
    figures = timed_training(config, workdir)
    print(f"[captioner] trained in {figures['train_seconds']:.1f} s", flush=True)
    return figures


def load_captioner(run: Path) -> tuple[Any, Any]:
    """The run's captioner (its EMA model when kept) and its dataset."""
    from causalvision.train import load_run
    from causalvision.train.data import dataset_of

    config, result = load_run(run)
    if config.task != "captioning":
        raise ValueError(f"--captioner: {run} holds a {config.task!r} run, not a captioning run")
    model = result.ema_model if result.ema_model is not None else result.model
    return model, dataset_of(config.data)


def scenes(dataset: Any, num: int, seed: int, *, broken: bool = False) -> dict[str, Any]:
    """`num` scenes drawn with `seed` (with do(shape_1) when `broken`): storage-grid images
    float32, captions and P(star | triangle) in them."""
    import numpy as np

    from causalvision.data import GeneratedSource, quantize_image, stack_examples

    source = GeneratedSource(dataset, num, seed=seed)
    examples = stack_examples([source[i] for i in range(num)])
    image = examples["image"]
    if broken:
        rng = np.random.default_rng(seed)
        choices = np.asarray([dataset.shapes.index(s) for s in BROKEN_SHAPES], np.int32)
        examples = dataset.counterfactual(examples, {"shape_1": rng.choice(choices, num)})
        image = quantize_image(dataset, examples["image"])
    return {
        "image": np.asarray(image, np.float32),
        "captions": [str(c) for c in dataset.captions(examples)],
        "star_given_triangle": star_given_triangle(examples, dataset),
    }


def image_features(captioner: Any, images: Any) -> Any:
    """Mean- and max-pooled encoder memory: `[N, H, W, C]` -> `[N, 2W]` float32."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    @nnx.jit
    def encode(model, x):
        memory = model.encode(x)
        return jnp.concatenate([memory.mean(axis=1), memory.max(axis=1)], axis=-1)

    parts = []
    for start in range(0, len(images), ENCODE_BATCH):
        part = images[start : start + ENCODE_BATCH]
        padded = np.concatenate([part, np.repeat(part[-1:], ENCODE_BATCH - len(part), axis=0)])
        parts.append(np.asarray(encode(captioner, jnp.asarray(padded)))[: len(part)])
    return np.concatenate(parts)


def text_features(captions: list[str], vocabulary: Any) -> Any:
    """Unigram and adjacent-bigram counts of each caption's words, unit length: `[N, V + V²]`."""
    import numpy as np

    size = len(vocabulary.tokens)
    out = np.zeros((len(captions), size + size * size), np.float32)
    for row, caption in enumerate(captions):
        ids = vocabulary.lookup(caption)
        np.add.at(out[row], ids, 1.0)
        np.add.at(out[row], size + size * np.asarray(ids[:-1]) + np.asarray(ids[1:]), 1.0)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def caption_matches(captions: list[str]) -> Any:
    """`[N, N]` bool: image i matches text j when their captions are equal."""
    import numpy as np

    keys = np.unique(np.asarray(captions), return_inverse=True)[1]
    return keys[:, None] == keys[None, :]


def dictionaries(train: dict[str, Any], prototypes: int, seed: int) -> dict[str, Any]:
    """k-means prototypes and cluster-frequency priors of the training features."""
    import jax

    from causalvision.nn import confounder_dictionary

    image_key, text_key = jax.random.split(jax.random.key(seed))
    out = {}
    for name, key in (("image", image_key), ("text", text_key)):
        z, p = confounder_dictionary(
            lambda f: f, {name: train[name]}, image_key=name, key=key,
            num_prototypes=prototypes, progress=False,
        )  # fmt: skip
        out[f"{name}_dictionary"], out[f"{name}_prior"] = z, p
    return out


def train_head(
    deconfound: bool, train: dict[str, Any], adjustments: dict[str, Any], seed: int, args: Any
) -> tuple[Any, dict[str, Any]]:
    """A matching head trained with InfoNCE on random batches of training pairs."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from causalvision.losses import info_nce
    from causalvision.nn import DeconfoundedMatching

    images, texts = train["image"], train["text"]
    head = DeconfoundedMatching(
        images.shape[1], texts.shape[1], args.embed, deconfound=deconfound,
        rngs=nnx.Rngs(seed), **(adjustments if deconfound else {}),
    )  # fmt: skip
    optimizer = nnx.Optimizer(head, optax.adam(args.lr), wrt=nnx.Param)

    @nnx.jit
    def step(head, optimizer, x, y, matches):
        def loss(head):
            return info_nce(head(x, y), args.temperature, matches)

        value, grads = nnx.value_and_grad(loss)(head)
        optimizer.update(head, grads)
        return value

    rng = np.random.default_rng(seed)
    losses, start = [], time.perf_counter()
    for _ in range(args.head_steps):
        rows = rng.choice(len(images), args.batch, replace=False)
        matches = jnp.asarray(train["matches"][np.ix_(rows, rows)])
        losses.append(float(step(head, optimizer, images[rows], texts[rows], matches)))
    jax.block_until_ready(nnx.state(head))
    seconds = time.perf_counter() - start
    return head, {"seconds": seconds, "first_loss": losses[0], "last_loss": losses[-1]}


def recalls(head: Any, split: dict[str, Any]) -> dict[str, float]:
    import numpy as np
    from flax import nnx

    from causalvision.metrics import recall_at_k

    similarity = np.asarray(nnx.jit(lambda h, x, y: h(x, y))(head, split["image"], split["text"]))
    return recall_at_k(similarity, K_VALUES, split["matches"])


def star_given_triangle(examples: dict[str, Any], dataset: Any) -> float | None:
    """The share of scenes holding a triangle that also hold a star (seen or hidden): 1 by
    construction in the dataset's own scenes, lower once the confounder is broken."""
    import numpy as np

    shapes = np.stack(
        [np.where(np.asarray(examples[f"present_{k}"]) == 1, examples[f"shape_{k}"], -1)
         for k in range(dataset.max_objects)], axis=1,
    )  # fmt: skip
    triangle = (shapes == dataset.shapes.index("triangle")).any(axis=1)
    star = (shapes == dataset.shapes.index("star")).any(axis=1)
    return float(star[triangle].mean()) if triangle.any() else None


def features(captioner: Any, dataset: Any, examples: dict[str, Any]) -> dict[str, Any]:
    return {
        "image": image_features(captioner, examples["image"]),
        "text": text_features(examples["captions"], dataset.vocabulary()),
        "matches": caption_matches(examples["captions"]),
        "scenes": {
            "distinct_captions": len(set(examples["captions"])),
            "star_given_triangle": examples["star_given_triangle"],
        },
    }


def run_seed(seed: int, captioner: Any, dataset: Any, args: Any) -> dict[str, Any]:
    tag = f"[seed {seed}]"
    start = time.perf_counter()
    train = features(captioner, dataset, scenes(dataset, args.train_size, TRAIN_SEED + seed))
    test_scenes = {
        split: scenes(dataset, args.num, TEST_SEED + seed, broken=split == "confounder_broken")
        for split in SPLITS
    }
    splits = {split: features(captioner, dataset, test_scenes[split]) for split in SPLITS}
    adjustments = dictionaries(train, args.prototypes, seed)
    record: dict[str, Any] = {"features_seconds": time.perf_counter() - start}
    print(f"{tag} features of {args.train_size} + 2 x {args.num} scenes in "
          f"{record['features_seconds']:.1f} s", flush=True)  # fmt: skip
    for name in HEADS:
        head, training = train_head(name == "deconfounded", train, adjustments, seed, args)
        row = {"train": training, **{split: recalls(head, splits[split]) for split in SPLITS}}
        print(f"{tag} {name}: {args.head_steps} steps in {training['seconds']:.1f} s, loss "
              f"{training['first_loss']:.3f} -> {training['last_loss']:.3f}; i2t R@1 "
              f"{100 * row['held_out']['i2t_r1']:.1f}% held out, "
              f"{100 * row['confounder_broken']['i2t_r1']:.1f}% confounder broken",
              flush=True)  # fmt: skip
        record[name] = row
    record["scenes"] = {s: splits[s]["scenes"] for s in SPLITS}
    return record


def summarise(seeds: dict[int, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per head, per "split/metric": mean and standard deviation over seeds."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for head in HEADS:
        out[head] = {}
        for split in SPLITS:
            for metric in next(iter(seeds.values()))[head][split]:
                values = [record[head][split][metric] for record in seeds.values()]
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                out[head][f"{split}/{metric}"] = {"mean": statistics.fmean(values), "std": std}
    return out


def print_table(summary: dict[str, Any], num_seeds: int) -> None:
    metrics = [f"{d}_r{k}" for d in ("i2t", "t2i") for k in K_VALUES]
    print(f"\nrecall@K (%), mean ± std over {num_seeds} seed(s)")
    lines = []
    for split in SPLITS:
        for head in HEADS:
            cells = [summary[head][f"{split}/{m}"] for m in metrics]
            lines.append([split, head, *(f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f}"
                                         for c in cells)])  # fmt: skip
    print_columns(["scenes", "head", *metrics], lines)


def goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    import math

    values = {
        f"{head}/{key}": round(cell["mean"], 4)
        for head in HEADS
        for key, cell in summary[head].items()
    }
    return [{"goal": GOAL, "value": values, "met": all(map(math.isfinite, values.values()))}]


def draw_chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [f"{d}_r{k}" for d in ("i2t", "t2i") for k in K_VALUES]
    figure, axes = plt.subplots(1, len(SPLITS), figsize=(11, 3.6), sharey=True)
    x = np.arange(len(metrics))
    for ax, split in zip(axes, SPLITS, strict=True):
        for offset, head in zip((-0.2, 0.2), HEADS, strict=True):
            cells = [summary[head][f"{split}/{m}"] for m in metrics]
            ax.bar(x + offset, [100 * c["mean"] for c in cells], 0.4, label=head,
                   yerr=[100 * c["std"] for c in cells], capsize=2)  # fmt: skip
        ax.set_xticks(x, metrics, rotation=30)
        ax.set_title(split.replace("_", " "))
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("recall (%)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated head seeds")
    parser.add_argument("--captioner", type=Path, default=None,
                        help="a trained captioning run's workdir (default: train one)")  # fmt: skip
    parser.add_argument("--size", default="cpu", choices=SIZES,
                        help="preset of experiments/captioning.py to train")  # fmt: skip
    parser.add_argument("--steps", type=int, default=None,
                        help="its training steps (default: the preset's)")  # fmt: skip
    parser.add_argument("--train-size", type=int, default=8192, help="training pairs")
    parser.add_argument("--num", type=int, default=1000, help="held-out scenes (gallery)")
    parser.add_argument("--head-steps", type=int, default=1500, help="head training steps")
    parser.add_argument("--batch", type=int, default=256, help="head training batch")
    parser.add_argument("--embed", type=int, default=128, help="joint space width E")
    parser.add_argument("--prototypes", type=int, default=16, help="prototypes per dictionary")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    args.seeds = parse_seeds(parser, args.seeds)
    if args.steps is not None:
        require_positive(parser, args, ("steps",))
    require_positive(
        parser, args, ("train_size", "num", "head_steps", "batch", "embed", "prototypes")
    )
    for option in ("lr", "temperature"):
        if not getattr(args, option) > 0:
            parser.error(f"--{option}: expected > 0, got {getattr(args, option)}")
    if args.batch > args.train_size:
        parser.error(f"--batch {args.batch} is larger than --train-size {args.train_size}")
    if args.prototypes > args.train_size:
        parser.error(f"--prototypes {args.prototypes} is larger than --train-size "
                     f"{args.train_size}")  # fmt: skip
    if args.num < max(K_VALUES):
        parser.error(f"--num: expected >= {max(K_VALUES)} (the largest K), got {args.num}")
    if args.captioner is not None and not (args.captioner / "config.json").exists():
        parser.error(f"--captioner: {args.captioner} holds no run (no config.json)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import jax

    if "JAX_PLATFORMS" not in os.environ:
        jax.config.update("jax_platforms", "cpu")
    start = time.perf_counter()
    timings: dict[str, Any] = {}
    scratch = None
    try:
        run = args.captioner
        if run is None:
            scratch = Path(tempfile.mkdtemp(prefix="deconfounded_matching-"))
            run = scratch / "captioner"
            timings["captioner_training"] = train_captioner(args, run)
        try:
            captioner, dataset = load_captioner(run)
        except ValueError as error:
            raise Failure(str(error)) from None
        seeds = {seed: run_seed(seed, captioner, dataset, args) for seed in args.seeds}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    timings["minutes"] = (time.perf_counter() - start) / 60
    summary = summarise(seeds)
    print_table(summary, len(seeds))
    checks = goals(summary)
    print()
    for check in checks:
        print(f"{'met' if check['met'] else 'NOT met'}: {check['goal']}")
    png = args.output.with_suffix(".png")
    draw_chart(summary, png)
    write_results(
        args,
        args.output,
        machine=jax_machine_info(["jax", "flax", "optax", "numpy"], None),
        timings=timings,
        captioner=str(args.captioner) if args.captioner else f"trained here: {args.size}",
        seeds={str(s): r for s, r in seeds.items()},
        summary=summary,
        chart=str(png.relative_to(ROOT) if png.is_relative_to(ROOT) else png),
        goals=checks,
    )
    return 0


if __name__ == "__main__":
    run_main(main, "deconfounded_matching")
