"""Counterfactual quality metrics: composition, reversibility, effectiveness, commutativity and
the error against exact ground-truth counterfactuals, plus the Morpho evaluation protocol."""

from causalvision.metrics.counterfactual import (
    batched,
    commutativity,
    composition,
    effectiveness,
    evaluate_counterfactuals,
    flatten_metrics,
    ground_truth_error,
    quantile_bins,
    reversibility,
    sample_interventions,
    scm_parents_fn,
    update_parents,
)

__all__ = [
    "batched",
    "commutativity",
    "composition",
    "effectiveness",
    "evaluate_counterfactuals",
    "flatten_metrics",
    "ground_truth_error",
    "quantile_bins",
    "reversibility",
    "sample_interventions",
    "scm_parents_fn",
    "update_parents",
]
