"""Counterfactual audits: image grids, counterfactuals and evaluations of trained deep SCMs."""

from causalvision.audit.counterfactuals import (
    attribute_oracle,
    counterfactual_rows,
    evaluate_run,
    held_out_examples,
    image_counterfactual_fn,
    load_deep_scm,
    model_counterfactual,
    parse_do,
    true_counterfactual,
)
from causalvision.audit.evaluators import Grids, typical_interventions
from causalvision.audit.grids import counterfactual_grid

__all__ = [
    "Grids",
    "attribute_oracle",
    "counterfactual_grid",
    "counterfactual_rows",
    "evaluate_run",
    "held_out_examples",
    "image_counterfactual_fn",
    "load_deep_scm",
    "model_counterfactual",
    "parse_do",
    "true_counterfactual",
    "typical_interventions",
]
