"""Training objectives beyond a model's own likelihood."""

from causalvision.losses.counterfactual_training import (
    ascending_multiplier,
    constrained_objective,
    counterfactual_nll,
)

__all__ = ["ascending_multiplier", "constrained_objective", "counterfactual_nll"]
