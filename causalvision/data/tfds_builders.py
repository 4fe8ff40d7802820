"""TFDS builders that write the synthetic datasets as array_record files, without TensorFlow.

`build_dataset("morpho_digits", size=60_000, data_dir=d)` renders the examples through a
`GeneratedSource` and writes them with TFDS; `load_source("morpho_digits", "train", d)` reads
them back as a random-access `tfds.data_source` (len / `[i]`, numpy out) that grain can use.
A built split equals `GeneratedSource(dataset, size, seed)` example for example, and each stored
example keeps everything needed to re-render it under an intervention: all attributes and the
exogenous noise (Morpho digits' style, the confounded shapes' placement and shape noise, the
sprite scenes' rotations, the captioned scenes' rotations, wording and shape noise).

Layout: `<data_dir>/morpho_digits/1.0.0/`, `<data_dir>/pendulum/<S>px/1.0.0/`,
`<data_dir>/confounded_shapes/<config>/1.0.0/`, `<data_dir>/sprite_scenes/<config>/1.0.0/` and
`<data_dir>/captioned_scenes/<config>/1.0.0/`,
each with `train` (`size` examples, seed `s`) and `test` (seed `s + 1`; 1/6 of `size` for Morpho
digits, MNIST's 60k/10k ratio, 1/3 for the pendulum, the CausalVAE 5,482/1,826 ratio, and 1/4
for the confounded shapes and the sprite and captioned scenes) splits. The
confounded shapes add `unconfounded` (seed `s + 2`) and `anticorrelated` (seed `s + 3`), 1/4
of `size` each, drawn from `ConfoundedShapes.split(...)` of the same options.
`dataset_info.json` records size, seed and chunk size in its metadata.

TensorFlow is never imported (REFERENCE 12): the files are array_record, the DatasetInfo is built
in code, and images are `tfds.features.Tensor(uint8, zlib)` rather than `tfds.features.Image`
(whose encoder needs TF).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import pathlib
import re
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from etils import epath
from tensorflow_datasets.core.utils import tqdm_utils

from causalvision.data.captioned_scenes import DEFAULTS as CAPTIONED_DEFAULTS
from causalvision.data.captioned_scenes import CaptionedScenes
from causalvision.data.captioned_scenes import config_name as captioned_config_name
from causalvision.data.confounded import DEFAULTS as CONFOUNDED_DEFAULTS
from causalvision.data.confounded import ConfoundedShapes
from causalvision.data.dataset import Dataset
from causalvision.data.morpho import MorphoDigits
from causalvision.data.pendulum import Pendulum
from causalvision.data.scenes import DEFAULTS as SCENES_DEFAULTS
from causalvision.data.scenes import SpriteScenes
from causalvision.data.scenes import config_name as scenes_config_name
from causalvision.data.sources import GeneratedSource
from causalvision.validation import check_directory, check_int

__all__ = [
    "CaptionedScenesBuilder",
    "ConfoundedShapesBuilder",
    "MorphoDigitsBuilder",
    "PendulumBuilder",
    "SpriteScenesBuilder",
    "build_dataset",
    "load_source",
]

VERSION = tfds.core.Version("1.0.0")
RELEASE_NOTES = {"1.0.0": "Initial release."}
PENDULUM_SIZES = (32, 64, 96)
DEFAULT_PENDULUM_SIZE = 64
_PENDULUM_NAME = re.compile(r"^pendulum(?:/(?P<size>\d+)px)?$")
CONFOUNDED_SIZES = (32, 64)
_CONFOUNDED_NAME = re.compile(
    r"^confounded_shapes(?:/(?:k(?P<classes>\d+)_a(?P<agreement>[0-9.e+-]+)_)?(?P<size>\d+)px)?$"
)
SCENES_SIZES = (64, 128)
_SCENES_NAME = re.compile(
    r"^sprite_scenes(?:/(?:min(?P<min>\d+)_max(?P<max>\d+)_)?(?P<size>\d+)px)?$"
)
CAPTIONED_SIZES = (32, 64)
_CAPTIONED_NAME = re.compile(r"^captioned_scenes(?:/(?:max(?P<max>\d+)_)?(?P<size>\d+)px)?$")
KNOWN_NAMES = (
    "morpho_digits",
    "pendulum",
    *(f"pendulum/{s}px" for s in PENDULUM_SIZES),
    "confounded_shapes",
    *(f"confounded_shapes/{s}px" for s in CONFOUNDED_SIZES),
    "sprite_scenes",
    *(f"sprite_scenes/{s}px" for s in SCENES_SIZES),
    "captioned_scenes",
    *(f"captioned_scenes/{s}px" for s in CAPTIONED_SIZES),
)

_IMAGE_ENCODING = tfds.features.Encoding.ZLIB  # mostly-constant images: ~5-10x smaller
_FLOAT = np.float32


def _scalar() -> tfds.features.Tensor:
    # Raw bytes rather than `Scalar`, which decodes to a Python float: this way a stored scalar
    # reads back as a float32 0-d array, exactly what `GeneratedSource` serves, so batches of
    # either source have the same dtypes.
    return tfds.features.Tensor(shape=(), dtype=_FLOAT, encoding=tfds.features.Encoding.BYTES)


def dataset_features(dataset: Dataset) -> tfds.features.FeaturesDict:
    """The TFDS features of one stored example of `dataset`, read off its specs.

    Categorical attributes are class labels, continuous ones float32 scalars, the exogenous
    fields float32 tensors (nested dicts become nested features) and the image uint8.
    """

    def exogenous(shapes: Any) -> Any:
        if isinstance(shapes, dict):
            return tfds.features.FeaturesDict({k: exogenous(v) for k, v in shapes.items()})
        return (
            _scalar() if tuple(shapes) == () else tfds.features.Tensor(shape=shapes, dtype=_FLOAT)
        )

    features: dict[str, Any] = {
        "image": tfds.features.Tensor(
            shape=tuple(dataset.image_shape), dtype=np.uint8, encoding=_IMAGE_ENCODING
        )
    }
    for spec in dataset.attribute_specs:
        categorical = tfds.features.ClassLabel(num_classes=spec.num_classes)
        features[spec.name] = categorical if spec.categorical else _scalar()
    features.update({name: exogenous(shape) for name, shape in dataset.exogenous.items()})
    return tfds.features.FeaturesDict(features)


class _SyntheticBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared machinery: splits generated by `GeneratedSource`, order kept, metadata recorded.

    Subclasses set `DEFAULT_SIZE`, `TEST_DIVISOR` and implement `_dataset()`; the features
    follow from the dataset's specs (`dataset_features`).
    They register with TFDS under their `name` when this module is imported, so
    `tfds.data_source("morpho_digits", data_dir=...)` finds the code; datasets built with other
    pendulum sizes load from their files.
    """

    VERSION = VERSION
    RELEASE_NOTES = RELEASE_NOTES
    DEFAULT_SIZE: int
    TEST_DIVISOR: int

    def __init__(
        self,
        *,
        size: int | None = None,
        seed: int = 0,
        chunk_size: int = 256,
        progress: bool = False,
        **kwargs: Any,
    ):
        self._size = self.DEFAULT_SIZE if size is None else check_int(size, "size", 1)
        self._seed = check_int(seed, "seed", 0)
        self._chunk_size = check_int(chunk_size, "chunk_size", 1)
        self._progress = bool(progress)
        # TFRECORD, the default, needs TensorFlow to finalise the files.
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        # DatasetBuilder pickles by re-running __init__ on `_original_state`.
        self._original_state.update(
            size=self._size, seed=self._seed, chunk_size=self._chunk_size, progress=progress
        )

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's own lookup checks `importlib_resources.abc.Traversable`, a backport that is not
        # installed (ModuleNotFoundError on download_and_prepare); the plain file path is what
        # it would find anyway.
        return epath.Path(inspect.getfile(cls))

    @property
    def test_size(self) -> int:
        return max(self._size // self.TEST_DIVISOR, 1)

    def _dataset(self) -> Dataset:
        raise NotImplementedError

    def _features(self) -> tfds.features.FeaturesDict:
        return dataset_features(self._dataset())

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__class__.__doc__,
            features=self._features(),
            # No shuffling on write: stored index i is GeneratedSource's example i.
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(
                size=self._size,
                test_size=self.test_size,
                seed=self._seed,
                chunk_size=self._chunk_size,
            ),
        )

    def _split_sources(self) -> dict[str, GeneratedSource]:
        """Each split's examples: "train" (`size`, seed `s`) and "test" (seed `s + 1`)."""
        dataset = self._dataset()
        return {
            "train": GeneratedSource(dataset, self._size, self._seed, self._chunk_size),
            "test": GeneratedSource(dataset, self.test_size, self._seed + 1, self._chunk_size),
        }

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict]]]:
        del dl_manager  # nothing to download
        return {
            split: self._generate_examples(source, split)
            for split, source in self._split_sources().items()
        }

    def _generate_examples(self, source: GeneratedSource, split: str):
        desc = f"{self.name} {split}"
        with tqdm.tqdm(total=len(source), desc=desc, unit=" ex", disable=not self._progress) as bar:
            for start in range(0, len(source), source.chunk_size):
                indices = range(start, min(start + source.chunk_size, len(source)))
                yield from zip(indices, source.__getitems__(indices), strict=True)
                bar.update(len(indices))


