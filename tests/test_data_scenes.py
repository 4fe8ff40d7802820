"""The sprite scenes against their SCM's tables, hand-computed pixels and masks, exact
counterfactual footprints, OC-CRL perturbation pairs and the TFDS round trip."""

import sys

import jax
import numpy as np
import pytest

from causalvision.data import (
    GeneratedSource,
    SpriteScenes,
    SpriteScenesBuilder,
    build_dataset,
    load_source,
    quantize_image,
    stack_examples,
)
from causalvision.data.scenes import (
    BACKGROUND,
    PALETTE,
    POSITION_RANGE,
    PROPERTIES,
    RANGES,
    SHIFT_RANGE,
    SIZE_RANGE,
    num_objects_table,
)
from causalvision.data.tfds_builders import _builder_kwargs

DRAWS = 20_000
SIGMAS = 5  # binomial bounds: a false alarm in ~1 of 3.5 million checks
NUM = 64
M = 4


@pytest.fixture(scope="module")
def data():
    return SpriteScenes(max_objects=M, min_objects=1, image_size=32)


@pytest.fixture(scope="module")
def batch(data):
    return data.sample(jax.random.key(0), NUM)


def _within_binomial(count: int, num: int, p: float) -> bool:
    if p in (0.0, 1.0):
        return count == num * p
    return abs(count - num * p) <= SIGMAS * np.sqrt(num * p * (1 - p))


def _scene(data, num, **slots):
    """A hand-built example: every slot at rest (absent unless num says), `slots` overriding
    e.g. shape_0=1; values are constants broadcast to `num` examples."""
    example = {"num_objects": np.ones(num, np.int32)}
    for k in range(data.max_objects):
        example.update({f"shape_{k}": 0, f"colour_{k}": 0, f"size_{k}": 0.1})
        example.update({f"x_{k}": 0.5, f"y_{k}": 0.5})
    example.update(slots)
    example = {n: np.broadcast_to(np.asarray(v), (num,)) for n, v in example.items()}
    example["rotation"] = np.zeros((num, data.max_objects), np.float32)
    return example


def _slot(example, k):
    return {p: np.asarray(example[f"{p}_{k}"]) for p in PROPERTIES}


@pytest.mark.parametrize(("max_objects", "min_objects"), [(6, 2), (3, 0), (4, 4)])
def test_counts_and_classes_follow_the_tables(max_objects, min_objects):
    data = SpriteScenes(max_objects, min_objects, image_size=32)
    values = data.scm.sample(jax.random.key(1), DRAWS)
    counts = np.bincount(np.asarray(values["num_objects"]), minlength=max_objects + 1)
    table = num_objects_table(max_objects, min_objects)
    assert table.sum() == pytest.approx(1.0) and (table[:min_objects] == 0).all()
    for n in range(max_objects + 1):
        assert _within_binomial(int(counts[n]), DRAWS, table[n]), (n, counts[n], table[n])
    for name, classes in (("shape_0", 5), (f"colour_{max_objects - 1}", 8)):
        counts = np.bincount(np.asarray(values[name]), minlength=classes)
        assert all(_within_binomial(int(c), DRAWS, 1 / classes) for c in counts), name
    # Independent roots: no edges, and slots draw apart from each other.
    assert all(not m.parents for m in data.scm.mechanisms.values())
    x0, x1 = np.asarray(values["x_0"]), np.asarray(values[f"x_{max_objects - 1}"])
    assert abs(np.corrcoef(x0, x1)[0, 1]) < SIGMAS / np.sqrt(DRAWS)
    assert len(data.attributes) == 1 + 5 * max_objects


