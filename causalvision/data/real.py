"""Real datasets through TFDS (read without TensorFlow): Morpho-MNIST and CelebA attributes.

- `mnist_source`: MNIST padded to 32x32 (as deepscm and causal-gen), optionally perturbed the
  Morpho-MNIST way ("plain", "thin", "thicken"), with thickness and intensity measured by
  `MorphoDigits.measure`, so records look like the synthetic Morpho digits' ones.
- `celeba_source`: CelebA aligned faces, centre-cropped and resized, with the 40 binary
  attributes as one float32 vector in the fixed order `CELEBA_ATTRIBUTES`.

Both return random-access sources (`len`, `[i]`, `__getitems__`) whose per-example work is a
module-level, pickleable `grain.transforms.Map` (`MnistToMorpho`, `CelebAPreprocess`), usable
on its own in a grain pipeline as well.

Reading needs no TensorFlow once a dataset is prepared in array_record format. Preparing it
(the first `download=True` call) runs TFDS's own MNIST / CelebA builders, which read the
downloaded files with `tf.io.gfile`: do that once in an environment with TensorFlow, e.g.
`tfds build mnist --file_format=array_record`, and point `data_dir` at the result.

Morpho-MNIST perturbations (dccastro/Morpho-MNIST, `morphomnist/{morpho,perturb}.py`; Castro et
al., JMLR 2019; REFERENCE 1.2): upscale 4x (bicubic + Gaussian, as skimage's `pyramid_expand`),
binarise at min + ½(max - min), erode ("thin", amount 0.7) or dilate ("thicken", amount 1.0)
with a disk of radius int(amount · scale · thickness / 2), then downscale (Gaussian + bicubic,
as `pyramid_reduce`) to a uint8 image `(255 x).astype(uint8)`. "plain" is the same without the
morphology (Morpho-MNIST's "plain" set). What differs: the thickness that sets the radius is
`MorphoDigits.measure`'s (a ridge approximation of skimage's medial axis, on a bilinear
upscaling) rather than skimage's; resampling is scipy.ndimage's; the image is padded to 32x32
before, not after, perturbing (dilation cannot hit the border).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from scipy import ndimage

from causalvision.data.morpho import MorphoDigits
from causalvision.validation import check_int

__all__ = [
    "CELEBA_ATTRIBUTES",
    "MNIST_PERTURBATIONS",
    "CelebAPreprocess",
    "CelebASource",
    "MappedSource",
    "MnistToMorpho",
    "celeba_source",
    "mnist_source",
    "pad_to_32",
    "perturb",
]

#: The Morpho-MNIST perturbations `perturb` applies (`kind=`).
MNIST_PERTURBATIONS = ("plain", "thin", "thicken")
DEFAULT_AMOUNTS = {"plain": 0.0, "thin": 0.7, "thicken": 1.0}  # Morpho-MNIST's published sets
SCALE = 4  # Morpho-MNIST's UP_FACTOR
THRESHOLD = 0.5

#: The 40 CelebA attributes in the order of list_attr_celeba.txt (and TFDS's ATTR_HEADINGS).
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
CELEBA_SHAPE = (218, 178, 3)


# -------------------------------------------------------------------------------------------
# Morpho-MNIST perturbations.


def pad_to_32(image: Any) -> np.ndarray:
    """An MNIST image `(28, 28[, 1])` zero-padded by 2 to `(32, 32, 1)` uint8 (as deepscm)."""
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape != (28, 28, 1):
        raise ValueError(f"image: expected shape (28, 28) or (28, 28, 1), got {x.shape}")
    return np.pad(x.astype(np.uint8), ((2, 2), (2, 2), (0, 0)))


def _disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk: x² + y² <= r² on the integer grid."""
    r = np.arange(-radius, radius + 1)
    return r[:, None] ** 2 + r[None, :] ** 2 <= radius**2


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """skimage's pyramid_expand(order=3): bicubic resize, then Gaussian of sigma 2·scale/6."""
    up = ndimage.zoom(image, scale, order=3, mode="grid-mirror", grid_mode=True)
    return ndimage.gaussian_filter(up, sigma=2.0 * scale / 6.0, mode="mirror")


