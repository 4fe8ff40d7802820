"""Counterfactual audits: image grids, counterfactuals and evaluations of trained runs, and
audits of image classifiers (`audit_classifier`)."""

from causalvision.audit.classifier import (
    ClassifierFn,
    as_classifier,
    audit_classifier,
    bootstrap_mean,
    effect_curve,
    effect_map,
    exact_counterfactuals,
    mediators,
    scm_counterfactuals,
)
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
from causalvision.audit.report import write_report, write_run_report

__all__ = [
    "ClassifierFn",
    "Grids",
    "ModelSubject",
    "ObjectDiscovery",
    "as_classifier",
    "attribute_oracle",
    "audit_classifier",
    "bootstrap_mean",
    "counterfactual_grid",
    "counterfactual_rows",
    "effect_curve",
    "effect_map",
    "evaluate_run",
    "exact_counterfactuals",
    "held_out_examples",
    "image_counterfactual_fn",
    "load_deep_scm",
    "mediators",
    "model_counterfactual",
    "parse_do",
    "scm_counterfactuals",
    "segmentation_colours",
    "true_counterfactual",
    "typical_interventions",
    "write_report",
    "write_run_report",
]