def test_samples_come_from_the_scm(data, batch):
    key_scm, _ = jax.random.split(jax.random.key(0))
    values = data.scm.sample(key_scm, NUM)
    for name in data.attributes:
        np.testing.assert_array_equal(batch[name], values[name])
    assert set(batch) == {"image", "rotation", *data.attributes}
    assert batch["rotation"].shape == (NUM, M) and batch["image"].shape == (NUM, 32, 32, 3)
    image = np.asarray(batch["image"])
    assert 0.0 <= image.min() and image.max() <= 1.0
    for k in range(M):  # every object inside the canvas (its circumcircle, with a margin)
        slot = _slot(batch, k)
        for axis in ("x", "y"):
            assert (slot[axis] - slot["size"] > 0.015).all() and (
                slot[axis] + slot["size"] < 0.985
            ).all()
    np.testing.assert_array_equal(data.render(batch), batch["image"])
    objects = data.objects(batch)
    n = np.asarray(batch["num_objects"])
    np.testing.assert_array_equal(objects["present"], np.arange(M)[None] < n[:, None])
    np.testing.assert_array_equal(objects["x"][:, 2], batch["x_2"])


def test_a_centred_square_and_circle_cover_the_pixels_geometry_says(data):
    # Square: half side 0.68 circumradii = 0.68 * 0.125 * 32 = 2.72 px around (16, 16): pixel
    # centres at 0.5, 1.5, 2.5 px from the centre are covered >= 0.5, 3.5 px not at all.
    square = _scene(data, 2, shape_0=1, colour_0=np.array([2, 6]), size_0=0.125)
    mask = np.asarray(data.instance_masks(square))
    expected = np.zeros((32, 32), np.int32)
    expected[13:19, 13:19] = 1
    np.testing.assert_array_equal(mask, np.stack([expected, expected]))
    image = np.asarray(data.render(square))
    np.testing.assert_array_equal(image[0, 16, 16], PALETTE[2])  # full coverage: the colour
    np.testing.assert_array_equal(image[1, 15, 15], PALETTE[6])
    np.testing.assert_allclose(image[:, 0, 0], np.array([BACKGROUND] * 2), atol=0)
    np.testing.assert_allclose(image[:, 16, 19], np.array([BACKGROUND] * 2), atol=0)
    # Circle: radius 0.85 * 0.15 * 32 = 4.08 px; 13 half-integer offsets (a, b) per quadrant
    # have a² + b² <= 4.08², so 52 pixel centres lie inside.
    circle = _scene(data, 1, shape_0=0, size_0=0.15)
    assert int((np.asarray(data.instance_masks(circle)) == 1).sum()) == 52
    # Two squares at one place: slot 1 is drawn on top, in the image and in the mask.
    stacked = _scene(data, 1, num_objects=2, shape_0=1, shape_1=1, colour_0=0, colour_1=2)
    np.testing.assert_array_equal(np.asarray(data.render(stacked))[0, 16, 16], PALETTE[2])
    assert np.asarray(data.instance_masks(stacked))[0, 16, 16] == 2
    alone = data.counterfactual(stacked, {"num_objects": 1})
    np.testing.assert_array_equal(np.asarray(alone["image"])[0, 16, 16], PALETTE[0])


def test_the_image_is_the_visibility_weighted_composite(data, batch):
    weights = np.asarray(data.visibility(batch))  # (N, M, S, S)
    colours = PALETTE[np.stack([np.asarray(batch[f"colour_{k}"]) for k in range(M)], -1)]
    composite = np.einsum("nkhw,nkc->nhwc", weights, colours)
    composite += (1 - weights.sum(1))[..., None] * np.asarray(BACKGROUND, np.float32)
    np.testing.assert_allclose(np.asarray(batch["image"]), composite, atol=1e-5)