def _downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """skimage's pyramid_reduce(order=3): Gaussian of sigma 2·scale/6, then bicubic resize."""
    smooth = ndimage.gaussian_filter(image, sigma=2.0 * scale / 6.0, mode="mirror")
    down = ndimage.zoom(smooth, 1.0 / scale, order=3, mode="grid-mirror", grid_mode=True)
    return np.clip(down, 0.0, 1.0)  # skimage's resize clips to the input range


def _check_kind_amount(kind: Any, amount: Any) -> float:
    if kind not in MNIST_PERTURBATIONS:
        raise ValueError(f"kind: expected one of {MNIST_PERTURBATIONS}, got {kind!r}")
    if amount is None:
        return DEFAULT_AMOUNTS[kind]
    if isinstance(amount, bool) or not isinstance(amount, int | float | np.number):
        raise ValueError(f"amount: expected a number > 0 or None, got {amount!r}")
    if kind == "plain" and amount != 0:
        raise ValueError(f"amount: 'plain' takes no amount, got {amount!r}")
    if kind != "plain" and not (np.isfinite(amount) and amount > 0):
        raise ValueError(f"amount: expected a number > 0 for {kind!r}, got {amount!r}")
    return float(amount)


def perturb(
    image: Any, kind: str, amount: float | None = None, *, thickness: float | None = None
) -> np.ndarray:
    """Morpho-MNIST "plain", "thin" or "thicken" of one 32x32 digit image (module docstring).

    Args:
      image: `(32, 32)` or `(32, 32, 1)`, 0-255 (uint8 or float), light strokes on black.
      kind: "plain" (binarise and resample only), "thin" (erode) or "thicken" (dilate).
      amount: disk radius as a fraction of the stroke half-width (default 0.7 for "thin",
        1.0 for "thicken", as Morpho-MNIST's published sets).
      thickness: the image's stroke thickness in pixels; measured with
        `MorphoDigits.measure` if not given.

    Returns:
      uint8 `(32, 32, 1)`. A blank image comes back unchanged; a large "thin" amount can erase
      a thin digit entirely (as in Morpho-MNIST).
    """
    amount = _check_kind_amount(kind, amount)
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape != (32, 32, 1):
        raise ValueError(f"image: expected shape (32, 32) or (32, 32, 1), got {x.shape}")
    x = x.astype(np.float64)
    if x.max() <= x.min():  # blank: no stroke to binarise
        return np.clip(x, 0, 255).astype(np.uint8)
    hires = _upscale(x[:, :, 0] / 255.0, SCALE)
    low, high = hires.min(), hires.max()
    mask = hires >= low + THRESHOLD * (high - low)
    if kind != "plain":
        if thickness is None:
            thickness = float(MorphoDigits.measure(x[None].astype(np.float32))["thickness"][0])
        radius = int(amount * SCALE * thickness / 2.0)
        if radius > 0:
            op = ndimage.binary_dilation if kind == "thicken" else ndimage.binary_erosion
            mask = op(mask, structure=_disk(radius))
    down = _downscale(mask.astype(np.float64), SCALE)
    return (255.0 * down).astype(np.uint8)[:, :, None]  # truncation, as Morpho-MNIST


