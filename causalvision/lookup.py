"""One lookup rule for every pluggable component: a short name or a module path, resolved late.

Datasets, image models, training tasks, evaluators, optimisers and schedules are all found
the same way, as big_vision finds its models and evaluators:

- a short name such as ``"hvae"`` is looked up in the kind's catalogue, a plain dict of
  ``name -> "package.module:Attribute"`` strings kept beside the components it names
  (e.g. `causalvision.data.DATASETS`);
- a module path ``"package.module:Attribute"`` names any importable object, so code outside
  the library plugs in without editing it: ``data.name = "mylab.scenes:Scenes"``.

Nothing is imported until a name is resolved, and nothing registers itself on import: a
run's `config.json` holds the same strings, so it rebuilds the same components.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["resolve"]


def resolve(name: Any, catalogue: Mapping[str, str], argument: str) -> Any:
    """The object that `name` stands for: a catalogue entry or a ``"module:attribute"`` path.

    Args:
      name: a key of `catalogue` or a module path ``"package.module:Attribute"`` (the
        attribute may be dotted, ``"module:Class.method"``).
      catalogue: the kind's built-in names, each mapped to a module path.
      argument: how the caller names the setting in errors, e.g. ``"data.name"``.

    Raises:
      ValueError: `name` is not a string, is neither a catalogue name nor a module path, or
        its module or attribute cannot be imported (the import error is chained).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{argument}: expected a name or 'package.module:Name', got {name!r}")
    path = catalogue.get(name, name)
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(
            f"{argument}: unknown name {name!r}; expected one of {sorted(catalogue)} or a "
            "module path 'package.module:Name'"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{argument}: cannot import module {module_name!r} ({error})") from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{argument}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target
