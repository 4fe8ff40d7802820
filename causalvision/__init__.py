"""causalvision: causal modelling of images in JAX.

The public surface is small: `SCM` and its mechanisms (in `causalvision.scm`), and
`CausalGraph` with identification (in `causalvision.graph`).

Sub-packages load on first use, so `import causalvision` (and `causalvision --help`) costs
nothing until a name is used: JAX alone takes a second to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from causalvision import graph, scm
    from causalvision.graph import CausalGraph, Identification
    from causalvision.scm import SCM, Estimate

__version__ = "0.1.0"

__all__ = ["SCM", "CausalGraph", "Estimate", "Identification", "graph", "scm"]

# Public name -> the sub-package that defines it.
_HOMES = {
    "SCM": "causalvision.scm",
    "Estimate": "causalvision.scm",
    "CausalGraph": "causalvision.graph",
    "Identification": "causalvision.graph",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    elif name in ("graph", "scm"):
        value = importlib.import_module(f"causalvision.{name}")
    else:
        raise AttributeError(f"module 'causalvision' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
