"""The grain pipeline: exact order, epochs as permutations, host shards, exact resume."""

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from causalvision.data import ArraySource, make_pipeline


def indices(n: int) -> ArraySource:
    """A source whose example `i` is `{"i": i}`: batches show exactly what was served."""
    return ArraySource({"i": np.arange(n)})


def served(ds) -> np.ndarray:
    """All indices a finite pipeline serves, in order."""
    return np.concatenate([batch["i"] for batch in ds])


def take(it, k: int) -> list:
    return [next(it) for _ in range(k)]


def assert_batches_equal(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for name in x:
            np.testing.assert_array_equal(x[name], y[name], strict=True)


def add_one(example: dict) -> dict:
    return {**example, "i": example["i"] + 1}


def double(example: dict) -> dict:
    return {**example, "twice": 2 * example["i"]}


class ListSource:
    """A plain random-access source (not an ArraySource): a list of example dicts."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


# Order and epochs ------------------------------------------------------------------------------


def test_same_seed_serves_the_same_batches_and_another_seed_another_order():
    def first(seed: int) -> list:
        return take(iter(make_pipeline(indices(50), batch_size=5, seed=seed, shard=(0, 1))), 12)

    assert_batches_equal(first(7), first(7))
    a, b = np.concatenate([x["i"] for x in first(7)]), np.concatenate([x["i"] for x in first(8)])
    assert not np.array_equal(a, b)
    # Both serve the first epoch as a permutation of all 50 examples.
    np.testing.assert_array_equal(np.sort(a[:50]), np.arange(50))
    np.testing.assert_array_equal(np.sort(b[:50]), np.arange(50))


def test_every_epoch_is_a_fresh_permutation_of_all_examples():
    # 10 examples in batches of 4 over 3 epochs: batches span epoch boundaries, 30 // 4 = 7
    # batches, and only the last 2 examples of the final epoch are left in a short batch.
    out = served(make_pipeline(indices(10), batch_size=4, seed=0, num_epochs=3, shard=(0, 1)))
    assert out.shape == (28,)
    epochs = [out[0:10], out[10:20], out[20:28]]
    for epoch in epochs[:2]:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(10))
    assert len(set(epochs[2].tolist())) == 8
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(10))


def test_neighbouring_seeds_do_not_serve_shifted_epochs():
    # grain reseeds epoch e with seed + e; the pipeline hashes the seed so that seed 1's
    # first epoch is not seed 0's second.
    zero = served(make_pipeline(indices(20), batch_size=20, seed=0, num_epochs=2, shard=(0, 1)))
    one = served(make_pipeline(indices(20), batch_size=20, seed=1, num_epochs=1, shard=(0, 1)))
    assert not np.array_equal(zero[20:], one)


def test_without_shuffle_the_source_order_is_kept_and_epochs_concatenate():
    ds = make_pipeline(indices(5), batch_size=2, shuffle=False, num_epochs=2, shard=(0, 1))
    assert [b["i"].tolist() for b in ds] == [[0, 1], [2, 3], [4, 0], [1, 2], [3, 4]]


def test_one_epoch_stops_after_the_full_batches_or_serves_the_short_one():
    ds = make_pipeline(indices(10), batch_size=3, seed=0, num_epochs=1, shard=(0, 1))
    it = iter(ds)
    assert [len(b["i"]) for b in take(it, 3)] == [3, 3, 3]
    with pytest.raises(StopIteration):
        next(it)
    keep = make_pipeline(
        indices(10), batch_size=3, seed=0, num_epochs=1, shard=(0, 1), drop_remainder=False
    )
    sizes = [len(b["i"]) for b in keep]
    assert sizes == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.sort(served(keep)), np.arange(10))


def test_reader_threads_do_not_change_the_batches():
    kwargs = dict(batch_size=4, seed=3, num_epochs=2, shard=(0, 1))
    sync = list(make_pipeline(indices(30), num_threads=0, **kwargs))
    threaded = list(make_pipeline(indices(30), num_threads=2, prefetch=3, **kwargs))
    assert_batches_equal(sync, threaded)


# Shards ----------------------------------------------------------------------------------------


def test_two_shards_are_disjoint_and_cover_every_example_each_epoch():
    def shard(k: int) -> np.ndarray:
        return served(make_pipeline(indices(12), batch_size=2, seed=5, num_epochs=2, shard=(k, 2)))

    a, b = shard(0), shard(1)
    assert a.shape == b.shape == (12,)
    for epoch in (slice(0, 6), slice(6, 12)):
        assert set(a[epoch].tolist()).isdisjoint(b[epoch].tolist())
        np.testing.assert_array_equal(np.sort(np.concatenate([a[epoch], b[epoch]])), np.arange(12))


def test_each_step_sees_the_same_examples_whatever_the_number_of_hosts():
    # Strided shards of one global permutation: the global batch at step i (both hosts' batch
    # i) is the one-host batch i of twice the size, when the shard count divides N.
    one = list(make_pipeline(indices(24), batch_size=6, seed=2, num_epochs=3, shard=(0, 1)))
    two = [
        list(make_pipeline(indices(24), batch_size=3, seed=2, num_epochs=3, shard=(k, 2)))
        for k in (0, 1)
    ]
    assert len(one) == len(two[0]) == len(two[1]) == 12
    for i, batch in enumerate(one):
        joined = np.concatenate([two[0][i]["i"], two[1][i]["i"]])
        np.testing.assert_array_equal(np.sort(joined), np.sort(batch["i"]))


def test_shards_are_strided_and_equal_sized():
    # 11 examples over 2 shards: 5 each; the 11th permutation position is skipped.
    a, b = (
        served(make_pipeline(indices(11), batch_size=5, shuffle=False, num_epochs=1, shard=(k, 2)))
        for k in (0, 1)
    )
    assert a.tolist() == [0, 2, 4, 6, 8]
    assert b.tolist() == [1, 3, 5, 7, 9]


def test_the_default_shard_is_this_process_of_all_processes():
    default = take(iter(make_pipeline(indices(20), batch_size=4, seed=1)), 6)
    explicit = take(iter(make_pipeline(indices(20), batch_size=4, seed=1, shard=(0, 1))), 6)
    assert_batches_equal(default, explicit)


# Batching and transforms -----------------------------------------------------------------------


def test_nested_dicts_are_stacked_leaf_by_leaf_with_their_dtypes():
    images = np.arange(6 * 2 * 2 * 1, dtype=np.uint8).reshape(6, 2, 2, 1)
    source = {"image": images, "attrs": {"label": np.arange(6, dtype=np.int32) * 10,
                                          "w": np.linspace(0, 1, 6, dtype=np.float32)}}  # fmt: skip
    (batch,) = make_pipeline(source, batch_size=6, shuffle=False, num_epochs=1, shard=(0, 1))
    assert set(batch) == {"image", "attrs"} and set(batch["attrs"]) == {"label", "w"}
    np.testing.assert_array_equal(batch["image"], images, strict=True)
    np.testing.assert_array_equal(batch["attrs"]["label"], source["attrs"]["label"], strict=True)
    np.testing.assert_array_equal(batch["attrs"]["w"], source["attrs"]["w"], strict=True)


def test_transforms_are_applied_per_example_in_order():
    ds = make_pipeline(
        indices(4), batch_size=4, shuffle=False, num_epochs=1, shard=(0, 1),
        transforms=[add_one, double],
    )  # fmt: skip
    (batch,) = ds
    assert batch["i"].tolist() == [1, 2, 3, 4]
    assert batch["twice"].tolist() == [2, 4, 6, 8]


def test_any_random_access_source_of_dicts_works():
    source = ListSource([{"x": np.full((2,), k, np.float32)} for k in range(6)])
    batches = list(make_pipeline(source, batch_size=3, shuffle=False, num_epochs=1, shard=(0, 1)))
    assert [b["x"].shape for b in batches] == [(3, 2), (3, 2)]
    np.testing.assert_array_equal(batches[1]["x"][:, 0], np.array([3, 4, 5], np.float32))


# Exact resume ----------------------------------------------------------------------------------


def pipeline_for_resume() -> grain.IterDataset:
    source = {"i": np.arange(37), "image": np.arange(37 * 3, dtype=np.uint8).reshape(37, 3)}
    return make_pipeline(source, batch_size=5, seed=11, shard=(0, 1), num_threads=2, prefetch=4)


def test_iterator_state_replays_the_following_batches():
    uninterrupted = take(iter(pipeline_for_resume()), 20)
    it = iter(pipeline_for_resume())
    take(it, 9)  # 9 batches of 5 = 45 examples: into the second epoch of 37
    state = it.get_state()
    assert_batches_equal(take(it, 11), uninterrupted[9:])
    fresh = iter(pipeline_for_resume())
    fresh.set_state(state)
    assert_batches_equal(take(fresh, 11), uninterrupted[9:])


def test_orbax_round_trip_resumes_bit_for_bit(tmp_path):
    uninterrupted = take(iter(pipeline_for_resume()), 16)
    it = iter(pipeline_for_resume())
    take(it, 7)
    options = ocp.CheckpointManagerOptions(max_to_keep=2)
    with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as manager:
        save = ocp.args.Composite(
            data=grain.checkpoint.CheckpointSave(it), meta=ocp.args.JsonSave({"step": 7})
        )
        manager.save(7, args=save)
        # The save is asynchronous; the state must be the one at save time, not later.
        take(it, 3)
        manager.wait_until_finished()
    with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as manager:
        assert manager.latest_step() == 7
        fresh = iter(pipeline_for_resume())
        restore = ocp.args.Composite(
            data=grain.checkpoint.CheckpointRestore(fresh), meta=ocp.args.JsonRestore()
        )
        restored = manager.restore(7, args=restore)
    assert restored.meta == {"step": 7}
    assert_batches_equal(take(fresh, 9), uninterrupted[7:])


# Errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(batch_size=0), "batch_size: expected an int >= 1"),
        (dict(batch_size=2.0), "batch_size: expected an int >= 1"),
        (dict(batch_size=6), "batch_size: 6 is larger than this process's shard of 5"),
        (dict(batch_size=3, shard=(0, 2)), "batch_size: 3 is larger .* shard of 2"),
        (dict(seed=-1), "seed: expected an int >= 0"),
        (dict(num_epochs=0), "num_epochs: expected an int >= 1"),
        (dict(num_threads=-1), "num_threads"),
        (dict(prefetch=-1), "prefetch"),
        (dict(shard=(2, 2)), r"shard: expected \(index, count\)"),
        (dict(shard=(-1, 2)), r"shard: expected \(index, count\)"),
        (dict(shard=(0, 0)), r"shard: expected \(index, count\)"),
        (dict(shard=(0, 1, 2)), r"shard: expected \(index, count\)"),
        (dict(shard=(True, 2)), r"shard: expected \(index, count\)"),
        (dict(shard="01"), r"shard: expected \(index, count\)"),
        (dict(shard=(0, 6)), "shard: 6 shards of a source of 5 examples"),
        (dict(transforms=[add_one, 3]), r"transforms\[1\]: expected a callable"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    kwargs = {"batch_size": 1, "shard": (0, 1), **kwargs}
    with pytest.raises(ValueError, match=match):
        make_pipeline(indices(5), **kwargs)


def test_a_short_batch_larger_than_the_shard_is_allowed_without_drop_remainder():
    ds = make_pipeline(indices(5), batch_size=8, num_epochs=1, shard=(0, 1), drop_remainder=False)
    assert [len(b["i"]) for b in ds] == [5]


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (ListSource([]), "source: expected at least one example"),
        (iter([{"i": 0}]), "source: expected a random-access source"),
        ({"a": np.zeros(3), "b": {"c": np.zeros(4)}}, "arrays: expected leaves of one leading"),
        ({"a": np.zeros(3), "b": np.float32(1)}, r"arrays\['b'\]: expected an array"),
        ({}, "arrays: expected a non-empty dict"),
        ({"a": np.zeros(3), "b": {}}, r"arrays\['b'\]: expected a non-empty dict"),
    ],
)
def test_bad_sources_are_named(source, match):
    with pytest.raises(ValueError, match=match):
        make_pipeline(source, batch_size=1, shard=(0, 1))


def test_array_source_indexes_like_a_list():
    source = ArraySource({"x": np.arange(3) * 2, "y": {"z": np.ones((3, 2), np.uint8)}})
    assert len(source) == 3
    assert source[-1]["x"] == 4 and source[1]["y"]["z"].tolist() == [1, 1]
    with pytest.raises(IndexError, match="index 3 out of range"):
        source[3]
    assert repr(source) == "ArraySource(len=3, shapes={\"['x']\": (3,), \"['y']['z']\": (3, 2)})"
