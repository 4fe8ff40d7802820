"""OC-CRL's data-efficiency claim (REFERENCE §6.3): slot encoder vs a flat encoder of the same
latent size, trained on the same sparse perturbation pairs, at several pair counts.

Data: `SpriteScenes` with a fixed number of objects (default 3 at 32 px); each pair moves one
object's x or y (`perturbation_pairs(properties=("x", "y"))`). The latent loss is OC-CRL's
known-offset-unknown-slot mechanism: the true offset, in standardised property units
(offset / the sampling range's std), is a single candidate added to one slot of z₁, the best
slot chosen per scene, slots matched greedily (`sparse_offset_loss(candidates=(B, 1, P))`).

- slot model (`OCCRLModel`): the latent loss + w_recons · the autoencoder's reconstruction MSE
  of both images; x₂'s slots start from x₁'s final slots;
- flat model (`FlatEncoder`): a CNN to one latent of K·D numbers (as many as the K slots of D),
  the same projection head to z `(K·P,)` reshaped to `(K, P)`, and the slot model's decoder
  (`SpatialBroadcastDecoder`, same widths) on the latent: the same latent loss and the same
  w_recons · reconstruction MSE. The only difference left is the slots.

Both train for the same number of steps and batch size at every pair count (fewer pairs =
more passes over them), from each of `--seeds` (model initialisation, batch order and the
slot noise; the pairs are shared). Scored on fresh scenes:

- slot model: `matched_r2` of z per slot against the true (x, y) of each object, slots matched
  to objects by IoU of the decoder's masks with the true instance masks (no property read);
  also the probe-matched R² (optimistic; `matched_r2` docstring);
- flat model: `linear_r2` of z `(K·P,)` against all objects' (x, y) in the generator's slot
  order `(M·2,)` (it faces the permutation problem by design), and for comparison the
  probe-matched R² of its K rows as if they were slots;
- `permutation_disentanglement` of each (slot: matched slot z vs that object's properties;
  flat: z vs all objects' properties in generator order).

R² is scored on held-out scenes (`fit_fraction=0.5`: the linear read-out is fitted on half the
test scenes, scored on the other half). The table gives the mean and standard deviation over
seeds; the goal compares the means.

    .venv/bin/python benchmarks/oc_crl_data_efficiency.py            # ~35 min on 2 cores
    .venv/bin/python benchmarks/oc_crl_data_efficiency.py --pairs 64 --steps 5 --seeds 0 \\
        --test-size 64 --output /tmp/oc_crl.json                      # a smoke run

Writes a table, `benchmarks/results/oc_crl_data_efficiency.json` and `.png` (R² vs pairs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT, host_info, print_columns, write_results

PROPERTIES = ("x", "y")
GOAL = (
    "slot model's R² exceeds the flat model's (same latent size, same reconstruction term; mean "
    "over seeds) at every pair count (OC-CRL's data-efficiency claim)"
)


def make_data(args: argparse.Namespace) -> dict[str, Any]:
    import jax

    from causalvision.data import SpriteScenes
    from causalvision.data.scenes import PROPERTIES as ALL
    from causalvision.data.scenes import RANGES

    data = SpriteScenes(args.objects, args.objects, args.image_size)
    first, second, changed = data.perturbation_pairs(
        jax.random.key(args.seed), max(args.pairs), 1, PROPERTIES
    )
    # The true offset as a P-vector in standardised units, one candidate per pair (B, 1, P).
    prop = np.asarray(changed["property"])[:, 0]
    delta = np.asarray(changed["new"] - changed["old"])[:, 0]
    offsets = np.zeros((len(prop), 1, len(PROPERTIES)), np.float32)
    for j, name in enumerate(PROPERTIES):
        low, high = RANGES[name]
        hit = prop == ALL.index(name)
        offsets[hit, 0, j] = delta[hit] / ((high - low) / np.sqrt(12.0))
    test = data.sample(jax.random.key(args.seed + 1), args.test_size)
    objects = data.objects(test)
    masks = np.asarray(data.instance_masks(test))
    true_masks = masks[:, None] == np.arange(1, args.objects + 1)[None, :, None, None]
    return {
        "first": np.asarray(first["image"]) * 2 - 1,
        "second": np.asarray(second["image"]) * 2 - 1,
        "offsets": offsets,
        "test_images": np.asarray(test["image"]) * 2 - 1,
        "targets": np.stack([np.asarray(objects[p]) for p in PROPERTIES], -1),  # (N, M, P)
        "present": np.asarray(objects["present"]),
        "true_masks": true_masks,
    }


SLOT_SIZE = 32
DECODER = {"decoder_initial": 8, "decoder_widths": (16, 16), "decoder_kernel": 3}


def build(kind: str, args: argparse.Namespace, seed: int) -> Any:
    from flax import nnx

    from causalvision.nn import FlatEncoder, OCCRLModel, SlotAttentionAutoEncoderConfig

    p = len(PROPERTIES)
    if kind == "slot":
        config = SlotAttentionAutoEncoderConfig(
            resolution=args.image_size,
            num_slots=args.slots,
            slot_size=SLOT_SIZE,
            num_iterations=3,
            mlp_hidden=64,
            encoder_widths=(32, 32, 32),
            encoder_kernel=3,
            encoder_strides=(2, 1, 1),
            implicit_grad=True,
            **DECODER,
        )
        return OCCRLModel(config, p, head_hidden=64, rngs=nnx.Rngs(seed))
    return FlatEncoder(
        args.image_size,
        3,
        args.slots,
        p,
        widths=(32, 32, 32),
        hidden=128,
        latent_size=args.slots * SLOT_SIZE,
        head_hidden=64,
        rngs=nnx.Rngs(seed),
        **DECODER,
    )


def train(
    kind: str, num_pairs: int, data: dict[str, Any], args: argparse.Namespace, seed: int
) -> Any:
    import jax
    import optax
    from flax import nnx

    from causalvision.losses import occrl_objective, sparse_offset_loss

    model = build(kind, args, seed)
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)

    def loss_fn(model, x1, x2, offsets, key):
        a, b = model.pair(x1, x2, key=key) if kind == "slot" else model.pair(x1, x2)
        recons = 0.5 * (a["mse"] + b["mse"])
        latent = sparse_offset_loss(a["z"], b["z"], candidates=offsets)
        return occrl_objective(latent, recons, w_latent=1.0, w_recons=args.w_recons), latent

    @nnx.jit
    def step(model, optimizer, x1, x2, offsets, key):
        (loss, latent), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
            model, x1, x2, offsets, key
        )
        optimizer.update(model, grads)
        return loss, latent

    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    losses = []
    for i in range(args.steps):
        idx = rng.choice(num_pairs, args.batch, replace=num_pairs < args.batch)
        key, sub = jax.random.split(key)
        loss, latent = step(
            model, optimizer, data["first"][idx], data["second"][idx], data["offsets"][idx], sub
        )
        if i % 50 == 0 or i == args.steps - 1:
            losses.append((i, float(loss), float(latent)))
    return model, losses


def encode_test(kind: str, model: Any, data: dict[str, Any], args: argparse.Namespace):
    import jax
    from flax import nnx

    @nnx.jit
    def run(model, images, key):
        if kind == "slot":
            out = model(images, key=key)
            return out["z"], out["masks"][..., 0]
        return model(images)["z"], None

    zs, masks = [], []
    for start in range(0, len(data["test_images"]), 128):
        z, m = run(model, data["test_images"][start : start + 128], jax.random.key(7))
        zs.append(np.asarray(z))
        if m is not None:
            masks.append(np.asarray(m))
    return np.concatenate(zs), (np.concatenate(masks) if masks else None)


def score(kind: str, z: np.ndarray, masks: np.ndarray | None, data: dict[str, Any]) -> dict:
    from causalvision.metrics.objects import (
        linear_r2,
        matched_r2,
        permutation_disentanglement,
    )

    targets, present = data["targets"], data["present"]
    n = len(z)
    probe = matched_r2(z, targets, present, fit_fraction=0.5)
    out: dict[str, Any] = {"probe_matched_r2": probe.r2.tolist()}
    if kind == "slot":
        matched = matched_r2(
            z, targets, present, slot_masks=masks, true_masks=data["true_masks"], fit_fraction=0.5
        )
        out["mask_matched_r2"] = matched.r2.tolist()
        rows, objs = np.nonzero(matched.assignment >= 0)
        slot_z = z[rows, matched.assignment[rows, objs]]
        perm = permutation_disentanglement(slot_z, targets[rows, objs])
        out["r2"] = float(np.mean(matched.r2))
        out["r2_rule"] = "matched_r2, slots matched to objects by mask IoU"
    else:
        flat_targets = targets.reshape(n, -1)
        r2 = linear_r2(z.reshape(n, -1), flat_targets, fit_fraction=0.5)
        out["linear_r2"] = r2.tolist()
        perm = permutation_disentanglement(z.reshape(n, -1), flat_targets)
        out["r2"] = float(np.mean(r2))
        out["r2_rule"] = "linear_r2 of z (K·P) vs all objects' (x, y) in generator order"
    out["permutation_disentanglement"] = perm.score
    return out


def summary(rows: list[dict[str, Any]], kind: str, pairs: int, field: str) -> tuple[float, float]:
    """Mean and standard deviation over seeds of one row field (a list field is averaged)."""
    values = [float(np.mean(r[field])) for r in rows if r["model"] == kind and r["pairs"] == pairs]
    return float(np.mean(values)), float(np.std(values))


def chart(rows: list[dict[str, Any]], pairs: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    lines = (
        ("slot", "r2", "slot model: mask-matched R²", "o-", 1.0),
        ("flat", "r2", "flat model: linear R² (generator order)", "s-", 1.0),
        ("slot", "probe_matched_r2", "slot model: probe-matched R² (optimistic)", "o--", 0.6),
        ("flat", "probe_matched_r2", "flat model: probe-matched R² (optimistic)", "s--", 0.6),
    )
    for kind, field, label, style, alpha in lines:
        stats = [summary(rows, kind, p, field) for p in pairs]
        ax.errorbar(
            pairs,
            [m for m, _ in stats],
            yerr=[sd for _, sd in stats],
            fmt=style,
            alpha=alpha,
            capsize=3,
            label=label,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("perturbation pairs")
    ax.set_ylabel("held-out R² (mean over x, y; ± sd over seeds)")
    ax.set_title("OC-CRL data efficiency on SpriteScenes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--steps", type=int, default=500, help="training steps per run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--w-recons", type=float, default=1.0)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4, help="K (the flat latent has K·D dims)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--test-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0, help="the data's seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "oc_crl_data_efficiency.json",
    )
    args = parser.parse_args(argv)
    args.pairs = sorted(args.pairs)
    start = time.perf_counter()
    data = make_data(args)
    data_seconds = time.perf_counter() - start
    rows = []
    for seed in args.seeds:
        for num_pairs in args.pairs:
            for kind in ("slot", "flat"):
                t0 = time.perf_counter()
                model, losses = train(kind, num_pairs, data, args, seed)
                t1 = time.perf_counter()
                z, masks = encode_test(kind, model, data, args)
                row = {"model": kind, "pairs": num_pairs, "seed": seed}
                row.update(score(kind, z, masks, data))
                row.update(train_seconds=t1 - t0, eval_seconds=time.perf_counter() - t1)
                row["loss_trace"] = losses
                rows.append(row)
                print(
                    f"seed {seed} {kind:4s} pairs={num_pairs:5d} R²={row['r2']:.3f} "
                    f"probe={np.round(row['probe_matched_r2'], 3).tolist()} "
                    f"perm={row['permutation_disentanglement']:.3f} "
                    f"loss={losses[-1][1]:.4f} ({row['train_seconds']:.0f}s)",
                    flush=True,
                )
    minutes = (time.perf_counter() - start) / 60

    def cell(kind: str, num_pairs: int, field: str) -> str:
        mean, sd = summary(rows, kind, num_pairs, field)
        return f"{mean:.3f} ± {sd:.3f}"

    table = [
        [
            str(num_pairs),
            cell("slot", num_pairs, "r2"),
            cell("slot", num_pairs, "probe_matched_r2"),
            cell("slot", num_pairs, "permutation_disentanglement"),
            cell("flat", num_pairs, "r2"),
            cell("flat", num_pairs, "probe_matched_r2"),
            cell("flat", num_pairs, "permutation_disentanglement"),
        ]
        for num_pairs in args.pairs
    ]
    print()
    print_columns(
        [
            "pairs",
            "slot R² (masks)",
            "slot R² (probe)",
            "slot perm",
            "flat linear R²",
            "flat R² (probe)",
            "flat perm",
        ],
        table,
    )
    margins = [
        summary(rows, "slot", p, "r2")[0] - summary(rows, "flat", p, "r2")[0] for p in args.pairs
    ]
    probe_margins = [
        summary(rows, "slot", p, "probe_matched_r2")[0]
        - summary(rows, "flat", p, "probe_matched_r2")[0]
        for p in args.pairs
    ]
    checks = [
        {
            "goal": GOAL,
            "value": {
                "min_margin_slot_minus_flat": round(min(margins), 4),
                "margins": [round(m, 4) for m in margins],
                "probe_matched_margins": [round(m, 4) for m in probe_margins],
                "seeds": len(args.seeds),
            },
            "met": bool(min(margins) > 0),
        }
    ]
    for check in checks:
        print(f"{'met' if check['met'] else 'NOT met'}: {check['goal']} ({check['value']})")
    png = args.output.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    chart(rows, args.pairs, png)
    write_results(
        args,
        args.output,
        machine=host_info(["jax", "flax", "optax", "numpy", "scipy"]),
        timings={"data_seconds": data_seconds, "minutes": minutes},
        properties=list(PROPERTIES),
        rows=rows,
        chart=str(png.relative_to(ROOT) if png.is_relative_to(ROOT) else png),
        goals=checks,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
