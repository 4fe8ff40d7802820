"""Training objectives beyond a model's own likelihood."""

from causalvision.losses.contrastive import info_nce
from causalvision.losses.counterfactual_captioning import (
    FUSIONS,
    cfvqa_effects,
    cfvqa_fusion,
    cfvqa_loss,
    counterfactual_branch,
    entity_mask,
    mix_with_language_model,
    natural_direct_effect_loss,
    token_log_probs,
    total_effect_loss,
)
from causalvision.losses.counterfactual_training import (
    ascending_multiplier,
    constrained_objective,
    counterfactual_nll,
)
from causalvision.losses.sparse_offsets import (
    MATCHINGS,
    match_slots,
    matching_cost,
    occrl_objective,
    signed_basis_offsets,
    sparse_offset_loss,
)

__all__ = [
    "FUSIONS",
    "MATCHINGS",
    "ascending_multiplier",
    "cfvqa_effects",
    "cfvqa_fusion",
    "cfvqa_loss",
    "constrained_objective",
    "counterfactual_branch",
    "counterfactual_nll",
    "entity_mask",
    "info_nce",
    "match_slots",
    "matching_cost",
    "mix_with_language_model",
    "natural_direct_effect_loss",
    "occrl_objective",
    "signed_basis_offsets",
    "sparse_offset_loss",
    "token_log_probs",
    "total_effect_loss",
]
