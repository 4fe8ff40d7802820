"""The `Dataset` protocol: a synthetic image dataset as the single source of truth about itself.

A dataset is an explicit SCM over its attributes plus a deterministic renderer. Everything the
platform needs to know about it — which attributes exist and of what kind, how images are
stored, how to re-render the exact counterfactual of a stored example, how to measure
attributes off an image — comes from this object, so storage, training tasks, metrics and
audits work on any dataset without naming one.

Datasets are found by name through the lookup rule (`causalvision.lookup`): the built-in ones
are in `DATASETS`, and ``"package.module:Class"`` names any other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from causalvision.lookup import resolve
from causalvision.scm import SCM, Attribute

__all__ = ["DATASETS", "Dataset", "check_attributes", "get_dataset", "storage_dtypes"]

#: Built-in datasets by name (module paths, imported when first looked up).
DATASETS: dict[str, str] = {
    "captioned_scenes": "causalvision.data.captioned_scenes:CaptionedScenes",
    "confounded_shapes": "causalvision.data.confounded:ConfoundedShapes",
    "morpho_digits": "causalvision.data.morpho:MorphoDigits",
    "pendulum": "causalvision.data.pendulum:Pendulum",
    "sprite_scenes": "causalvision.data.scenes:SpriteScenes",
}


@runtime_checkable
class Dataset(Protocol):
    """What a synthetic dataset with exact counterfactuals provides.

    Attributes:
      name: the name it is looked up and stored under (e.g. "morpho_digits").
      tfds_name: its TFDS name, with the builder config if the options choose one
        (e.g. "pendulum/64px").
      attribute_specs: one `causalvision.scm.Attribute` per attribute, parents first.
      attributes: the attribute names, in the same order.
      scm: the generator's SCM over the attributes (exact abduction, so exact counterfactuals).
      image_shape: `(H, W, C)` of one image.
      pixel_scale: rendered images times this are on the 0-255 storage scale (1 for renders
        in [0, 255], 255 for renders in [0, 1]).
      exogenous: the per-example noise the renderer reads besides the attributes, kept with
        every example so it can be re-rendered: field -> shape, nested dicts for groups
        (e.g. Morpho's {"style": {"slant": (), ..., "jitter": (P, 2)}}); empty if none.
      measure: `images (N, H, W, C) on the 0-255 scale -> {attribute: (N,)}`, an exact reading
        of attributes off images, or None where the dataset has none.

    Methods:
      sample(key, num): `num` examples: attributes `(N,)`, the exogenous fields and "image".
      render(example): images `(N, H, W, C)` of attributes plus exogenous fields.
      counterfactual(example, do): the example re-rendered under `do`, exactly (same noise).

    `render` and `counterfactual` refuse attribute values outside their specs' supports
    (`check_attributes`): a renderer handed such a value draws something else.
    """

    name: str
    tfds_name: str
    attribute_specs: tuple[Attribute, ...]
    attributes: tuple[str, ...]
    scm: SCM
    image_shape: tuple[int, int, int]
    pixel_scale: float
    exogenous: Mapping[str, Any]
    measure: Callable[[Any], Mapping[str, Any]] | None

    def sample(self, key: Any, num: int) -> dict[str, Any]: ...

    def render(self, example: Mapping[str, Any]) -> Any: ...

    def counterfactual(
        self, example: Mapping[str, Any], do: Mapping[str, Any]
    ) -> dict[str, Any]: ...


def get_dataset(name: Any, **options: Any) -> Dataset:
    """The dataset `name` (a `DATASETS` name or ``"package.module:Class"``) built with `options`.

    A `Dataset` instance is returned as it is (with no options). Raises `ValueError` for an
    unknown name or options the dataset does not take.
    """
    if not isinstance(name, str) and isinstance(name, Dataset):
        if options:
            raise ValueError(f"options: a built dataset takes no options, got {sorted(options)}")
        return name
    factory = resolve(name, DATASETS, "data.name")
    try:
        dataset = factory(**options)
    except TypeError as error:
        raise ValueError(
            f"data.options: {name!r} does not take {sorted(options)} ({error})"
        ) from None
    if not isinstance(dataset, Dataset):
        raise ValueError(
            f"data.name: {name!r} does not build a Dataset, got {type(dataset).__name__}"
        )
    return dataset


def storage_dtypes(dataset: Dataset) -> dict[str, Any]:
    """The numpy dtype each attribute is stored with: int64 classes, float32 values."""
    return {
        spec.name: np.dtype(np.int64) if spec.categorical else np.dtype(np.float32)
        for spec in dataset.attribute_specs
    }


def check_attributes(
    specs: tuple[Attribute, ...], values: Mapping[str, Any], argument: str
) -> None:
    """Refuse the `values` (attribute -> scalar or `(N,)`) a dataset cannot render.

    A categorical value must be a whole number in [0, num_classes); a continuous one finite
    and inside its spec's support (open bounds). Attributes absent from `values` are not
    checked. Raises `ValueError` naming `argument[attribute]`, the support and some offenders.
    """
    for spec in specs:
        if spec.name not in values:
            continue
        value = np.asarray(values[spec.name])
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
            raise ValueError(
                f"{argument}[{spec.name!r}]: expected numbers, got dtype {value.dtype}"
            )
        value = value.astype(np.float64)
        ok, expected = _in_support(spec, value)
        if not ok.all():
            raise ValueError(
                f"{argument}[{spec.name!r}]: {int((~ok).sum())} value(s) outside the support, "
                f"expected {expected}, got e.g. {value[~ok].ravel()[:3].tolist()}"
            )


def _in_support(spec: Attribute, value: np.ndarray) -> tuple[np.ndarray, str]:
    """Which entries of `value` lie in `spec`'s support, and the support in words."""
    finite = np.isfinite(value)
    if spec.categorical:
        whole = finite & (value == np.round(value))
        return whole & (value >= 0) & (value < spec.num_classes), (
            f"a class in {{0, ..., {spec.num_classes - 1}}}"
        )
    if spec.support is None:
        return finite, "a finite number"
    if spec.support[0] == "positive":
        return finite & (value > spec.support[1]), f"a finite number > {spec.support[1]}"
    low, high = spec.support[1], spec.support[2]
    return finite & (value > low) & (value < high), f"a number in ({low}, {high})"
