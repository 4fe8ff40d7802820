"""grain input pipelines: global shuffle, per-host shards, batching, exact resume.

`make_pipeline` turns any random-access source (a `tfds.data_source`, a `GeneratedSource`, an
`ArraySource` or anything with `__len__` and `__getitem__` returning a dict of numpy arrays)
into a `grain.IterDataset` of per-process batches. Its iterator is checkpointable: its state is
one integer (the index of the next batch), saved by `grain.checkpoint.CheckpointSave` inside an
orbax `ocp.args.Composite`, and replays bit for bit because every batch is a pure function of
(source, seed, shard, batch index).

Order of one epoch, for `N = len(source)` examples and `shard = (k, n)`:

1. every process computes the same global permutation `perm_e` of `range(N)` for epoch `e`,
   from `seed` and `e` (a fresh permutation per epoch; identity when `shuffle=False`);
2. process `k` takes the strided slice `perm_e[k : n * (N // n) : n]`, `N // n` examples.
   The `N % n` positions at the end of the permutation are skipped so that every process gets
   the same number of batches (multi-host steps stay in lock step); they are different
   examples in every epoch when shuffling;
3. the per-example `transforms` are applied, epochs are concatenated, and the stream is cut
   into batches of `batch_size`; a batch may span two epochs.

So each epoch is a permutation of the whole dataset across the processes (exactly, when
`n` divides `N`), and because the slice is strided, the global batch of step `i` (the
concatenation of every process's batch `i`) holds exactly the examples the one-process
pipeline with batch `n * batch_size` serves at step `i` (when `n` divides `N`): what a step
sees does not depend on how many hosts share the work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np

from causalvision.validation import check_int

__all__ = ["ArraySource", "make_pipeline"]

# Threads reading examples ahead of the consumer: per-example work here is numpy (GIL-bound)
# or decoding / rendering that releases the GIL; a few threads hide latency without
# oversubscribing a small CPU. Measured in benchmarks/data_throughput.py.
DEFAULT_NUM_THREADS = min(4, os.cpu_count() or 1)
# Batches buffered ahead (grain's default of 500 *batches* would pin hundreds of MB).
DEFAULT_PREFETCH = 8


def _leaves(tree: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """(path, leaf) pairs of a nested dict, paths written as `['a']['b']`."""
    out = []
    for name, value in tree.items():
        path = f"{prefix}[{name!r}]"
        if isinstance(value, Mapping):
            out.extend(_leaves(value, path))
        else:
            out.append((path, value))
    return out


def _take(tree: Mapping[str, Any], index: int) -> dict[str, Any]:
    return {
        name: _take(value, index) if isinstance(value, Mapping) else value[index]
        for name, value in tree.items()
    }


class ArraySource:
    """A random-access source over a (nested) dict of equal-length arrays, held in memory.

    Args:
      arrays: a dict whose leaves are arrays (anything `np.asarray` takes) of one leading
        length `N`; nested dicts are kept as nested dicts.

    `source[i]` is the dict of the leaves' `i`-th rows (`leaf[i]`, shape `leaf.shape[1:]`,
    the leaf's dtype; views, not copies). Negative indices count from the end as for a list.

    Example:
      >>> import numpy as np
      >>> images, labels = np.zeros((10, 4, 4, 1), np.uint8), np.arange(10)
      >>> source = ArraySource({"image": images, "label": labels})
      >>> len(source), int(source[3]["label"]), source[-1]["image"].shape
      (10, 3, (4, 4, 1))
      >>> ds = make_pipeline(source, batch_size=4, seed=0)  # shuffled batches, forever
      >>> next(iter(ds))["image"].shape
      (4, 4, 4, 1)
    """

    def __init__(self, arrays: Mapping[str, Any]):
        if not isinstance(arrays, Mapping) or not arrays:
            raise ValueError(f"arrays: expected a non-empty dict of arrays, got {arrays!r:.80}")
        self._arrays = self._as_numpy(arrays, "arrays")
        lengths = {}
        for path, leaf in _leaves(self._arrays, "arrays"):
            if leaf.ndim == 0:
                raise ValueError(
                    f"{path}: expected an array with a leading example axis, got a scalar"
                )
            lengths[path] = leaf.shape[0]
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays: expected leaves of one leading length, got {lengths}")
        self._length = next(iter(lengths.values()))

    def _as_numpy(self, tree: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out = {}
        for name, value in tree.items():
            path = f"{prefix}[{name!r}]"
            if isinstance(value, Mapping):
                if not value:
                    raise ValueError(f"{path}: expected a non-empty dict of arrays, got {{}}")
                out[name] = self._as_numpy(value, path)
            else:
                out[name] = np.asarray(value)
        return out

    @property
    def arrays(self) -> dict[str, Any]:
        """The held arrays (the nested dict, leading axis N), not copies."""
        return self._arrays

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for an ArraySource of {self._length}")
        return _take(self._arrays, index)

    def __repr__(self) -> str:
        shapes = {path: leaf.shape for path, leaf in _leaves(self._arrays, "")}
        return f"ArraySource(len={self._length}, shapes={shapes})"


def _grain_seed(seed: int) -> int:
    """A 32-bit shuffle seed that is a hash of `seed`.

    grain reshuffles epoch `e` with seed `s + e`, so seeds 0 and 1 would serve the same
    permutations one epoch apart; hashing makes neighbouring seeds unrelated.
    """
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])


def make_pipeline(
    source: Any,
    *,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard: tuple[int, int] | None = None,
    transforms: Sequence[Callable[[dict], dict]] = (),
    drop_remainder: bool = True,
    num_threads: int = DEFAULT_NUM_THREADS,
    prefetch: int = DEFAULT_PREFETCH,
) -> grain.IterDataset:
    """A grain dataset of this process's batches of `source`, reshuffled every epoch.

    Args:
      source: a random-access source: `len(source)` examples, `source[i]` a dict (possibly
        nested) of numpy arrays, as a `tfds.data_source`, `GeneratedSource` or `ArraySource`
        gives; a dict of equal-length arrays is wrapped in an `ArraySource`.
      batch_size: examples per batch *of this process* (the global batch is
        `batch_size * shard[1]`).
      seed: shuffle seed (int >= 0); all processes must pass the same one.
      shuffle: draw a fresh global permutation per epoch; `False` keeps the source's order.
      num_epochs: passes over the data; `None` repeats forever.
      shard: `(index, count)`: this process's shard of `count` strided shards (see the
        module docstring). Default `(jax.process_index(), jax.process_count())`.
      transforms: per-example functions `dict -> dict`, applied in order before batching.
        They run in reader threads (and must be picklable module-level callables if the
        dataset is later given worker processes with `mp_prefetch`).
      drop_remainder: drop the last batch if it is short (only matters for finite
        `num_epochs`); otherwise it is served with fewer rows.
      num_threads: reader threads; 0 (or `prefetch=0`) reads in the consuming thread.
      prefetch: batches read ahead of the consumer.

    Returns:
      A `grain.IterDataset`. Each element is the examples' dict with every leaf stacked to
      `(batch_size, *leaf.shape)`. `it = iter(ds)` has `it.get_state()` / `it.set_state()`
      and works with `grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)`.
      With finite `num_epochs` there are `num_epochs * (N // count) // batch_size` batches
      (rounded up without `drop_remainder`).

    Raises:
      ValueError: naming the argument, for an empty or non-random-access source, a dict
        source of unequal lengths, a bad `batch_size`, `seed`, `num_epochs`, `shard`,
        `num_threads` or `prefetch`, a `batch_size` larger than the shard under
        `drop_remainder`, or a transform that is not callable.
    """
    if isinstance(source, Mapping):
        source = ArraySource(source)
    if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")):
        raise ValueError(
            "source: expected a random-access source with __len__ and __getitem__ "
            f"(or a dict of arrays), got {type(source).__name__}"
        )
    num_examples = len(source)
    if num_examples == 0:
        raise ValueError("source: expected at least one example, got an empty source")
    batch_size = check_int(batch_size, "batch_size", 1)
    seed = check_int(seed, "seed", 0)
    if num_epochs is not None:
        num_epochs = check_int(num_epochs, "num_epochs", 1)
    num_threads = check_int(num_threads, "num_threads", 0)
    prefetch = check_int(prefetch, "prefetch", 0)
    if shard is None:
        shard = (jax.process_index(), jax.process_count())
    if (
        not isinstance(shard, tuple | list)
        or len(shard) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in shard)
        or not 0 <= shard[0] < shard[1]
    ):
        raise ValueError(
            f"shard: expected (index, count) ints with 0 <= index < count, got {shard!r}"
        )
    index, count = int(shard[0]), int(shard[1])
    if count > num_examples:
        raise ValueError(
            f"shard: {count} shards of a source of {num_examples} examples leave some empty"
        )
    per_shard = num_examples // count
    if drop_remainder and batch_size > per_shard:
        raise ValueError(
            f"batch_size: {batch_size} is larger than this process's shard of {per_shard} "
            f"examples ({num_examples} over {count} shard(s)); with drop_remainder no batch "
            "would be complete"
        )
    transforms = tuple(transforms)
    for k, fn in enumerate(transforms):
        if not callable(fn):
            raise ValueError(f"transforms[{k}]: expected a callable dict -> dict, got {fn!r}")

    ds = grain.MapDataset.source(source)
    if shuffle:
        # Shuffle before slicing, with the same seed everywhere: every process slices the same
        # global permutation. grain's shuffle sees the epoch through the slice and repeat
        # (indices past the end carry it) and reseeds with `seed + epoch`.
        ds = ds.shuffle(seed=_grain_seed(seed))
    ds = ds[index : count * per_shard : count]
    for fn in transforms:
        ds = ds.map(fn)
    # Repeat before batching: batches run across epoch boundaries, so no example is dropped
    # except the final short batch of a finite run.
    ds = ds.repeat(num_epochs).batch(batch_size, drop_remainder=drop_remainder)
    # A MapDataset of batches read by threads: the iterator's state is just the next batch
    # index, so it is small and replays exactly whatever the threads had read ahead.
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return ds.to_iter_dataset(options)
