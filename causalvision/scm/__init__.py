"""Structural causal models: mechanisms, the SCM engine, effects and estimators."""

from causalvision.scm._compat import lenient_promotion
from causalvision.scm.attributes import Attribute
from causalvision.scm.engine import SCM, WorldRef, from_world
from causalvision.scm.estimate import Estimate
from causalvision.scm.estimators import (
    backdoor_adjustment,
    estimate_effect,
    frontdoor_adjustment,
    interventional_distribution,
)
from causalvision.scm.importance import ImportanceDraws, importance_posterior
from causalvision.scm.interop import FitResult
from causalvision.scm.mechanisms import (
    AdditiveNoise,
    Categorical,
    Inference,
    LinearGaussian,
    Mechanism,
    NumpyroMechanism,
    Root,
    mechanism_dataclass,
)
from causalvision.scm.partial import Summary, summarize

__all__ = [
    "SCM",
    "AdditiveNoise",
    "Attribute",
    "Categorical",
    "Estimate",
    "FitResult",
    "ImportanceDraws",
    "Inference",
    "LinearGaussian",
    "Mechanism",
    "NumpyroMechanism",
    "Root",
    "Summary",
    "WorldRef",
    "backdoor_adjustment",
    "estimate_effect",
    "from_world",
    "frontdoor_adjustment",
    "importance_posterior",
    "interventional_distribution",
    "lenient_promotion",
    "mechanism_dataclass",
    "summarize",
]