class MorphoDigitsBuilder(_SyntheticBuilder):
    """Morpho-MNIST's thickness -> intensity SCM over stroke-drawn 32x32 digits.

    Features: "image" uint8 (32, 32, 1); "digit" class label (0-9); "thickness" (stroke width,
    pixels) and "intensity" (median bright-pixel value) float32; "style", the exogenous noise of
    the renderer: "slant", "width" float32, "offset" (2,), "jitter" (P, 2) float32. The image is
    a deterministic function of digit, thickness, intensity and style, so
    `MorphoDigits().counterfactual(example, do)` re-renders the exact counterfactual of any
    stored example. See `causalvision.data.morpho`.
    """

    name = "morpho_digits"
    DEFAULT_SIZE = 60_000
    TEST_DIVISOR = 6  # MNIST's 60k / 10k

    def _dataset(self) -> MorphoDigits:
        return MorphoDigits()


@dataclasses.dataclass(eq=False)
class PendulumConfig(tfds.core.BuilderConfig):
    """A pendulum image size; the config name is f"{image_size}px"."""

    image_size: int = DEFAULT_PENDULUM_SIZE


def _pendulum_config(image_size: int) -> PendulumConfig:
    return PendulumConfig(
        name=f"{image_size}px",
        image_size=image_size,
        description=f"{image_size}x{image_size} RGB images",
    )


