"""Synthetic datasets whose generator is a known SCM, so every image has an exact counterfactual."""

from causalvision.data.morpho import MorphoDigits
from causalvision.data.pendulum import Pendulum
from causalvision.data.sources import GeneratedSource, quantize_image, stack_examples
from causalvision.data.tfds_builders import (
    MorphoDigitsBuilder,
    PendulumBuilder,
    build_dataset,
    load_source,
)

__all__ = [
    "GeneratedSource",
    "MorphoDigits",
    "MorphoDigitsBuilder",
    "Pendulum",
    "PendulumBuilder",
    "build_dataset",
    "load_source",
    "quantize_image",
    "stack_examples",
]
