"""Synthetic datasets whose generator is a known SCM, so every image has an exact counterfactual."""

from causalvision.data.captioned_scenes import CaptionedScenes
from causalvision.data.confounded import ConfoundedShapes
from causalvision.data.dataset import DATASETS, Dataset, check_attributes, get_dataset
from causalvision.data.masking import mask_region
from causalvision.data.morpho import MorphoDigits
from causalvision.data.pendulum import Pendulum
from causalvision.data.pipeline import ArraySource, make_pipeline
from causalvision.data.real import (
    CELEBA_ATTRIBUTES,
    MNIST_PERTURBATIONS,
    CelebAPreprocess,
    CelebASource,
    MappedSource,
    MnistToMorpho,
    celeba_source,
    mnist_source,
    pad_to_32,
    perturb,
)
from causalvision.data.scenes import SpriteScenes
from causalvision.data.sources import GeneratedSource, quantize_image, stack_examples
from causalvision.data.text import Vocabulary, tokenize
from causalvision.data.tfds_builders import (
    CaptionedScenesBuilder,
    ConfoundedShapesBuilder,
    MorphoDigitsBuilder,
    PendulumBuilder,
    SpriteScenesBuilder,
    build_dataset,
    dataset_features,
    load_source,
)

__all__ = [
    "CELEBA_ATTRIBUTES",
    "DATASETS",
    "MNIST_PERTURBATIONS",
    "ArraySource",
    "CaptionedScenes",
    "CaptionedScenesBuilder",
    "CelebAPreprocess",
    "CelebASource",
    "ConfoundedShapes",
    "ConfoundedShapesBuilder",
    "Dataset",
    "GeneratedSource",
    "MappedSource",
    "MnistToMorpho",
    "MorphoDigits",
    "MorphoDigitsBuilder",
    "Pendulum",
    "PendulumBuilder",
    "SpriteScenes",
    "SpriteScenesBuilder",
    "Vocabulary",
    "build_dataset",
    "celeba_source",
    "check_attributes",
    "dataset_features",
    "get_dataset",
    "load_source",
    "make_pipeline",
    "mask_region",
    "mnist_source",
    "pad_to_32",
    "perturb",
    "quantize_image",
    "stack_examples",
    "tokenize",
]