class PendulumBuilder(_SyntheticBuilder):
    """The CausalVAE pendulum: an SCM over angle, light, shadow length and shadow position.

    Features: "image" uint8 (S, S, 3); "angle", "light" (degrees), "shadow_length",
    "shadow_position" (canvas units) float32. The image is a deterministic function of the four
    attributes, so `Pendulum(S).counterfactual(example, do)` re-renders the exact counterfactual
    of any stored example. See `causalvision.data.pendulum`.

    Configs "32px", "64px" (default) and "96px" (the reference size); any other size >= 16
    through `PendulumBuilder(image_size=S)` (read back with `load_source("pendulum/<S>px")`).
    """

    name = "pendulum"
    BUILDER_CONFIGS = [_pendulum_config(s) for s in PENDULUM_SIZES]  # noqa: RUF012 (tfds API)
    DEFAULT_BUILDER_CONFIG_NAME = f"{DEFAULT_PENDULUM_SIZE}px"
    DEFAULT_SIZE = 5_482  # the CausalVAE train split; 7,308 with the test split
    TEST_DIVISOR = 3  # 5,482 / 1,826 in the reference

    def __init__(self, *, image_size: int | None = None, **kwargs: Any):
        if image_size is not None:
            image_size = check_int(image_size, "image_size", 16)
            if kwargs.get("config") is not None:
                raise ValueError("image_size: give either image_size or config, not both")
            named = {c.image_size: c for c in self.BUILDER_CONFIGS}
            kwargs["config"] = named.get(image_size) or _pendulum_config(image_size)
        super().__init__(**kwargs)

    def _dataset(self) -> Pendulum:
        return Pendulum(image_size=self.builder_config.image_size)


