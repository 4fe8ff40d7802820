"""Random-access data sources over the synthetic generators, stored on a uint8 image grid.

A `GeneratedSource` turns `MorphoDigits()` or `Pendulum(...)` into a sequence of `size`
examples that grain (or anything that wants `len` and `[i]`) can read in any order. Example `i`
is a pure function of `(seed, i)` (for a given `chunk_size` and dataset): it lives in chunk
`c = i // chunk_size`, and the whole chunk is rendered at once with

    dataset.sample(jax.random.fold_in(jax.random.key(seed), c), chunk_size)

so one jit-compiled render serves `chunk_size` examples and the order of reads never changes
the data. A small LRU cache keeps the last rendered chunks, so a sequential pass renders each
chunk once. Shuffled reads over many chunks re-render chunks; for those, build the dataset
once (`causalvision.data.build_dataset`) and read the array_record files instead.

Images are stored and served as uint8 (`quantize_image`), because that is what a dataset on
disk holds. The same function quantizes a re-rendered or counterfactual image, so re-rendering
a stored example with unchanged attributes (and style) reproduces its image bit for bit, and a
ground-truth counterfactual lives on the same grid as the data a model was trained on.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from causalvision.data.dataset import DATASETS, Dataset, get_dataset, storage_dtypes
from causalvision.lookup import resolve
from causalvision.validation import check_int

__all__ = ["GeneratedSource", "quantize_image", "stack_examples"]


def _pixel_scale(dataset: Any) -> float:
    if isinstance(dataset, str):
        return float(resolve(dataset, DATASETS, "dataset").pixel_scale)
    scale = getattr(dataset, "pixel_scale", None)
    if scale is None:
        raise ValueError(f"dataset: expected a Dataset or a dataset name, got {dataset!r}")
    return float(scale)


def quantize_image(dataset: Any, image: Any) -> np.ndarray:
    """A rendered float image (any shape, e.g. `(N, H, W, C)`) on the uint8 storage grid.

    `round(clip(x · dataset.pixel_scale, 0, 255))`: Morpho digits render in [0, 255] (scale
    1), the pendulum in [0, 1] (scale 255). Rounding is numpy's (half to even), in float32.

    Args:
      dataset: a `Dataset` or a dataset name (e.g. "morpho_digits").
      image: float array (numpy or JAX), finite.

    Returns:
      uint8 numpy array of the same shape.
    """
    scale = _pixel_scale(dataset)
    x = np.asarray(image)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"image: expected a real-valued array, got dtype {x.dtype}")
    x = x.astype(np.float32)
    bad = int((~np.isfinite(x)).sum())
    if bad:
        raise ValueError(f"image: expected finite values, got {bad} NaN or infinite value(s)")
    if scale != 1.0:
        x = np.float32(scale) * x
    return np.rint(np.clip(x, 0.0, 255.0)).astype(np.uint8)


def stack_examples(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack single examples (nested dicts of arrays) into one batch with a leading axis.

    `stack_examples([source[i] for i in idx])` gives what `MorphoDigits.counterfactual`,
    `.render` and `Pendulum.counterfactual` take (with the images as uint8).
    """
    if not examples:
        raise ValueError("examples: expected at least one example, got an empty sequence")
    first = examples[0]
    if isinstance(first, Mapping):
        return {k: stack_examples([e[k] for e in examples]) for k in first}
    return np.stack([np.asarray(e) for e in examples])


