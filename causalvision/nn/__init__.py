"""Flax NNX building blocks for causal image models."""

from causalvision.nn.classifiers import AttributePredictor, ConvEncoder
from causalvision.nn.deep_scm import CounterfactualTuner, DeepSCM
from causalvision.nn.flows import (
    ConditionalAffine,
    ConditionalFlow,
    ConditionalSpline,
    FlowMechanism,
    Interval,
    Positive,
    fit_flow_mechanism,
    rational_quadratic_spline,
)
from causalvision.nn.hvae import HVAE, HVAEConfig, discretized_gaussian_log_likelihood
from causalvision.nn.image_mechanism import (
    IMAGE_MODELS,
    GaussianDecoderMechanism,
    GaussianDecoderModel,
    ImageModel,
    ParentEncoding,
    from_pixels,
    to_pixels,
)
from causalvision.nn.vae import VAE, VAEConfig

__all__ = [
    "HVAE",
    "IMAGE_MODELS",
    "VAE",
    "AttributePredictor",
    "ConditionalAffine",
    "ConditionalFlow",
    "ConditionalSpline",
    "ConvEncoder",
    "CounterfactualTuner",
    "DeepSCM",
    "FlowMechanism",
    "GaussianDecoderMechanism",
    "GaussianDecoderModel",
    "HVAEConfig",
    "ImageModel",
    "Interval",
    "ParentEncoding",
    "Positive",
    "VAEConfig",
    "discretized_gaussian_log_likelihood",
    "fit_flow_mechanism",
    "from_pixels",
    "rational_quadratic_spline",
    "to_pixels",
]