class _OptionsBuilder(_SyntheticBuilder):
    """A builder whose configs are its dataset's constructor options (`OPTIONS`).

    `Builder(option=value, ...)` checks the options by building the dataset and picks the
    named config they match, or a new one made by `_config(**options)`.
    """

    DATASET: type
    OPTIONS: tuple[str, ...]
    _config: Callable[..., tfds.core.BuilderConfig]  # the options' config, e.g. staticmethod(f)

    def __init__(self, **kwargs: Any):
        options = {k: kwargs.pop(k) for k in self.OPTIONS if k in kwargs}
        options = {k: v for k, v in options.items() if v is not None}
        if options:
            if kwargs.get("config") is not None:
                raise ValueError(f"{sorted(options)}: give either options or config, not both")
            dataset = self.DATASET(**options)  # checks the options
            config = self._config(**{k: getattr(dataset, k) for k in self.OPTIONS})
            named = {c.name: c for c in self.BUILDER_CONFIGS}
            kwargs["config"] = named.get(config.name, config)
        super().__init__(**kwargs)

    def _dataset(self) -> Dataset:
        config = self.builder_config
        return self.DATASET(**{k: getattr(config, k) for k in self.OPTIONS})


@dataclasses.dataclass(eq=False)
class ConfoundedShapesConfig(tfds.core.BuilderConfig):
    """`ConfoundedShapes` options; the config name is f"{image_size}px" for the default
    classes and agreement, f"k{num_classes}_a{agreement!r}_{image_size}px" otherwise."""

    num_classes: int = CONFOUNDED_DEFAULTS["num_classes"]
    agreement: float = CONFOUNDED_DEFAULTS["agreement"]
    image_size: int = CONFOUNDED_DEFAULTS["image_size"]


def _confounded_config(
    num_classes: int, agreement: float, image_size: int
) -> ConfoundedShapesConfig:
    """The config of `ConfoundedShapes(...)`, from its (already checked) options alone:
    building the dataset here would start JAX when this module is imported."""
    k, a, s = num_classes, agreement, image_size
    default = (k, a) == (CONFOUNDED_DEFAULTS["num_classes"], CONFOUNDED_DEFAULTS["agreement"])
    return ConfoundedShapesConfig(
        name=f"{s}px" if default else f"k{k}_a{a!r}_{s}px",
        num_classes=k,
        agreement=a,
        image_size=s,
        description=f"{k} shapes on {k} backgrounds, agreement {a}, {s}x{s} RGB images",
    )


class ConfoundedShapesBuilder(_OptionsBuilder):
    """Shapes on coloured backgrounds: the background confounds the shape label.

    Features: "image" uint8 (S, S, 3); "background" and "shape" class labels (0..K-1); the
    exogenous noise "position" (2,), "radius", "rotation", "tone", "texture" (2,) and
    "shape_noise" (K,) float32. Splits: "train" (`size`, seed s), "test" (seed s + 1, same
    agreement), "unconfounded" (seed s + 2, agreement 1/K) and "anticorrelated" (seed s + 3,
    agreement 0), the last three 1/4 of `size` each. `ConfoundedShapes(...).split(name)
    .counterfactual(example, do)` re-renders the exact counterfactual of any stored example of
    that split. See `causalvision.data.confounded`.

    Configs "32px" (default) and "64px" with 4 classes and agreement 0.95; any other options
    through `ConfoundedShapesBuilder(num_classes=..., agreement=..., image_size=...)` (read
    back with `load_source(ConfoundedShapes(...).tfds_name)`).
    """

    name = "confounded_shapes"
    BUILDER_CONFIGS = [  # noqa: RUF012 (tfds API)
        _confounded_config(CONFOUNDED_DEFAULTS["num_classes"], CONFOUNDED_DEFAULTS["agreement"], s)
        for s in CONFOUNDED_SIZES
    ]
    DEFAULT_BUILDER_CONFIG_NAME = f"{CONFOUNDED_DEFAULTS['image_size']}px"
    DEFAULT_SIZE = 20_000
    TEST_DIVISOR = 4

    DATASET = ConfoundedShapes
    OPTIONS = ("num_classes", "agreement", "image_size")
    _config = staticmethod(_confounded_config)

    def _split_sources(self) -> dict[str, GeneratedSource]:
        dataset, chunk = self._dataset(), self._chunk_size
        sources = super()._split_sources()
        for offset, split in ((2, "unconfounded"), (3, "anticorrelated")):
            sources[split] = GeneratedSource(
                dataset.split(split), self.test_size, self._seed + offset, chunk
            )
        return sources