def test_instance_masks_show_the_visible_objects(data, batch):
    masks = np.asarray(data.instance_masks(batch))
    assert masks.shape == (NUM, 32, 32) and masks.dtype == np.int32
    cover = np.asarray(data.coverage(batch))  # (N, M, S, S), absent slots 0
    n = np.asarray(batch["num_objects"])
    assert (masks.max(axis=(1, 2)) <= n).all()  # absent slots never appear
    for k in range(M):
        assert (cover[n <= k, k] == 0).all()
    # The label is the top-most object covering the pixel at least half.
    half = cover >= 0.5
    covered_above = np.flip(np.cumsum(np.flip(half, 1), 1), 1) - half  # later slots >= 0.5
    visible = half & (covered_above == 0)  # (N, M, S, S)
    expected = (visible * np.arange(1, M + 1)[None, :, None, None]).sum(1)
    np.testing.assert_array_equal(masks, expected)
    # Every present object has pixels unless later objects hide all of its half-covered ones.
    present = np.arange(M)[None] < n[:, None]
    shows = np.stack([(masks == k + 1).any(axis=(1, 2)) for k in range(M)], 1)
    np.testing.assert_array_equal(shows, visible.any(axis=(2, 3)))
    assert (shows | ~present).mean() > 0.97  # full occlusion is rare
    labels = [len(np.unique(m[m > 0])) for m in masks]
    np.testing.assert_array_equal(labels, visible.any(axis=(2, 3)).sum(1))
    # A single-object scene's mask is its coverage >= 0.5.
    single = data.counterfactual(batch, {"num_objects": 1})
    np.testing.assert_array_equal(data.instance_masks(single), cover[:, 0] >= 0.5)


def test_absent_slots_are_not_drawn(data, batch):
    n = np.asarray(batch["num_objects"])
    last = M - 1
    absent = n <= last
    assert absent.sum() > 10
    cf = data.counterfactual(batch, {f"x_{last}": 0.3, f"colour_{last}": 5, f"shape_{last}": 4})
    np.testing.assert_array_equal(np.asarray(cf["image"])[absent], batch["image"][absent])
    assert not np.array_equal(np.asarray(cf["image"])[~absent], batch["image"][~absent])


def test_do_colour_changes_only_the_objects_visible_pixels(data, batch):
    k = 0  # the bottom slot: present in every scene, often partly hidden
    new = (np.asarray(batch[f"colour_{k}"]) + 1) % 8
    cf = data.counterfactual(batch, {f"colour_{k}": new})
    np.testing.assert_array_equal(cf[f"colour_{k}"], new)
    cover = np.asarray(data.coverage(batch))
    region = (cover[:, k] > 0) & (cover[:, k + 1 :] < 1).all(1)  # seen through all later slots
    changed = (np.asarray(cf["image"]) != np.asarray(batch["image"])).any(-1)
    assert not (changed & ~region).any()
    opaque = (cover[:, k] == 1) & (cover[:, k + 1 :] == 0).all(1)
    colour = np.broadcast_to(new[:, None, None], opaque.shape)[opaque]
    np.testing.assert_array_equal(np.asarray(cf["image"])[opaque], PALETTE[colour])
    np.testing.assert_array_equal(data.instance_masks(cf), data.instance_masks(batch))
    for name in data.attributes:
        if name != f"colour_{k}":
            np.testing.assert_array_equal(cf[name], batch[name])
    np.testing.assert_array_equal(cf["rotation"], batch["rotation"])


def test_do_x_moves_only_that_object(data, batch):
    k = 1
    x = np.asarray(batch[f"x_{k}"])
    new = np.where(x < 0.5, x + 0.25, x - 0.25).astype(np.float32)
    cf = data.counterfactual(batch, {f"x_{k}": new})
    footprint = (np.asarray(data.coverage(batch))[:, k] > 0) | (
        np.asarray(data.coverage(cf))[:, k] > 0
    )
    changed = (np.asarray(cf["image"]) != np.asarray(batch["image"])).any(-1)
    assert not (changed & ~footprint).any()
    present = np.asarray(batch["num_objects"]) > k
    assert (changed.sum(axis=(1, 2))[present] >= 10).all()  # and it did move
    assert not changed[~present].any()
    masks, cf_masks = np.asarray(data.instance_masks(batch)), np.asarray(data.instance_masks(cf))
    np.testing.assert_array_equal(cf_masks[~footprint], masks[~footprint])


def test_null_interventions_reproduce_stored_images(data):
    source = GeneratedSource(data, size=NUM, chunk_size=NUM, seed=3)
    stored = stack_examples([source[i] for i in range(NUM)])
    for do in ({}, {n: stored[n] for n in data.attributes}, {"x_0": stored["x_0"]}):
        cf = data.counterfactual(stored, do)
        np.testing.assert_array_equal(quantize_image(data, cf["image"]), stored["image"])
    # Stored examples (int64 classes, float32 values) give the masks of the fresh sample.
    fresh = data.sample(jax.random.fold_in(jax.random.key(3), 0), NUM)
    np.testing.assert_array_equal(data.instance_masks(stored), data.instance_masks(fresh))