class MnistToMorpho(grain.transforms.Map):
    """A TFDS MNIST record -> a Morpho record (a grain map; also callable).

    `{"image": uint8 (28, 28, 1), "label": int}` becomes `{"image": uint8 (32, 32, 1),
    "digit": int64 (), "thickness": float32 (), "intensity": float32 ()}`: padded to 32x32,
    perturbed if `perturbation` is given, and measured with `MorphoDigits.measure` (after the
    perturbation) unless `measure=False` (then without "thickness" and "intensity"). Measuring
    costs a few ms per image on CPU.

    Args:
      perturbation: None, "plain", "thin" or "thicken" (see `perturb`).
      amount: the perturbation's amount (default 0.7 thin, 1.0 thicken).
      measure: add the measured "thickness" and "intensity".
    """

    def __init__(
        self, perturbation: str | None = None, amount: float | None = None, *, measure: bool = True
    ):
        if perturbation is None:
            if amount is not None:
                raise ValueError(f"amount: only with a perturbation, got amount={amount!r}")
        else:
            if perturbation not in MNIST_PERTURBATIONS:
                raise ValueError(
                    f"perturbation: expected None or one of {MNIST_PERTURBATIONS}, "
                    f"got {perturbation!r}"
                )
            amount = _check_kind_amount(perturbation, amount)
        self.perturbation = perturbation
        self.amount = amount
        self.measure = bool(measure)

    def __repr__(self) -> str:
        return (
            f"MnistToMorpho(perturbation={self.perturbation!r}, amount={self.amount!r}, "
            f"measure={self.measure})"
        )

    def map(self, element: Mapping[str, Any]) -> dict[str, Any]:
        image = pad_to_32(element["image"])
        original = image
        if self.perturbation is not None:
            thickness = None
            if self.perturbation != "plain":
                thickness = float(_measure(original)["thickness"])
            image = perturb(original, self.perturbation, self.amount, thickness=thickness)
        out = {"image": image, "digit": np.asarray(element["label"]).astype(np.int64)}
        if self.measure:
            out.update(_measure(image))
        return out

    def __call__(self, element: Mapping[str, Any]) -> dict[str, Any]:
        return self.map(element)


def _measure(image: np.ndarray) -> dict[str, np.ndarray]:
    values = MorphoDigits.measure(image[None].astype(np.float32))
    return {k: np.asarray(v[0]).astype(np.float32) for k, v in values.items()}


# -------------------------------------------------------------------------------------------
# CelebA.


class CelebAPreprocess(grain.transforms.Map):
    """A TFDS CelebA record -> `{"image": uint8 (S, S, 3), "attributes": float32 (K,)}`.

    The central `crop_size` x `crop_size` square of the 218x178 aligned face is resized to
    `image_size` with PIL's bicubic filter (antialiased). "attributes" holds 1.0 / 0.0 for the
    chosen attributes, in the order of `attribute_names` (default: all 40, `CELEBA_ATTRIBUTES`).

    Args:
      image_size: output side in pixels (e.g. 64, as the counterfactual-benchmark CelebA).
      crop_size: side of the central square cropped first (<= 178; 178 keeps the full width,
        148 is the common tighter face crop).
      attributes: names to keep, in this order; None for all 40.
    """

    def __init__(
        self,
        image_size: int = 64,
        *,
        crop_size: int = 178,
        attributes: Sequence[str] | None = None,
    ):
        self.image_size = check_int(image_size, "image_size", 1)
        self.crop_size = check_int(crop_size, "crop_size", 1, CELEBA_SHAPE[1])
        if attributes is None:
            names = CELEBA_ATTRIBUTES
        else:
            if isinstance(attributes, str) or not isinstance(attributes, Sequence):
                raise ValueError(
                    f"attributes: expected a sequence of attribute names or None, "
                    f"got {attributes!r}"
                )
            names = tuple(attributes)
            unknown = [n for n in names if n not in CELEBA_ATTRIBUTES]
            if unknown or not names or len(set(names)) != len(names):
                raise ValueError(
                    "attributes: expected distinct names from CELEBA_ATTRIBUTES, got "
                    f"{list(names)} (unknown: {unknown})"
                )
        self.attribute_names = names

    def __repr__(self) -> str:
        return (
            f"CelebAPreprocess(image_size={self.image_size}, crop_size={self.crop_size}, "
            f"attributes={list(self.attribute_names)})"
        )

    def map(self, element: Mapping[str, Any]) -> dict[str, Any]:
        image = np.asarray(element["image"])
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"element['image']: expected shape (H, W, 3), got {image.shape}")
        height, width = image.shape[:2]
        side = min(self.crop_size, height, width)
        top, left = (height - side) // 2, (width - side) // 2
        crop = Image.fromarray(image[top : top + side, left : left + side].astype(np.uint8))
        if side != self.image_size:
            crop = crop.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        attributes = element["attributes"]
        vector = np.array([bool(attributes[n]) for n in self.attribute_names], np.float32)
        return {"image": np.asarray(crop, np.uint8), "attributes": vector}

    def __call__(self, element: Mapping[str, Any]) -> dict[str, Any]:
        return self.map(element)


