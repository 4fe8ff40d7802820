"""causalvision: causal modelling of images in JAX.

The public surface is small: `SCM` and its mechanisms (in `causalvision.scm`), and
`CausalGraph` with identification (in `causalvision.graph`).
"""

from causalvision import graph, scm
from causalvision.graph import CausalGraph, Identification
from causalvision.scm import SCM, Estimate

__version__ = "0.1.0"

__all__ = ["SCM", "CausalGraph", "Estimate", "Identification", "graph", "scm"]