@pytest.mark.parametrize(
    ("num_changed", "properties"),
    [(1, PROPERTIES), (2, PROPERTIES), (1, ("x",)), (1, ("colour", "shape"))],
)
def test_perturbation_pairs_change_exactly_what_they_say(num_changed, properties):
    data = SpriteScenes(max_objects=M, min_objects=2, image_size=32)
    first, second, changed = data.perturbation_pairs(
        jax.random.key(4), NUM, num_changed, properties
    )
    slot, prop = np.asarray(changed["slot"]), np.asarray(changed["property"])
    old, new = np.asarray(changed["old"]), np.asarray(changed["new"])
    assert slot.shape == prop.shape == old.shape == new.shape == (NUM, num_changed)
    n = np.asarray(first["num_objects"])
    assert (slot < n[:, None]).all()  # present objects
    assert all(len(set(row)) == num_changed for row in slot)  # distinct ones
    assert set(np.unique(prop)) <= {PROPERTIES.index(p) for p in properties}
    if len(properties) > 1:
        assert len(np.unique(prop)) > 1
    differ = np.stack([np.asarray(first[a]) != np.asarray(second[a]) for a in data.attributes], 1)
    np.testing.assert_array_equal(differ.sum(1), num_changed)
    for i, j in np.ndindex(NUM, num_changed):
        name = f"{PROPERTIES[prop[i, j]]}_{slot[i, j]}"
        assert np.asarray(first[name])[i] == old[i, j]
        assert np.asarray(second[name])[i] == new[i, j]
        if PROPERTIES[prop[i, j]] in RANGES:
            low, high = RANGES[PROPERTIES[prop[i, j]]]
            assert low <= new[i, j] <= high
            step = abs(new[i, j] - old[i, j]) / (high - low)
            assert SHIFT_RANGE[0] - 1e-5 <= step <= SHIFT_RANGE[1] + 1e-5
        else:
            assert new[i, j] != old[i, j]
    np.testing.assert_array_equal(first["rotation"], second["rotation"])
    # The images differ only where a changed object was or is.
    before, after = np.asarray(data.coverage(first)), np.asarray(data.coverage(second))
    rows = np.arange(NUM)[:, None]
    footprint = ((before[rows, slot] > 0) | (after[rows, slot] > 0)).any(1)
    changed_pixels = (np.asarray(first["image"]) != np.asarray(second["image"])).any(-1)
    assert not (changed_pixels & ~footprint).any()
    assert changed_pixels.any(axis=(1, 2)).mean() > 0.9  # hidden objects aside, it shows
    np.testing.assert_array_equal(second["image"], data.render(second))


def test_perturbation_pairs_are_reproducible_and_follow_the_key():
    data = SpriteScenes(max_objects=3, min_objects=1, image_size=32)
    a = data.perturbation_pairs(jax.random.key(5), 8)
    b = data.perturbation_pairs(jax.random.key(5), 8)
    c = data.perturbation_pairs(jax.random.key(6), 8)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0]["image"], c[0]["image"])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_objects": 0}, "max_objects"),
        ({"max_objects": 13}, "max_objects"),
        ({"max_objects": 3.0}, "max_objects"),
        ({"min_objects": -1}, "min_objects"),
        ({"max_objects": 3, "min_objects": 4}, "min_objects"),
        ({"image_size": 31}, "image_size"),
        ({"image_size": 64.0}, "image_size"),
    ],
)
def test_bad_options_name_the_argument(options, match):
    with pytest.raises(ValueError, match=match):
        SpriteScenes(**options)


