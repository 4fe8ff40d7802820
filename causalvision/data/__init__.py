"""Synthetic datasets whose generator is a known SCM, so every image has an exact counterfactual."""

from causalvision.data.morpho import MorphoDigits
from causalvision.data.pendulum import Pendulum

__all__ = ["MorphoDigits", "Pendulum"]
