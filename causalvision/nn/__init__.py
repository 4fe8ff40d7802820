"""Flax NNX building blocks for causal image models."""

from causalvision.nn.adjusted_classifier import ADJUSTMENTS, AdjustedClassifier, ConfounderTable
from causalvision.nn.classifiers import AttributePredictor, ConvEncoder
from causalvision.nn.deconfounding import (
    BackdoorAdjustment,
    ClassWiseAdjustment,
    Dictionary,
    FeatureWiseAdjustment,
    FrontDoorAttention,
    Prior,
    assign_clusters,
    backdoor_adjust,
    confounder_dictionary,
    kmeans,
    label_prior,
    uniform_prior,
)
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
from causalvision.nn.oc_crl import FlatEncoder, OCCRLModel
from causalvision.nn.slots import (
    SlotAttention,
    SlotAttentionAutoEncoder,
    SlotAttentionAutoEncoderConfig,
    SoftPositionEmbedding,
    SpatialBroadcastDecoder,
)
from causalvision.nn.vae import VAE, VAEConfig

__all__ = [
    "ADJUSTMENTS",
    "HVAE",
    "IMAGE_MODELS",
    "VAE",
    "AdjustedClassifier",
    "AttributePredictor",
    "BackdoorAdjustment",
    "ClassWiseAdjustment",
    "ConditionalAffine",
    "ConditionalFlow",
    "ConditionalSpline",
    "ConfounderTable",
    "ConvEncoder",
    "CounterfactualTuner",
    "DeepSCM",
    "Dictionary",
    "FeatureWiseAdjustment",
    "FlatEncoder",
    "FlowMechanism",
    "FrontDoorAttention",
    "GaussianDecoderMechanism",
    "GaussianDecoderModel",
    "HVAEConfig",
    "ImageModel",
    "Interval",
    "OCCRLModel",
    "ParentEncoding",
    "Positive",
    "Prior",
    "SlotAttention",
    "SlotAttentionAutoEncoder",
    "SlotAttentionAutoEncoderConfig",
    "SoftPositionEmbedding",
    "SpatialBroadcastDecoder",
    "VAEConfig",
    "assign_clusters",
    "backdoor_adjust",
    "confounder_dictionary",
    "discretized_gaussian_log_likelihood",
    "fit_flow_mechanism",
    "from_pixels",
    "kmeans",
    "label_prior",
    "rational_quadratic_spline",
    "to_pixels",
    "uniform_prior",
]
