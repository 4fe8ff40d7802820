"""Counterfactual quality metrics: composition, reversibility, effectiveness, commutativity and
the error against exact ground-truth counterfactuals, as functions and as evaluators that a
config names (`evals`); accuracy per group and of the worst group, for data with a
confounder; object-centric metrics: FG-ARI and mean best overlap of segmentations
(jit-compatible), and linear / slot-matched R² and permutation disentanglement of latents
(numpy); caption metrics: CHAIR object hallucination and object recall / precision over an
`ObjectVocabulary`, corpus BLEU and CIDEr-D (pure Python); image-text retrieval recall@K
(numpy)."""

from causalvision.metrics.captioning import (
    ObjectVocabulary,
    bleu,
    chair,
    cider_d,
    cider_d_per_image,
    object_recall_precision,
    recall_at_k,
)
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
from causalvision.metrics.objects import (
    DEGENERATE_CONVENTIONS,
    MatchedR2,
    PermutationDisentanglement,
    fg_ari,
    linear_r2,
    matched_r2,
    mean_best_overlap,
    mean_fg_ari,
    permutation_disentanglement,
)

__all__ = [
    "DEGENERATE_CONVENTIONS",
    "EVALUATORS",
    "Commutativity",
    "Composition",
    "CounterfactualSubject",
    "Effectiveness",
    "Evaluator",
    "GroundTruth",
    "MatchedR2",
    "ObjectVocabulary",
    "PermutationDisentanglement",
    "Reversibility",
    "batched",
    "bleu",
    "chair",
    "cider_d",
    "cider_d_per_image",
    "commutativity",
    "composition",
    "effectiveness",
    "evaluate_counterfactuals",
    "fg_ari",
    "flatten_metrics",
    "get_evaluator",
    "ground_truth_error",
    "group_accuracy",
    "group_index",
    "linear_r2",
    "matched_r2",
    "mean_best_overlap",
    "mean_fg_ari",
    "object_recall_precision",
    "permutation_disentanglement",
    "quantile_bins",
    "recall_at_k",
    "reversibility",
    "run_evaluators",
    "sample_interventions",
    "scm_parents_fn",
    "update_parents",
]
