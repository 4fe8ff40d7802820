"""Evaluators that write images: counterfactual grids of the model beside the exact truth."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import jax
import numpy as np

from causalvision.audit.counterfactuals import counterfactual_rows, label
from causalvision.audit.grids import counterfactual_grid
from causalvision.data import Dataset
from causalvision.metrics import CounterfactualSubject
from causalvision.validation import check_int

__all__ = ["Grids", "typical_interventions"]


def typical_interventions(dataset: Dataset, num_draws: int = 10_000) -> list[dict[str, float]]:
    """Two interventions per attribute: a low and a high typical value of its marginal.

    The 10% and 90% quantiles of draws from the dataset's SCM (a fixed key: the same grids
    every time), to two significant digits, so always inside the attribute's support.
    """
    values = dataset.scm.sample(jax.random.key(0), num_draws)
    out = []
    for spec in dataset.attribute_specs:
        draws = np.asarray(values[spec.name], np.float64)
        for q in (0.1, 0.9):
            value = float(np.quantile(draws, q, method="lower"))
            out.append({spec.name: value if spec.categorical else float(f"{value:.2g}")})
    return out


class Grids:
    """PNG grids, one per intervention: factual images, the model's and the true counterfactual.

    Args:
      interventions: `[{attribute: value, ...}, ...]`, one grid each (joint ones allowed);
        default `typical_interventions` of the dataset.
      num: images (columns) per grid.
    """

    def __init__(self, interventions: Sequence[Mapping[str, float]] | None = None, num: int = 12):
        self.interventions = None if interventions is None else [dict(d) for d in interventions]
        self.num = check_int(num, "num", 1)

    def run(self, subject: CounterfactualSubject) -> Iterator[tuple[str, float]]:
        if subject.out is None or subject.dataset is None or "scm" not in subject.context:
            return  # nothing to draw with, or nowhere to write
        dataset = subject.dataset
        shown = jax.tree.map(lambda v: np.asarray(v)[: self.num], dict(subject.examples))
        shown["image"] = shown["image"].astype(np.float32)
        for do in self.interventions or typical_interventions(dataset):
            name = "_".join(f"{k}{v:g}" for k, v in do.items())
            counterfactual_grid(
                shown["image"],
                counterfactual_rows(subject.context["scm"], shown, [do], dataset),
                subject.out / f"counterfactuals_{name}.png",
                title=f"{label(do)}: model vs exact ground truth",
            )
        yield from ()
