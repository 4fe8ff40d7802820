"""causalvision: causal modelling of images in JAX.

The public surface is small: `SCM` and its mechanisms (in `causalvision.scm`), and
`CausalGraph` with identification (in `causalvision.graph`).

Sub-packages load on first use, so `import causalvision` (and `causalvision --help`) costs
nothing until a name is used: JAX alone takes a second to import.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from causalvision import graph, scm
    from causalvision.graph import CausalGraph, Identification
    from causalvision.scm import SCM, Estimate

__version__ = "0.1.0"

__all__ = [
    "SCM",
    "CausalGraph",
    "Estimate",
    "Identification",
    "enable_compilation_cache",
    "graph",
    "scm",
]

# Public name -> the sub-package that defines it.
_HOMES = {
    "SCM": "causalvision.scm",
    "Estimate": "causalvision.scm",
    "CausalGraph": "causalvision.graph",
    "Identification": "causalvision.graph",
}


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache: a program compiled once (a counterfactual
    query, a train step) loads from disk in every later process instead of compiling again.

    The `causalvision` program calls this at start-up and the tutorial notebooks in their
    import cell; library code never does (benchmarks time compilation without it).

    Args:
        path: the cache directory. Default: $JAX_COMPILATION_CACHE_DIR if set (it wins, as
            the test suite's session cache does), else $CAUSALVISION_CACHE_DIR, else
            ``~/.cache/causalvision/jax``. $CAUSALVISION_CACHE_DIR set to the empty string
            switches the default off.

    Every program is cached, not only those that take a second to compile
    ($JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS, if set, wins). If JAX is not imported yet,
    only the environment is set (JAX reads it when imported), so calling this costs nothing.

    Returns:
        The cache directory, or None when the cache stays off.
    """
    if path is None:
        default = pathlib.Path.home() / ".cache" / "causalvision" / "jax"
        path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.environ.get(
            "CAUSALVISION_CACHE_DIR", str(default)
        )
        if not path:
            return None
    cache = str(path)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if "jax" in sys.modules:
        import jax

        jax.config.update("jax_compilation_cache_dir", cache)
        seconds = float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
    return cache


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
