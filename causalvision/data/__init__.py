"""Synthetic datasets whose generator is a known SCM, so every image has an exact counterfactual."""

from causalvision.data.morpho import MorphoDigits
from causalvision.data.pendulum import Pendulum
from causalvision.data.pipeline import ArraySource, make_pipeline
from causalvision.data.sources import GeneratedSource, quantize_image, stack_examples
from causalvision.data.tfds_builders import (
    MorphoDigitsBuilder,
    PendulumBuilder,
    build_dataset,
    load_source,
)

__all__ = [
    "ArraySource",
    "GeneratedSource",
    "MorphoDigits",
    "MorphoDigitsBuilder",
    "Pendulum",
    "PendulumBuilder",
    "build_dataset",
    "load_source",
    "make_pipeline",
    "quantize_image",
    "stack_examples",
]
