"""Causal graphs: validation, d-separation, back-door / front-door criteria, adjustment sets
and identification (back-door, front-door, Shpitser & Pearl's ID and IDC) with estimands as
evaluable expression trees. Pure Python on top of networkx and numpy; imports nothing else from
causalvision."""

from causalvision.graph.causal_graph import CausalGraph
from causalvision.graph.enumeration import RandomBinarySCM
from causalvision.graph.expression import Expression, Fraction, Prob, Product, Sum
from causalvision.graph.id_algorithm import Hedge, LatentProjection
from causalvision.graph.identification import Identification

__all__ = [
    "CausalGraph",
    "Expression",
    "Fraction",
    "Hedge",
    "Identification",
    "LatentProjection",
    "Prob",
    "Product",
    "RandomBinarySCM",
    "Sum",
]
