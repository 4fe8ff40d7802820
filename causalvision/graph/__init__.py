"""Causal graphs: validation, d-separation, back-door / front-door criteria, adjustment sets
and identification. Pure Python on top of networkx; imports nothing else from causalvision."""

from causalvision.graph.causal_graph import CausalGraph
from causalvision.graph.identification import Identification

__all__ = ["CausalGraph", "Identification"]
