"""Synthetic datasets whose generator is a known SCM, so every image has an exact counterfactual."""

from causalvision.data.morpho import MorphoDigits
from causalvision.data.pendulum import Pendulum
from causalvision.data.sources import GeneratedSource, quantize_image, stack_examples

__all__ = [
    "GeneratedSource",
    "MorphoDigits",
    "Pendulum",
    "quantize_image",
    "stack_examples",
]
