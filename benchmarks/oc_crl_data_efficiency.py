"""OC-CRL's data-efficiency claim (REFERENCE §6.3): slot encoder vs a flat encoder of the same
latent size, trained on the same sparse perturbation pairs, at several pair counts.

Data: `SpriteScenes` with a fixed number of objects (default 3 at 32 px); each pair moves one
object's x or y (`perturbation_pairs(properties=("x", "y"))`). The latent loss is OC-CRL's
known-offset-unknown-slot mechanism: the true offset, in standardised property units
(offset / the sampling range's std), is a single candidate added to one slot of z₁, the best
slot chosen per scene, slots matched greedily (`sparse_offset_loss(candidates=(B, 1, P))`).

- slot model (`OCCRLModel`): the latent loss + w_recons · the autoencoder's reconstruction MSE
  of both images; x₂'s slots start from x₁'s final slots;
- flat model (`FlatEncoder`, z `(K·P,)` reshaped to `(K, P)`): the same latent loss (no
  decoder: it has no reconstruction term).

Both train for the same number of steps and batch size at every pair count (fewer pairs =
more passes over them). Scored on fresh scenes:

- slot model: `matched_r2` of z per slot against the true (x, y) of each object, slots matched
  to objects by IoU of the decoder's masks with the true instance masks (no property read);
  also the probe-matched R² (optimistic; `matched_r2` docstring);
- flat model: `linear_r2` of z `(K·P,)` against all objects' (x, y) in the generator's slot
  order `(M·2,)` (it faces the permutation problem by design), and for comparison the
  probe-matched R² of its K rows as if they were slots;
- `permutation_disentanglement` of each (slot: matched slot z vs that object's properties;
  flat: z vs all objects' properties in generator order).

R² is scored on held-out scenes (`fit_fraction=0.5`: the linear read-out is fitted on half the
test scenes, scored on the other half).

    .venv/bin/python benchmarks/oc_crl_data_efficiency.py            # ~10 min on 2 cores
    .venv/bin/python benchmarks/oc_crl_data_efficiency.py --pairs 64 --steps 5 \\
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
from _common import ROOT, fmt, host_info, print_columns, write_results

PROPERTIES = ("x", "y")
GOAL = (
    "slot model's R² exceeds the flat model's at every pair count (OC-CRL's data-efficiency claim)"
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


def build(kind: str, args: argparse.Namespace, seed: int) -> Any:
    from flax import nnx

    from causalvision.nn import FlatEncoder, OCCRLModel, SlotAttentionAutoEncoderConfig

    p = len(PROPERTIES)
    if kind == "slot":
        config = SlotAttentionAutoEncoderConfig(
            resolution=args.image_size,
            num_slots=args.slots,
            slot_size=32,
            num_iterations=3,
            mlp_hidden=64,
            encoder_widths=(32, 32, 32),
            encoder_kernel=3,
            encoder_strides=(2, 1, 1),
            decoder_initial=8,
            decoder_widths=(16, 16),
            decoder_kernel=3,
            implicit_grad=True,
        )
        return OCCRLModel(config, p, head_hidden=64, rngs=nnx.Rngs(seed))
    return FlatEncoder(
        args.image_size,
        3,
        args.slots,
        p,
        widths=(32, 32, 32),
        hidden=128,
        head_hidden=64,
        rngs=nnx.Rngs(seed),
    )


def train(kind: str, num_pairs: int, data: dict[str, Any], args: argparse.Namespace) -> Any:
    import jax
    import optax
    from flax import nnx

    from causalvision.losses import occrl_objective, sparse_offset_loss

    model = build(kind, args, args.seed)
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)

    def loss_fn(model, x1, x2, offsets, key):
        if kind == "slot":
            a, b = model.pair(x1, x2, key=key)
            recons = 0.5 * (a["mse"] + b["mse"])
        else:
            a, b = model.pair(x1, x2)
            recons = 0.0
        latent = sparse_offset_loss(a["z"], b["z"], candidates=offsets)
        w_recons = args.w_recons if kind == "slot" else 0.0
        return occrl_objective(latent, recons, w_latent=1.0, w_recons=w_recons), latent

    @nnx.jit
    def step(model, optimizer, x1, x2, offsets, key):
        (loss, latent), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
            model, x1, x2, offsets, key
        )
        optimizer.update(model, grads)
        return loss, latent

    rng = np.random.default_rng(args.seed)
    key = jax.random.key(args.seed)
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


def chart(rows: list[dict[str, Any]], pairs: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, label, style in (
        ("slot", "slot model: mask-matched R²", "o-"),
        ("flat", "flat model: linear R² (generator order)", "s-"),
    ):
        values = [r["r2"] for p in pairs for r in rows if r["model"] == kind and r["pairs"] == p]
        ax.plot(pairs, values, style, label=label)
    for kind, style in (("slot", "o--"), ("flat", "s--")):
        probe = [
            float(np.mean(r["probe_matched_r2"]))
            for p in pairs
            for r in rows
            if r["model"] == kind and r["pairs"] == p
        ]
        label = f"{kind} model: probe-matched R² (optimistic)"
        ax.plot(pairs, probe, style, alpha=0.6, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("perturbation pairs")
    ax.set_ylabel("held-out R² (mean over x, y)")
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
    parser.add_argument("--slots", type=int, default=4, help="K (the flat model has K·P dims)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--test-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
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
    for num_pairs in args.pairs:
        for kind in ("slot", "flat"):
            t0 = time.perf_counter()
            model, losses = train(kind, num_pairs, data, args)
            t1 = time.perf_counter()
            z, masks = encode_test(kind, model, data, args)
            row = {"model": kind, "pairs": num_pairs, **score(kind, z, masks, data)}
            row.update(train_seconds=t1 - t0, eval_seconds=time.perf_counter() - t1)
            row["loss_trace"] = losses
            rows.append(row)
            print(
                f"{kind:4s} pairs={num_pairs:5d} R²={row['r2']:.3f} "
                f"probe={np.round(row['probe_matched_r2'], 3).tolist()} "
                f"perm={row['permutation_disentanglement']:.3f} "
                f"loss={losses[-1][1]:.4f} ({row['train_seconds']:.0f}s)",
                flush=True,
            )
    minutes = (time.perf_counter() - start) / 60
    table = []
    for num_pairs in args.pairs:
        by = {r["model"]: r for r in rows if r["pairs"] == num_pairs}
        table.append(
            [
                str(num_pairs),
                fmt(by["slot"]["r2"], ".3f"),
                fmt(float(np.mean(by["slot"]["probe_matched_r2"])), ".3f"),
                fmt(by["slot"]["permutation_disentanglement"], ".3f"),
                fmt(by["flat"]["r2"], ".3f"),
                fmt(float(np.mean(by["flat"]["probe_matched_r2"])), ".3f"),
                fmt(by["flat"]["permutation_disentanglement"], ".3f"),
            ]
        )
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
        next(r["r2"] for r in rows if r["model"] == "slot" and r["pairs"] == p)
        - next(r["r2"] for r in rows if r["model"] == "flat" and r["pairs"] == p)
        for p in args.pairs
    ]
    checks = [
        {
            "goal": GOAL,
            "value": {
                "min_margin_slot_minus_flat": round(min(margins), 4),
                "margins": [round(m, 4) for m in margins],
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