def _confounded_kwargs(name: str, match: re.Match) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if match["size"] is not None:
        options["image_size"] = int(match["size"])
    if match["classes"] is not None:
        options["num_classes"] = int(match["classes"])
        try:
            options["agreement"] = float(match["agreement"])
        except ValueError:
            raise ValueError(f"name: {match['agreement']!r} in {name!r} is no number") from None
    try:
        ConfoundedShapes(**options)
    except ValueError as error:
        raise ValueError(f"name: {name!r} names no valid confounded shapes ({error})") from None
    return options


@dataclasses.dataclass(eq=False)
class SpriteScenesConfig(tfds.core.BuilderConfig):
    """`SpriteScenes` options; the config name is `SpriteScenes(...).config_name`:
    f"{image_size}px" for the default object counts, f"min{m}_max{M}_{image_size}px" otherwise."""

    max_objects: int = SCENES_DEFAULTS["max_objects"]
    min_objects: int = SCENES_DEFAULTS["min_objects"]
    image_size: int = SCENES_DEFAULTS["image_size"]


def _scenes_config(max_objects: int, min_objects: int, image_size: int) -> SpriteScenesConfig:
    """The config of `SpriteScenes(...)`, from its (already checked) options alone:
    building the dataset here would start JAX when this module is imported."""
    m, n, s = max_objects, min_objects, image_size
    return SpriteScenesConfig(
        name=scenes_config_name(m, n, s),
        max_objects=m,
        min_objects=n,
        image_size=s,
        description=f"{n} to {m} objects, {s}x{s} RGB images",
    )


class SpriteScenesBuilder(_OptionsBuilder):
    """Scenes of several coloured shapes with exact per-object attributes.

    Features: "image" uint8 (S, S, 3); "num_objects" class label (0..M); for each object slot
    k < M the class labels "shape_k", "colour_k" and the float32 "size_k", "x_k", "y_k"; the
    exogenous noise "rotation" (M,) float32. Slots k >= num_objects are absent (kept, not
    drawn). Instance masks are not stored: `SpriteScenes(...).instance_masks(example)`
    computes them exactly from a stored example, and `.counterfactual(example, do)`
    re-renders its exact counterfactual. See `causalvision.data.scenes`.

    Configs "64px" (default) and "128px" with 2 to 6 objects; any other options through
    `SpriteScenesBuilder(max_objects=..., min_objects=..., image_size=...)` (read back with
    `load_source(SpriteScenes(...).tfds_name)`).
    """

    name = "sprite_scenes"
    BUILDER_CONFIGS = [  # noqa: RUF012 (tfds API)
        _scenes_config(SCENES_DEFAULTS["max_objects"], SCENES_DEFAULTS["min_objects"], s)
        for s in SCENES_SIZES
    ]
    DEFAULT_BUILDER_CONFIG_NAME = f"{SCENES_DEFAULTS['image_size']}px"
    DEFAULT_SIZE = 20_000
    TEST_DIVISOR = 4

    DATASET = SpriteScenes
    OPTIONS = ("max_objects", "min_objects", "image_size")
    _config = staticmethod(_scenes_config)


def _scenes_kwargs(name: str, match: re.Match) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if match["size"] is not None:
        options["image_size"] = int(match["size"])
    if match["max"] is not None:
        options["min_objects"], options["max_objects"] = int(match["min"]), int(match["max"])
    try:
        SpriteScenes(**options)
    except ValueError as error:
        raise ValueError(f"name: {name!r} names no valid sprite scenes ({error})") from None
    return options


@dataclasses.dataclass(eq=False)
class CaptionedScenesConfig(tfds.core.BuilderConfig):
    """`CaptionedScenes` options; the config name is `CaptionedScenes(...).config_name`:
    f"{image_size}px" for 4 slots, f"max{M}_{image_size}px" otherwise."""

    max_objects: int = CAPTIONED_DEFAULTS["max_objects"]
    image_size: int = CAPTIONED_DEFAULTS["image_size"]


