"""Training objectives beyond a model's own likelihood."""

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
    "MATCHINGS",
    "ascending_multiplier",
    "constrained_objective",
    "counterfactual_nll",
    "match_slots",
    "matching_cost",
    "occrl_objective",
    "signed_basis_offsets",
    "sparse_offset_loss",
]
