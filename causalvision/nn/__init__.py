"""Flax NNX building blocks for causal image models."""

from causalvision.nn.classifiers import AttributePredictor, ConvEncoder

__all__ = ["AttributePredictor", "ConvEncoder"]