def _captioned_config(max_objects: int, image_size: int) -> CaptionedScenesConfig:
    """The config of `CaptionedScenes(...)`, from its (already checked) options alone."""
    return CaptionedScenesConfig(
        name=captioned_config_name(max_objects, image_size),
        max_objects=max_objects,
        image_size=image_size,
        description=f"{max_objects} object slots, {image_size}x{image_size} RGB images",
    )


class CaptionedScenesBuilder(_OptionsBuilder):
    """Sprite scenes with per-slot presence, a star-triangle confounder and exact captions.

    Features: "image" uint8 (S, S, 3); "theme" class label (plain, starry); for each object
    slot k < M the class labels "present_k", "shape_k", "colour_k" and the float32 "size_k",
    "x_k", "y_k"; the exogenous noise "rotation" (M,), "wording" (M,) and "shape_noise"
    (2, 5) float32. Captions, boxes and instance masks are not stored:
    `CaptionedScenes(...).captions(example)`, `.boxes(example)` and `.instance_masks(example)`
    compute them exactly from a stored example, `.remove_object` / `.mask_object` give its
    counterfactual test images. See `causalvision.data.captioned_scenes`.

    Configs "64px" (default) and "32px" with 4 slots; any other options through
    `CaptionedScenesBuilder(max_objects=..., image_size=...)` (read back with
    `load_source(CaptionedScenes(...).tfds_name)`).
    """

    name = "captioned_scenes"
    BUILDER_CONFIGS = [  # noqa: RUF012 (tfds API)
        _captioned_config(CAPTIONED_DEFAULTS["max_objects"], s) for s in CAPTIONED_SIZES
    ]
    DEFAULT_BUILDER_CONFIG_NAME = f"{CAPTIONED_DEFAULTS['image_size']}px"
    DEFAULT_SIZE = 20_000
    TEST_DIVISOR = 4

    DATASET = CaptionedScenes
    OPTIONS = ("max_objects", "image_size")
    _config = staticmethod(_captioned_config)


def _captioned_kwargs(name: str, match: re.Match) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if match["size"] is not None:
        options["image_size"] = int(match["size"])
    if match["max"] is not None:
        options["max_objects"] = int(match["max"])
    try:
        CaptionedScenes(**options)
    except ValueError as error:
        raise ValueError(f"name: {name!r} names no valid captioned scenes ({error})") from None
    return options


def _builder_kwargs(name: Any) -> tuple[type[_SyntheticBuilder], dict[str, Any]]:
    """The builder class and its kwargs for "morpho_digits", "pendulum", "pendulum/<S>px",
    "confounded_shapes", "confounded_shapes/<S>px", "confounded_shapes/k<K>_a<A>_<S>px",
    "sprite_scenes", "sprite_scenes/<S>px", "sprite_scenes/min<m>_max<M>_<S>px",
    "captioned_scenes", "captioned_scenes/<S>px" or "captioned_scenes/max<M>_<S>px"."""
    if name == "morpho_digits":
        return MorphoDigitsBuilder, {}
    confounded = _CONFOUNDED_NAME.match(name) if isinstance(name, str) else None
    if confounded is not None:
        return ConfoundedShapesBuilder, _confounded_kwargs(name, confounded)
    scenes = _SCENES_NAME.match(name) if isinstance(name, str) else None
    if scenes is not None:
        return SpriteScenesBuilder, _scenes_kwargs(name, scenes)
    captioned = _CAPTIONED_NAME.match(name) if isinstance(name, str) else None
    if captioned is not None:
        return CaptionedScenesBuilder, _captioned_kwargs(name, captioned)
    match = _PENDULUM_NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"name: expected one of {KNOWN_NAMES} (or 'pendulum/<S>px' with S >= 16, or "
            f"ConfoundedShapes(...).tfds_name, SpriteScenes(...).tfds_name or "
            f"CaptionedScenes(...).tfds_name), got {name!r}"
        )
    size = DEFAULT_PENDULUM_SIZE if match["size"] is None else int(match["size"])
    if size < 16:
        raise ValueError(f"name: pendulum images need a size >= 16 pixels, got {name!r}")
    return PendulumBuilder, {"image_size": size}


