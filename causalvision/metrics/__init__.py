"""Counterfactual quality metrics: composition, reversibility, effectiveness, commutativity and
the error against exact ground-truth counterfactuals, as functions and as evaluators that a
config names (`evals`); accuracy per group and of the worst group, for data with a
confounder."""

from causalvision.metrics.counterfactual import (
    batched,
    commutativity,
    composition,
    effectiveness,
    flatten_metrics,
    ground_truth_error,
    quantile_bins,
    reversibility,
    sample_interventions,
    scm_parents_fn,
    update_parents,
)
from causalvision.metrics.evaluators import (
    EVALUATORS,
    Commutativity,
    Composition,
    CounterfactualSubject,
    Effectiveness,
    Evaluator,
    GroundTruth,
    Reversibility,
    evaluate_counterfactuals,
    get_evaluator,
    run_evaluators,
)
from causalvision.metrics.groups import group_accuracy, group_index

__all__ = [
    "EVALUATORS",
    "Commutativity",
    "Composition",
    "CounterfactualSubject",
    "Effectiveness",
    "Evaluator",
    "GroundTruth",
    "Reversibility",
    "batched",
    "commutativity",
    "composition",
    "effectiveness",
    "evaluate_counterfactuals",
    "flatten_metrics",
    "get_evaluator",
    "ground_truth_error",
    "group_accuracy",
    "group_index",
    "quantile_bins",
    "reversibility",
    "run_evaluators",
    "sample_interventions",
    "scm_parents_fn",
    "update_parents",
]
