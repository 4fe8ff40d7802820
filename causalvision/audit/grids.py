"""Counterfactual image grids: the factual row, one row per intervention, difference maps."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np


def _mosaic(images: np.ndarray, fill: float = 1.0) -> np.ndarray:
    """`(N, H, W, C)` -> one row `(H, N * (W + 1), C)` with 1-pixel separators of `fill`."""
    n, h, w, c = images.shape
    row = np.full((h, n * (w + 1), c), fill, np.float32)
    for k in range(n):
        row[:, k * (w + 1) : k * (w + 1) + w] = images[k]
    return row


def counterfactual_grid(
    factual: Any,
    counterfactuals: Mapping[str, Any],
    path: str | pathlib.Path,
    *,
    differences: bool = True,
    title: str | None = None,
) -> pathlib.Path:
    """Writes a PNG: factual images, each counterfactual row and (optionally) cf − factual.

    Args:
      factual: images `(N, H, W, C)` in [0, 255] (C = 1 or 3).
      counterfactuals: row label (e.g. "do(thickness=4)") -> images shaped like `factual`.
      path: the PNG to write.
      differences: add a row per counterfactual with the signed difference (red = brighter).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factual = np.asarray(factual, np.float32)
    if factual.ndim != 4 or factual.shape[-1] not in (1, 3):
        raise ValueError(f"factual: expected images (N, H, W, 1 or 3), got shape {factual.shape}")
    rows: list[tuple[str, np.ndarray, bool]] = [("factual", _mosaic(factual / 255.0), False)]
    for label, images in counterfactuals.items():
        images = np.asarray(images, np.float32)
        if images.shape != factual.shape:
            raise ValueError(
                f"counterfactuals[{label!r}]: expected shape {factual.shape}, got {images.shape}"
            )
        rows.append((label, _mosaic(images / 255.0), False))
        if differences:
            diff = (images - factual).mean(-1, keepdims=True) / 255.0
            rows.append((f"{label} − factual", _mosaic(diff, fill=0.0), True))
    n, h = factual.shape[0], factual.shape[1]
    figure, axes = plt.subplots(
        len(rows),
        1,
        figsize=(max(4.0, 0.55 * n + 1.5), 0.62 * len(rows) * h / 32 + 0.6),
        squeeze=False,
    )
    for axis, (label, image, signed) in zip(axes[:, 0], rows, strict=True):
        if signed:
            axis.imshow(image[..., 0], cmap="RdBu_r", vmin=-1.0, vmax=1.0)
        elif image.shape[-1] == 1:
            axis.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            axis.imshow(np.clip(image, 0.0, 1.0))
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.subplots_adjust(left=0.3, right=0.98, top=0.94 if title else 0.99, bottom=0.01)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
