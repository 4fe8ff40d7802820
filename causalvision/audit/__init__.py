"""Counterfactual audits: image grids, counterfactuals and evaluations of trained runs."""

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
from causalvision.audit.objects import ModelSubject, ObjectDiscovery, segmentation_colours

__all__ = [
    "Grids",
    "ModelSubject",
    "ObjectDiscovery",
    "attribute_oracle",
    "counterfactual_grid",
    "counterfactual_rows",
    "evaluate_run",
    "held_out_examples",
    "image_counterfactual_fn",
    "load_deep_scm",
    "model_counterfactual",
    "parse_do",
    "segmentation_colours",
    "true_counterfactual",
    "typical_interventions",
]
