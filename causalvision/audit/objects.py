"""How well a trained object-centric model's slots find the objects, against the exact masks.

Works on any dataset that can draw its examples' instance masks (`instance_masks(example) ->
(N, H, W)` ids, 0 the background) and any model whose call returns per-slot `masks`
`(N, K, H, W, 1)` and a `reconstruction`, as `causalvision.nn.SlotAttentionAutoEncoder` does.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.data import Dataset
from causalvision.metrics import mean_best_overlap, mean_fg_ari
from causalvision.validation import check_int

__all__ = ["ModelSubject", "ObjectDiscovery", "segmentation_colours"]


@dataclasses.dataclass
class ModelSubject:
    """What an evaluator of a trained model (not a deep SCM) receives.

    Attributes:
      model: the trained model (EMA weights if the run kept them).
      examples: held-out examples as stored (attributes, exogenous fields, uint8 "image").
      dataset: the run's dataset.
      key: randomness of the evaluation (e.g. slot initialisation).
      out: where evaluators write images, or None.
    """

    model: Any
    examples: dict[str, Any]
    dataset: Dataset
    key: jax.Array
    out: pathlib.Path | None = None


def segmentation_colours(num: int) -> np.ndarray:
    """`(num, 3)` distinct colours in [0, 1]; entry 0 (background) is black."""
    import matplotlib

    colours = np.asarray(matplotlib.colormaps["tab10"].colors, np.float32)
    colours = np.concatenate([np.zeros((1, 3), np.float32), colours])
    return colours[np.arange(num) % len(colours)]


class ObjectDiscovery:
    """FG-ARI and mean best overlap of the slots' masks, and a PNG of what the slots see.

    Args:
      batch_size: images per model call.
      num_grid: images shown in `slots.png` (rows: image, reconstruction, predicted and true
        segmentation, then each slot's masked reconstruction).
      degenerate: FG-ARI's convention for one-cluster images ("savi" or "deepmind").

    Yields "fg_ari" (mean over images with foreground), "fg_ari_images" (how many) and "mbo".
    """

    def __init__(self, batch_size: int = 32, num_grid: int = 8, degenerate: str = "savi"):
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.num_grid = check_int(num_grid, "num_grid", 0)
        self.degenerate = degenerate

    def run(self, subject: ModelSubject) -> Iterator[tuple[str, float]]:
        draw = getattr(subject.dataset, "instance_masks", None)
        if draw is None:
            raise ValueError(
                f"evals: object_discovery needs a dataset that draws instance masks; "
                f"{subject.dataset.name!r} does not"
            )
        true = np.asarray(draw(subject.examples))
        outputs = _predict(subject.model, subject.examples["image"], subject.key, self.batch_size)
        masks = outputs["masks"][..., 0]  # (N, K, H, W)
        predicted = masks.argmax(1)
        num_true, num_slots = int(true.max()) + 1, masks.shape[1]
        fg_ari, scored = mean_fg_ari(
            true, predicted, num_true=num_true, num_pred=num_slots, degenerate=self.degenerate
        )
        overlap = mean_best_overlap(true, predicted, num_true=num_true, num_pred=num_slots)
        yield "fg_ari", float(fg_ari)
        yield "fg_ari_images", float(scored)
        yield "mbo", float(np.nanmean(np.asarray(overlap)))
        if subject.out is not None and self.num_grid:
            _slot_grid(subject.examples["image"], outputs, true, subject.out / "slots.png", self)


def _predict(model: Any, images: np.ndarray, key: jax.Array, batch_size: int) -> dict:
    """The model's masks `(N, K, H, W, 1)`, reconstructions and per-slot images, in [0, 1]."""
    from flax import nnx

    @nnx.jit
    def call(model, x, key):
        out = model(x, key=key)
        return {k: out[k] for k in ("masks", "reconstruction", "recons")}

    parts = []
    for index, start in enumerate(range(0, len(images), batch_size)):
        x = jnp.asarray(images[start : start + batch_size], jnp.float32) / 127.5 - 1.0
        parts.append(jax.tree.map(np.asarray, call(model, x, jax.random.fold_in(key, index))))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    for name in ("reconstruction", "recons"):
        out[name] = np.clip((out[name] + 1.0) / 2.0, 0.0, 1.0)
    return out


def _slot_grid(images, outputs, true, path: pathlib.Path, settings: ObjectDiscovery) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(settings.num_grid, len(images))
    masks = outputs["masks"][:n]  # (n, K, H, W, 1)
    num_slots = masks.shape[1]
    colours = segmentation_colours(max(num_slots + 1, int(true.max()) + 1))
    rows = [
        ("image", np.asarray(images[:n], np.float32) / 255.0),
        ("reconstruction", outputs["reconstruction"][:n]),
        ("slots (argmax)", colours[masks[..., 0].argmax(1) + 1]),
        ("true objects", colours[true[:n]]),
    ]
    rows += [(f"slot {k}", masks[:, k] * outputs["recons"][:n, k]) for k in range(num_slots)]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.3 * len(rows)), squeeze=False)
    for r, (name, row) in enumerate(rows):
        for c in range(n):
            axes[r, c].imshow(np.clip(row[c], 0.0, 1.0))
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