# -------------------------------------------------------------------------------------------
# Sources.


class MappedSource:
    """A random-access source whose examples are `transform(source[i])` (pickleable)."""

    def __init__(self, source: Any, transform: Callable[[Any], Any]):
        self.source = source
        self.transform = transform

    def __repr__(self) -> str:
        return f"MappedSource({self.source!r}, {self.transform!r})"

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.source[index])

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        if hasattr(self.source, "__getitems__"):
            records = self.source.__getitems__(indices)
        else:
            records = [self.source[i] for i in indices]
        return [self.transform(r) for r in records]


class CelebASource(MappedSource):
    """A `MappedSource` of preprocessed CelebA records that also names its attributes."""

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Names of the entries of each example's "attributes" vector, in order."""
        return self.transform.attribute_names


def _tfds_source(name: str, split: Any, data_dir: str | os.PathLike | None, download: bool) -> Any:
    if not isinstance(split, str):
        raise ValueError(f"split: expected a str such as 'train' or 'test', got {split!r}")
    # TFRECORD, TFDS's default, cannot be read (or finalised) without TensorFlow.
    options = {
        "split": split,
        "data_dir": data_dir,
        "builder_kwargs": {"file_format": "array_record"},
    }
    try:
        return tfds.data_source(name, download=False, **options)
    except Exception:
        if tfds.builder(name, data_dir=data_dir, file_format="array_record").is_prepared():
            raise  # prepared, so the split or the files are at fault: TFDS's error says which
    # TFDS's MNIST / CelebA builders read their downloads with tf.io.gfile: without TensorFlow
    # a download would fail half-way on a missing module, so say how to prepare it instead.
    if not download or importlib.util.find_spec("tensorflow") is None:
        where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
        raise FileNotFoundError(
            f"data_dir: {name!r} is not prepared in {str(where)!r}. Prepare it once where "
            f"TensorFlow is installed (`tfds build {name} --file_format=array_record "
            f"--data_dir DIR`), then pass data_dir=DIR; reading needs no TensorFlow"
        )
    return tfds.data_source(
        name,
        download=True,
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(try_download_gcs=False)
        },
        **options,
    )


def mnist_source(
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    perturbation: str | None = None,
    amount: float | None = None,
    measure: bool = True,
    download: bool = True,
) -> MappedSource:
    """MNIST as Morpho records: 32x32 uint8, digit, measured thickness and intensity.

    Args:
      split: "train" (60,000) or "test" (10,000), or a TFDS split expression.
      data_dir: TFDS data directory.
      perturbation: None (the original digits, padded), "plain", "thin" or "thicken".
      amount: perturbation amount (default 0.7 thin, 1.0 thicken).
      measure: add "thickness" and "intensity" measured with `MorphoDigits.measure`.
      download: download and prepare MNIST if missing (see the module docstring).

    Returns:
      A `MappedSource` of `{"image": uint8 (32, 32, 1), "digit": int64 (), "thickness",
      "intensity": float32 ()}`; the per-example work is `source.transform`, an `MnistToMorpho`.
    """
    transform = MnistToMorpho(perturbation, amount, measure=measure)
    return MappedSource(_tfds_source("mnist", split, data_dir, download), transform)


def celeba_source(
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    crop_size: int = 178,
    attributes: Sequence[str] | None = None,
    download: bool = True,
) -> CelebASource:
    """CelebA faces with their binary attributes as one float32 vector.

    Args:
      split: "train", "validation" or "test", or a TFDS split expression.
      data_dir: TFDS data directory.
      image_size, crop_size, attributes: see `CelebAPreprocess`.
      download: download and prepare CelebA if missing (see the module docstring).

    Returns:
      A `CelebASource` of `{"image": uint8 (S, S, 3), "attributes": float32 (K,)}`;
      `source.attribute_names` names the K attributes in order.
    """
    transform = CelebAPreprocess(image_size, crop_size=crop_size, attributes=attributes)
    return CelebASource(_tfds_source("celeb_a", split, data_dir, download), transform)