def test_bad_inputs_name_the_argument(data, batch):
    for do, match in (
        ({"shape_0": 5}, r"do\['shape_0'\]"),
        ({"colour_1": 8}, r"do\['colour_1'\]"),
        ({"colour_1": 1.5}, r"do\['colour_1'\]"),
        ({"num_objects": M + 1}, r"do\['num_objects'\]"),
        ({"x_0": POSITION_RANGE[1] + 0.01}, r"do\['x_0'\]"),
        ({"y_2": float("nan")}, r"do\['y_2'\]"),
        ({"size_3": SIZE_RANGE[0] - 0.01}, r"do\['size_3'\]"),
        ({f"x_{M}": 0.5}, "do: unknown"),
        ({"rotation": 0.0}, "do: unknown"),
        ({"x_0": np.full(3, 0.5)}, r"do\['x_0'\]: expected one value or one per example"),
    ):
        with pytest.raises(ValueError, match=match):
            data.counterfactual(batch, do)
    with pytest.raises(ValueError, match=r"example\['shape_1'\]"):
        data.render({**batch, "shape_1": np.full(NUM, 5)})
    with pytest.raises(ValueError, match=r"example\['rotation'\]"):
        data.render({**batch, "rotation": np.zeros((NUM, M + 1))})
    with pytest.raises(ValueError, match="missing 'rotation'"):
        data.instance_masks({k: v for k, v in batch.items() if k != "rotation"})
    with pytest.raises(ValueError, match="missing attribute"):
        data.render({k: v for k, v in batch.items() if k != "x_0"})
    for kwargs, match in (
        ({"num_changed": 0}, "num_changed"),
        ({"num_changed": 2}, "num_changed"),  # min_objects is 1
        ({"properties": ("z",)}, "properties"),
        ({"properties": ()}, "properties"),
        ({"properties": "x"}, "properties"),
        ({"properties": ("x", "x")}, "properties"),
    ):
        with pytest.raises(ValueError, match=match):
            data.perturbation_pairs(jax.random.key(0), 4, **kwargs)
    with pytest.raises(ValueError, match=r"num_changed.*min_objects=0"):
        SpriteScenes(3, 0, 32).perturbation_pairs(jax.random.key(0), 4)


def test_names_read_back_as_their_builder():
    assert SpriteScenes().tfds_name == "sprite_scenes"
    assert SpriteScenes(image_size=128).tfds_name == "sprite_scenes/128px"
    odd = SpriteScenes(max_objects=3, min_objects=1, image_size=32)
    assert odd.tfds_name == "sprite_scenes/min1_max3_32px"
    for dataset in (SpriteScenes(), SpriteScenes(image_size=128), odd):
        cls, kwargs = _builder_kwargs(dataset.tfds_name)
        assert cls is SpriteScenesBuilder and repr(cls(**kwargs)._dataset()) == repr(dataset)
    assert [c.name for c in SpriteScenesBuilder.BUILDER_CONFIGS] == ["64px", "128px"]
    with pytest.raises(ValueError, match="image_size"):
        _builder_kwargs("sprite_scenes/16px")
    with pytest.raises(ValueError, match="min_objects"):
        _builder_kwargs("sprite_scenes/min4_max3_32px")


def test_tfds_build_round_trips(tmp_path):
    data = SpriteScenes(max_objects=3, min_objects=1, image_size=32)
    path = build_dataset(data.tfds_name, size=8, data_dir=tmp_path, seed=3, progress=False)
    assert path == tmp_path / "sprite_scenes" / "min1_max3_32px" / "1.0.0"
    for split, (size, seed) in {"train": (8, 3), "test": (2, 4)}.items():
        stored = load_source(data.tfds_name, split, tmp_path)
        expected = GeneratedSource(data, size, seed)
        assert len(stored) == size
        for i in range(size):
            got, want = stored[i], expected[i]
            assert got.keys() == want.keys()
            for key in want:
                assert np.asarray(got[key]).dtype == want[key].dtype, (split, key)
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{split} {key}")
        batch = stack_examples([stored[i] for i in range(size)])
        cf = data.counterfactual(batch, {"num_objects": batch["num_objects"]})
        np.testing.assert_array_equal(quantize_image(data, cf["image"]), batch["image"])
        assert data.instance_masks(batch).shape == (size, 32, 32)
    assert "tensorflow" not in sys.modules
