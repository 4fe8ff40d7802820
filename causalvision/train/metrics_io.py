"""Where training metrics go: a JSONL file (one line per logging step), TensorBoard, a PNG."""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping
from typing import Any


class MetricWriter:
    """Appends `{"step", "split", **metrics}` lines to `metrics.jsonl`; optionally TensorBoard.

    Appending (not truncating) keeps the history of a resumed run in one file; `read_metrics`
    keeps the last line for each (split, step), so steps replayed after a kill count once.
    """

    def __init__(self, workdir: str | pathlib.Path, tensorboard: bool = False):
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tensorboard = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as error:
                raise ValueError(
                    "trainer.tensorboard: needs the tensorboardX package "
                    "(pip install 'causalvision[tensorboard]')"
                ) from error
            self._tensorboard = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
        values = {name: float(value) for name, value in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": int(step), "split": split, **values}) + "\n")
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(f"{split}/{name}", value, int(step))

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(path: str | pathlib.Path) -> dict[str, list[dict[str, float]]]:
    """Metrics lines grouped by split, sorted by step, the last line winning per step."""
    by_split: dict[str, dict[int, dict[str, float]]] = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_split.setdefault(record.pop("split", "train"), {})[record["step"]] = record
    return {split: [rows[s] for s in sorted(rows)] for split, rows in by_split.items()}


def plot_curves(metrics_path: str | pathlib.Path, out_path: str | pathlib.Path) -> pathlib.Path:
    """Draws every metric against the step, one panel per metric name, train and eval."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must be set before pyplot is imported
    import matplotlib.pyplot as plt

    splits = read_metrics(metrics_path)
    skip = {"step", "steps_per_second", "examples_per_second", "learning_rate"}
    names = sorted({k for rows in splits.values() for row in rows for k in row} - skip)
    columns = min(3, max(len(names), 1))
    rows_ = max(math.ceil(len(names) / columns), 1)
    figure, axes = plt.subplots(rows_, columns, figsize=(4.5 * columns, 3.2 * rows_), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        for split, rows in splits.items():
            points = [(r["step"], r[name]) for r in rows if name in r and math.isfinite(r[name])]
            if points:
                steps, values = zip(*points, strict=True)
                axis.plot(steps, values, marker="." if split != "train" else None, label=split)
        values = [r[name] for rows in splits.values() for r in rows if name in r]
        finite = [v for v in values if math.isfinite(v)]
        if finite and min(finite) > 0 and max(finite) > 20 * min(finite):
            axis.set_yscale("log")  # losses span decades; a linear axis flattens the tail
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.legend(fontsize="small")
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    figure.tight_layout()
    out_path = pathlib.Path(out_path)
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return out_path