class GeneratedSource:
    """A random-access source of `size` examples of a synthetic dataset.

    Args:
      dataset: a `Dataset` (e.g. `MorphoDigits()`, `Pendulum(image_size)`) or its name.
      size: number of examples (>= 1).
      seed: generator seed; example `i` depends only on `(seed, i)` (and `chunk_size`).
      chunk_size: examples rendered together; part of the data's identity (changing it
        changes which key draws example `i`).
      cache_chunks: rendered chunks kept in memory, least recently used dropped first; the
        default None keeps every chunk (about 1 KB per Morpho example, S·S·3 bytes per
        pendulum one), so a shuffled epoch renders each chunk once. A small bound makes a
        shuffled read re-render a chunk for almost every example (~30 images/s).

    `source[i]` is a dict of numpy arrays for one example, no batch axis:

    categorical attributes int64 `()`, continuous ones float32 `()`, the dataset's
    exogenous fields float32 (nested dicts kept), and "image" uint8 `(H, W, C)`. E.g. Morpho
    digits: "digit", "thickness", "intensity", "style" {"slant", "width", "offset" `(2,)`,
    "jitter" `(P, 2)`} and "image" `(32, 32, 1)`.

    The attributes (and style) are exactly those the image was rendered from, so
    `quantize_image(dataset, dataset.render(stack_examples([source[i]])))[0]` equals
    `source[i]["image"]`, and `dataset.counterfactual(...)` of stored examples gives their exact
    counterfactual images.

    Example:
      >>> from causalvision.data import Pendulum, quantize_image, stack_examples
      >>> pendulum = Pendulum(image_size=16)
      >>> source = GeneratedSource(pendulum, size=60_000, seed=0, chunk_size=8)
      >>> example = source[5]  # renders chunk 0 (examples 0-7) once, then caches it
      >>> example["image"].dtype, example["image"].shape
      (dtype('uint8'), (16, 16, 3))
      >>> image = pendulum.render(stack_examples([example]))  # again, from its attributes
      >>> bool((quantize_image(pendulum, image)[0] == example["image"]).all())
      True
    """

    def __init__(
        self,
        dataset: Dataset | str,
        size: int,
        seed: int = 0,
        chunk_size: int = 256,
        *,
        cache_chunks: int | None = None,
    ):
        if not isinstance(dataset, str | Dataset):
            raise ValueError(f"dataset: expected a Dataset or a dataset name, got {dataset!r}")
        self.dataset = get_dataset(dataset)
        self.name = self.dataset.name
        self.size = check_int(size, "size", 1)
        self.seed = check_int(seed, "seed", 0)
        self.chunk_size = check_int(chunk_size, "chunk_size", 1)
        self.cache_chunks = (
            None if cache_chunks is None else check_int(cache_chunks, "cache_chunks", 1)
        )
        self._init_cache()

    def _init_cache(self) -> None:
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        # grain may read from several threads; one lock also avoids rendering a chunk twice.
        self._lock = threading.Lock()

    # Pickling (grain worker processes): keep the dataset and the ints, not the cache or lock.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "size": self.size,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "cache_chunks": self.cache_chunks,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_cache()

    def __repr__(self) -> str:
        return (
            f"GeneratedSource({self.dataset!r}, size={self.size}, seed={self.seed}, "
            f"chunk_size={self.chunk_size})"
        )

    def __len__(self) -> int:
        return self.size

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of one stored image, `(H, W, C)`."""
        return tuple(self.dataset.image_shape)

    def _render_chunk(self, chunk: int) -> dict[str, Any]:
        key = jax.random.fold_in(jax.random.key(self.seed), chunk)
        batch = self.dataset.sample(key, self.chunk_size)
        out: dict[str, Any] = {"image": quantize_image(self.dataset, batch["image"])}
        for name, dtype in storage_dtypes(self.dataset).items():
            out[name] = np.asarray(batch[name]).astype(dtype)
        for name in self.dataset.exogenous:
            out[name] = jax.tree.map(lambda v: np.asarray(v).astype(np.float32), batch[name])
        return out

    def _chunk(self, chunk: int) -> dict[str, Any]:
        with self._lock:
            if chunk in self._cache:
                self._cache.move_to_end(chunk)
                return self._cache[chunk]
            data = self._render_chunk(chunk)
            self._cache[chunk] = data
            while self.cache_chunks is not None and len(self._cache) > self.cache_chunks:
                self._cache.popitem(last=False)
            return data

    def _index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"index: expected an int, got {type(index).__name__}")
        index = int(index)
        if not -self.size <= index < self.size:
            raise IndexError(f"index: {index} out of range for a source of size {self.size}")
        return index % self.size

    @staticmethod
    def _take(data: Mapping[str, Any], row: int) -> dict[str, Any]:
        # Copies, so a consumer that edits an example in place cannot corrupt the cache.
        return {
            k: _take_nested(v, row) if isinstance(v, Mapping) else np.array(v[row])
            for k, v in data.items()
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._index(index)
        return self._take(self._chunk(index // self.chunk_size), index % self.chunk_size)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Several examples in the given order; each chunk is looked up (or rendered) once."""
        positions = [self._index(i) for i in indices]
        chunks = {c: self._chunk(c) for c in sorted({i // self.chunk_size for i in positions})}
        return [self._take(chunks[i // self.chunk_size], i % self.chunk_size) for i in positions]


def _take_nested(data: Mapping[str, Any], row: int) -> dict[str, Any]:
    return {k: np.array(v[row]) for k, v in data.items()}
