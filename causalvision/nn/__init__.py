"""Flax NNX building blocks for causal image models."""

from causalvision.nn.classifiers import AttributePredictor, ConvEncoder
from causalvision.nn.image_mechanism import (
    ImageMechanism,
    LatentImageModel,
    ParentEncoding,
    from_pixels,
    to_pixels,
)

__all__ = [
    "AttributePredictor",
    "ConvEncoder",
    "ImageMechanism",
    "LatentImageModel",
    "ParentEncoding",
    "from_pixels",
    "to_pixels",
]
