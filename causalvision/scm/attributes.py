"""What one observed attribute of a causal image dataset is: the node a deep SCM models.

A dataset declares its attributes once (`causalvision.data.Dataset.attribute_specs`); data
storage, deep SCMs, attribute predictors, metrics and audits all read these specs instead of
knowing the dataset.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from causalvision.validation import check_int, check_real

__all__ = ["Attribute"]

KINDS = ("categorical", "continuous")


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One attribute node: its kind, parents, support and standardisation.

    Args:
      name: node name.
      kind: "categorical" (values 0..num_classes-1) or "continuous" (real values).
      parents: attribute parents, by name (the generator's graph).
      num_classes: number of classes of a categorical attribute.
      support: of a continuous attribute, as `causalvision.nn.ConditionalFlow` takes it: None
        (the real line), ("positive", shift) for values > shift, or ("interval", low, high).
      standardise: (offset, scale) with `(value - offset) / scale` of unit order, e.g. the
        generator's marginal mean and standard deviation: how a model reads the attribute as
        an input or predicts it as a target.
    """

    name: str
    kind: str
    parents: tuple[str, ...] = ()
    num_classes: int = 0
    support: tuple | None = None
    standardise: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a non-empty str, got {self.name!r}")
        where = f"attributes[{self.name!r}]"
        if self.kind not in KINDS:
            raise ValueError(f"{where}.kind: expected one of {KINDS}, got {self.kind!r}")
        # A bare string would silently split into one-letter parents.
        if isinstance(self.parents, str) or not all(isinstance(p, str) for p in self.parents):
            raise ValueError(
                f"{where}.parents: expected a list of node names, got {self.parents!r}"
            )
        object.__setattr__(self, "parents", tuple(self.parents))
        if self.kind == "categorical":
            check_int(self.num_classes, f"{where}.num_classes", 2)
        if not (isinstance(self.standardise, tuple | list) and len(self.standardise) == 2):
            raise ValueError(
                f"{where}.standardise: expected (offset, scale) with scale > 0, "
                f"got {self.standardise!r}"
            )
        # Scalars computed with numpy or JAX are numbers too.
        offset, scale = (v.item() if hasattr(v, "item") else v for v in self.standardise)
        offset = check_real(offset, f"{where}.standardise offset")
        scale = check_real(scale, f"{where}.standardise scale", 0, open_low=True)
        object.__setattr__(self, "standardise", (offset, scale))
        if self.support is not None:
            object.__setattr__(self, "support", tuple(self.support))

    @property
    def categorical(self) -> bool:
        return self.kind == "categorical"

    def encoding_entry(self) -> tuple[str, str, Any]:
        """This attribute's entry of a `causalvision.nn.ParentEncoding` spec."""
        if self.categorical:
            return (self.name, "categorical", self.num_classes)
        return (self.name, "continuous", self.standardise)