def _tfds_name(builder: tfds.core.DatasetBuilder) -> str:
    config = builder.builder_config
    return builder.name if config is None else f"{builder.name}/{config.name}"


def build_dataset(
    name: str,
    *,
    size: int | None = None,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> pathlib.Path:
    """Render a synthetic dataset and write it as TFDS array_record files; return its directory.

    Args:
      name: "morpho_digits", "pendulum" (64x64), "pendulum/<S>px" (e.g. "pendulum/96px"),
        "confounded_shapes" (32x32) or another `ConfoundedShapes(...).tfds_name`,
        "sprite_scenes" (64x64) or another `SpriteScenes(...).tfds_name`, "captioned_scenes"
        (64x64) or another `CaptionedScenes(...).tfds_name`.
      size: examples in the train split (default 60,000 for Morpho digits, 5,482 for the
        pendulum, 20,000 for the confounded shapes and the sprite and captioned scenes); the
        test split gets
        1/6, 1/3 resp. 1/4 of it, with seed `seed + 1` (and the confounded shapes'
        "unconfounded" and "anticorrelated" splits 1/4 each, seeds `seed + 2` and `seed + 3`).
      data_dir: TFDS data directory (default: `$TFDS_DATA_DIR` or ~/tensorflow_datasets).
      seed: generator seed (>= 0); train example i is `GeneratedSource(dataset, size, seed)[i]`.
      progress: show a progress bar per split.
      overwrite: replace a dataset already built there with another size or seed. Without it,
        a dataset built with the same size and seed is reused and a different one is an error.

    Returns:
      The dataset directory, e.g. `<data_dir>/morpho_digits/1.0.0`.
    """
    cls, kwargs = _builder_kwargs(name)
    if size is not None:
        check_int(size, "size", 1)
    check_int(seed, "seed", 0)
    if data_dir is not None:
        check_directory(data_dir, "data_dir")
    builder = cls(data_dir=data_dir, size=size, seed=seed, progress=progress, **kwargs)
    path = pathlib.Path(os.fspath(builder.data_path))
    if builder.is_prepared():
        wanted = {"size": builder._size, "seed": builder._seed, "chunk_size": builder._chunk_size}
        stored = {k: builder.info.metadata.get(k) for k in wanted}
        if stored == wanted:
            return path
        if not overwrite:
            raise ValueError(
                f"name: {name!r} is already built in {path} with {stored}, not {wanted}; "
                "pass overwrite=True, remove that directory, or use another data_dir"
            )
        shutil.rmtree(path)
        builder = cls(data_dir=data_dir, size=size, seed=seed, progress=progress, **kwargs)
    # TFDS's own bars would duplicate ours; restore the user's setting afterwards.
    bars = tqdm_utils._active
    tfds.display_progress_bar(False)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    finally:
        tfds.display_progress_bar(bars)
    return path


def load_source(name: str, split: str = "train", data_dir: str | os.PathLike | None = None) -> Any:
    """Random access to a built dataset: `tfds.data_source(name, split=split, data_dir=...)`.

    Returns a `Sequence` of examples (dicts of numpy arrays, as `GeneratedSource` gives) that
    grain can read and pickle. Never builds: a missing dataset is a `FileNotFoundError`.

    Args:
      name: as for `build_dataset`.
      split: "train", "test" (the confounded shapes also "unconfounded", "anticorrelated") or
        a TFDS split expression such as "train[:1000]".
      data_dir: the directory given to `build_dataset`.
    """
    cls, kwargs = _builder_kwargs(name)
    if not isinstance(split, str):
        raise ValueError(f"split: expected a str such as 'train' or 'test', got {split!r}")
    builder = cls(data_dir=data_dir, **kwargs)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"{name!r} is not built in {os.fspath(builder.data_path)}; build it with "
            f"`causalvision data build {name} --data-dir ...` or build_dataset({name!r}, ...)"
        )
    return tfds.data_source(_tfds_name(builder), split=split, data_dir=data_dir, download=False)
