"""Flax NNX building blocks for causal image models."""

from causalvision.nn.adjusted_classifier import ADJUSTMENTS, AdjustedClassifier, ConfounderTable
from causalvision.nn.captioner import Captioner, CaptionerConfig
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
from causalvision.nn.diffusion import (
    NoiseSchedule,
    UNet,
    UNetConfig,
    ddim_invert,
    ddim_sample,
    ddim_sample_unfused,
    ddim_timesteps,
    ddpm_loss,
    q_sample,
    timestep_embedding,
)
from causalvision.nn.diffusion_ae import (
    DiffusionAutoEncoder,
    DiffusionAutoEncoderConfig,
    DiffusionMechanism,
)
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
from causalvision.nn.latent_scm import LatentSCM
from causalvision.nn.matching import DeconfoundedMatching
from causalvision.nn.oc_crl import FlatEncoder, OCCRLModel
from causalvision.nn.proposals import PredictorProposal
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
    "Captioner",
    "CaptionerConfig",
    "ClassWiseAdjustment",
    "ConditionalAffine",
    "ConditionalFlow",
    "ConditionalSpline",
    "ConfounderTable",
    "ConvEncoder",
    "CounterfactualTuner",
    "DeconfoundedMatching",
    "DeepSCM",
    "Dictionary",
    "DiffusionAutoEncoder",
    "DiffusionAutoEncoderConfig",
    "DiffusionMechanism",
    "FeatureWiseAdjustment",
    "FlatEncoder",
    "FlowMechanism",
    "FrontDoorAttention",
    "GaussianDecoderMechanism",
    "GaussianDecoderModel",
    "HVAEConfig",
    "ImageModel",
    "Interval",
    "LatentSCM",
    "NoiseSchedule",
    "OCCRLModel",
    "ParentEncoding",
    "Positive",
    "PredictorProposal",
    "Prior",
    "SlotAttention",
    "SlotAttentionAutoEncoder",
    "SlotAttentionAutoEncoderConfig",
    "SoftPositionEmbedding",
    "SpatialBroadcastDecoder",
    "UNet",
    "UNetConfig",
    "VAEConfig",
    "assign_clusters",
    "backdoor_adjust",
    "confounder_dictionary",
    "ddim_invert",
    "ddim_sample",
    "ddim_sample_unfused",
    "ddim_timesteps",
    "ddpm_loss",
    "discretized_gaussian_log_likelihood",
    "fit_flow_mechanism",
    "from_pixels",
    "kmeans",
    "label_prior",
    "q_sample",
    "rational_quadratic_spline",
    "timestep_embedding",
    "to_pixels",
    "uniform_prior",
]
