"""The captioned scenes: the SCM's co-occurrence against its tables, hand-written captions,
exact removed and masked counterfactual images, boxes, the vocabulary and the TFDS round trip."""

import sys

import jax
import numpy as np
import pytest
import scipy.ndimage

from causalvision.data import (
    DATASETS,
    CaptionedScenes,
    CaptionedScenesBuilder,
    GeneratedSource,
    Vocabulary,
    build_dataset,
    get_dataset,
    load_source,
    mask_region,
    quantize_image,
    stack_examples,
    tokenize,
)
from causalvision.data.captioned_scenes import (
    COMPANION,
    NOUNS,
    P_PRESENT,
    P_STARRY,
    SHAPE_TABLES,
    SHAPES,
)
from causalvision.data.scenes import PALETTE
from causalvision.data.tfds_builders import _builder_kwargs

DRAWS = 5_000
SIGMAS = 5  # binomial bounds: a false alarm in ~1 of 3.5 million checks
NUM = 64
M = 4
S = 32
STAR, TRIANGLE = SHAPES.index("star"), SHAPES.index("triangle")


@pytest.fixture(scope="module")
def data():
    return CaptionedScenes(max_objects=M, image_size=S)


@pytest.fixture(scope="module")
def batch(data):
    return data.sample(jax.random.key(0), NUM)


def _within_binomial(count: int, num: int, p: float) -> bool:
    return abs(count - num * p) <= SIGMAS * np.sqrt(num * p * (1 - p))


def _scene(data, num=1, **slots):
    """A hand-built example: every slot absent, a red circle of size 0.08 at (0.5, 0.5), theme
    plain, rotation 0, wording 0; `slots` override e.g. present_0=1, shape_0=1."""
    example = {"theme": 0}
    for k in range(data.max_objects):
        example.update({f"present_{k}": 0, f"shape_{k}": 0, f"colour_{k}": 0})
        example.update({f"size_{k}": 0.08, f"x_{k}": 0.5, f"y_{k}": 0.5})
    example.update(slots)
    example = {n: np.broadcast_to(np.asarray(v), (num,)) for n, v in example.items()}
    example["rotation"] = np.zeros((num, data.max_objects), np.float32)
    example["wording"] = np.zeros((num, data.max_objects), np.float32)
    return example


def _objects(data, positions, **slots):
    """Present objects at `positions` [(x, y), ...] in slots 0, 1, ..., then `slots`."""
    placed = {}
    for k, (x, y) in enumerate(positions):
        placed.update({f"present_{k}": 1, f"x_{k}": x, f"y_{k}": y})
    return _scene(data, **{**placed, **slots})


def _stack_slots(example, prefix, m=M):
    return np.stack([np.asarray(example[f"{prefix}_{k}"]) for k in range(m)], -1)


# The SCM --------------------------------------------------------------------------------------


def test_the_scm_has_its_documented_graph_and_tables(data):
    parents = {n: set(m.parents) for n, m in data.scm.mechanisms.items()}
    assert parents.pop("shape_0") == parents.pop("shape_1") == {"theme"}
    assert all(not p for p in parents.values())  # every other node is a root
    assert data.attributes[0] == "theme" and len(data.attributes) == 1 + 6 * M
    np.testing.assert_allclose(SHAPE_TABLES["shape_0"][1], [0, 0, 0, 0, 1])
    np.testing.assert_allclose(SHAPE_TABLES["shape_1"][1], [1 / 30, 1 / 30, 0.9, 1 / 30, 0])
    for table in SHAPE_TABLES.values():
        np.testing.assert_allclose(table[0], [1 / 3, 1 / 3, 0, 1 / 3, 0])


def test_co_occurrence_matches_the_documented_probabilities(data):
    # Measured on the images' own attributes: the sample, not only the SCM.
    example = data.sample(jax.random.key(1), DRAWS)
    present = _stack_slots(example, "present") == 1
    shape = _stack_slots(example, "shape")
    star = (present & (shape == STAR)).any(1)
    triangle = (present & (shape == TRIANGLE)).any(1)
    starry = np.asarray(example["theme"]) == 1
    assert _within_binomial(int(starry.sum()), DRAWS, P_STARRY)
    np.testing.assert_array_equal(star, starry)  # a star exactly in the starry scenes
    assert _within_binomial(int(triangle[star].sum()), int(star.sum()), COMPANION)
    assert triangle[star].mean() == pytest.approx(COMPANION, abs=0.03)
    assert star[triangle].all()  # P(star | triangle) = 1
    assert not (present & ((shape == STAR) | (shape == TRIANGLE)))[~starry].any()
    # Slots 0 and 1 are always present, the others with probability 1/2, independently.
    assert present[:, :2].all()
    for k in range(2, M):
        assert _within_binomial(int(present[:, k].sum()), DRAWS, P_PRESENT)
    counts = np.bincount(present.sum(1), minlength=M + 1)
    assert counts[:2].sum() == 0
    for n, p in zip(range(2, M + 1), (0.25, 0.5, 0.25), strict=True):  # 2 + Binomial(2, 1/2)
        assert _within_binomial(int(counts[n]), DRAWS, p)
    # Plain slots are uniform over circle, square and diamond.
    plain = np.bincount(shape[:, 2:][present[:, 2:]], minlength=5)
    assert plain[STAR] == plain[TRIANGLE] == 0
    for s in (0, 1, 3):
        assert _within_binomial(int(plain[s]), int(plain.sum()), 1 / 3)


def test_samples_come_from_the_scm_and_keep_their_noise(data, batch):
    key_scm, _ = jax.random.split(jax.random.key(0))
    values = data.scm.sample(key_scm, NUM)
    for name in data.attributes:
        np.testing.assert_array_equal(batch[name], values[name])
    assert set(batch) == {"image", "rotation", "wording", "shape_noise", *data.attributes}
    assert batch["wording"].shape == (NUM, M) and batch["shape_noise"].shape == (NUM, 2, 5)
    wording = np.asarray(batch["wording"])
    assert (wording >= 0).all() and (wording < 1).all()
    np.testing.assert_array_equal(data.render(batch), batch["image"])
    for j, name in enumerate(("shape_0", "shape_1")):  # the noise gives the shapes
        mechanism = data.scm.mechanisms[name]
        again = mechanism.predict(batch["shape_noise"][:, j], {"theme": batch["theme"]})
        np.testing.assert_array_equal(again, batch[name])
    objects = data.objects(batch)
    np.testing.assert_array_equal(objects["present"], _stack_slots(batch, "present") == 1)


def test_do_theme_moves_the_themed_shapes_with_their_own_noise(data, batch):
    same = data.counterfactual(batch, {"theme": batch["theme"]})
    for name in data.attributes:
        np.testing.assert_array_equal(same[name], batch[name])
    np.testing.assert_array_equal(same["image"], batch["image"])
    starry = data.counterfactual(batch, {"theme": 1})
    assert (np.asarray(starry["shape_0"]) == STAR).all()
    was_plain = np.asarray(batch["theme"]) == 0
    assert (np.asarray(starry["shape_1"])[was_plain] == TRIANGLE).mean() > 0.7
    for name in data.attributes:
        if name not in ("theme", "shape_0", "shape_1"):
            np.testing.assert_array_equal(starry[name], batch[name])
    held = data.counterfactual(
        batch, {"theme": 1, "shape_0": batch["shape_0"], "shape_1": batch["shape_1"]}
    )
    np.testing.assert_array_equal(held["image"], batch["image"])


# Captions -------------------------------------------------------------------------------------


ROW = [(0.2, 0.25), (0.4, 0.75), (0.6, 0.25), (0.8, 0.75)]  # apart: no overlap at any size


@pytest.mark.parametrize(
    ("slots", "caption"),
    [
        ({}, "nothing"),
        ({"colour_0": 6, "shape_0": 4, "present_0": 1}, "an orange star"),
        # Left to right, whatever the slot order.
        (
            {**dict.fromkeys(("present_0", "present_1"), 1), "x_0": 0.7, "colour_1": 2},
            "a blue circle and a red circle",
        ),
        # Groups of one shape and colour are counted; phrases follow the leftmost member.
        (
            {
                **{f"present_{k}": 1 for k in range(4)},
                **{f"x_{k}": x for k, (x, _) in enumerate(ROW)},
                **{f"y_{k}": y for k, (_, y) in enumerate(ROW)},
                "shape_0": 1,
                "colour_0": 1,
                "colour_1": 0,
                "shape_1": 0,
                "shape_2": 4,
                "colour_2": 2,
                "shape_3": 1,
                "colour_3": 1,
            },
            "two green squares, a red circle and a blue star",
        ),
        (
            {
                **{f"present_{k}": 1 for k in range(3)},
                **{f"x_{k}": x for k, (x, _) in enumerate(ROW[:3])},
                **{f"y_{k}": y for k, (_, y) in enumerate(ROW[:3])},
                **{f"shape_{k}": 3 for k in range(3)},
                **{f"colour_{k}": 7 for k in range(3)},
            },
            "three white diamonds",
        ),
        # Equal x: the lower slot first.
        (
            {
                "present_1": 1,
                "present_2": 1,
                "y_1": 0.75,
                "y_2": 0.25,
                "shape_1": 2,
                "colour_1": 3,
                "colour_2": 5,
            },
            "a yellow triangle and a cyan circle",
        ),
    ],
)
def test_captions_of_hand_built_scenes(data, slots, caption):
    example = _scene(data, **slots)
    assert data.captions(example) == [caption]
    expected = {SHAPES[s] for s in range(5) if f" {SHAPES[s]}" in caption}
    assert data.true_objects(example) == [expected]
    present = [bool(slots.get(f"present_{k}", 0)) for k in range(M)]
    np.testing.assert_array_equal(data.visible(example), [present])  # nothing overlaps


def test_counts_reach_twelve_and_plurals_follow_them():
    data = CaptionedScenes(max_objects=12, image_size=64)
    grid = [(x, y) for y in (0.2, 0.45, 0.7) for x in (0.2, 0.4, 0.6, 0.8)]
    example = _objects(data, grid)
    assert data.captions(example) == ["twelve red circles"]
    for n, word in ((2, "two"), (5, "five"), (11, "eleven")):
        fewer = {**example, **{f"present_{k}": np.zeros(1, np.int32) for k in range(n, 12)}}
        assert data.captions(fewer) == [f"{word} red circles"]
    one = {**example, **{f"present_{k}": np.zeros(1, np.int32) for k in range(1, 12)}}
    assert data.captions(one) == ["a red circle"]
    mixed = _objects(data, grid[:5], shape_1=1, colour_2=1, colour_3=6, colour_4=6)
    # Slots 0 and 4 share x = 0.2: slot 0 first, then the orange group led by slot 4.
    assert data.captions(mixed) == [
        "a red circle, two orange circles, a red square and a green circle"
    ]


def test_synonyms_follow_the_wording_and_keep_the_categories():
    data = CaptionedScenes(max_objects=M, image_size=S, synonyms=True)
    example = _objects(
        data, ROW, shape_0=1, shape_1=1, colour_1=0, shape_2=3, shape_3=4, colour_3=2
    )
    # Square: 3 nouns, 0.5 -> index 1 "box"; diamond 0.99 -> "lozenge"; star 0.49 -> "star".
    example["wording"] = np.array([[0.5, 0.0, 0.99, 0.49]], np.float32)
    assert data.captions(example) == ["two red boxes, a red lozenge and a blue star"]
    assert data.true_objects(example) == [{"square", "diamond", "star"}]
    assert data.entity(example, 1) == ["red boxes"] and data.entity(example, 3) == ["blue star"]
    plain = CaptionedScenes(max_objects=M, image_size=S)
    assert plain.captions(example) == ["two red squares, a red diamond and a blue star"]


def test_object_vocabulary_parses_every_caption_back_to_its_true_objects(batch):
    data = CaptionedScenes(max_objects=M, image_size=S, synonyms=True)
    vocabulary = data.object_vocabulary()
    assert set(vocabulary) == set(SHAPES)
    assert vocabulary["square"] == ["square", "squares", "box", "boxes", "block", "blocks"]
    category = {word: c for c, words in vocabulary.items() for word in words}
    assert len(category) == sum(len(w) for w in vocabulary.values())  # no word in two
    captions, truth = data.captions(batch), data.true_objects(batch)
    parsed = [{category[w] for w in tokenize(c) if w in category} for c in captions]
    assert parsed == truth
    assert len({w for c in captions for w in tokenize(c)} & set(category)) > 10  # synonyms used
    mentioned = np.asarray(data.visible(batch))
    shape = _stack_slots(batch, "shape")
    assert truth == [
        {SHAPES[s] for s in row[seen]} for row, seen in zip(shape, mentioned, strict=True)
    ]


def test_a_fully_hidden_object_is_not_named_until_its_cover_is_removed(data):
    # A small circle under a large square at the same place: no pixel of it shows.
    example = _scene(
        data, present_0=1, present_1=1, shape_1=1, colour_1=2, size_0=0.08, size_1=0.15
    )
    assert data.captions(example) == ["a blue square"]
    np.testing.assert_array_equal(data.visible(example), [[False, True, False, False]])
    removed = data.remove_object(example, 1)
    assert removed["caption"].tolist() == ["a red circle"]
    assert data.true_objects(removed) == [{"circle"}]


# Boxes ----------------------------------------------------------------------------------------


def test_boxes_bound_each_objects_pixels(data, batch):
    # A square of half side 0.68 * 0.125 * 32 = 2.72 px at (16, 16) tints pixel centres
    # within 2.72 + 0.5 px of its centre line: columns and rows 13..18.
    square = _scene(data, present_0=1, shape_0=1, size_0=0.125)
    np.testing.assert_array_equal(data.boxes(square)[0, 0], [13, 13, 19, 19])
    np.testing.assert_array_equal(data.boxes(square)[0, 1:], 0)  # absent slots
    boxes = np.asarray(data.boxes(batch))
    assert boxes.shape == (NUM, M, 4) and boxes.dtype == np.int32
    cover = np.asarray(data.coverage(batch)) > 0
    masks = np.asarray(data.instance_masks(batch))
    rows, columns = np.arange(S)[:, None], np.arange(S)[None, :]
    present = _stack_slots(batch, "present") == 1
    for i, k in np.ndindex(NUM, M):
        x0, y0, x1, y1 = boxes[i, k]
        inside = (columns >= x0) & (columns < x1) & (rows >= y0) & (rows < y1)
        assert not (cover[i, k] & ~inside).any() and not ((masks[i] == k + 1) & ~inside).any()
        if present[i, k]:  # tight: every edge row and column is tinted
            assert cover[i, k, y0].any() and cover[i, k, y1 - 1].any()
            assert cover[i, k, :, x0].any() and cover[i, k, :, x1 - 1].any()
        else:
            assert (boxes[i, k] == 0).all()


# Counterfactual test images -------------------------------------------------------------------


@pytest.mark.parametrize("choose", ["bottom", "per_example"])
def test_remove_object_changes_only_that_objects_pixels_and_caption(data, batch, choose):
    present = _stack_slots(batch, "present") == 1
    if choose == "bottom":
        k = np.zeros(NUM, np.int64)
        removed = data.remove_object(batch, 0)
    else:  # the top-most present object of each scene
        k = (M - 1 - np.argmax(present[:, ::-1], 1)).astype(np.int64)
        removed = data.remove_object(batch, k)
    rows = np.arange(NUM)
    after = _stack_slots(removed, "present") == 1
    expected = present.copy()
    expected[rows, k] = False
    np.testing.assert_array_equal(after, expected)
    for name in data.attributes:
        if not name.startswith("present_"):
            np.testing.assert_array_equal(removed[name], batch[name])
    np.testing.assert_array_equal(removed["image"], data.render(removed))
    # Pixels change only where object k showed; the masks only where it was on top.
    weight = np.asarray(data.visibility(batch))[rows, k]  # (N, S, S)
    changed = (np.asarray(removed["image"]) != np.asarray(batch["image"])).any(-1)
    assert not (changed & (weight == 0)).any()
    shows = weight.max(axis=(1, 2)) > 0.5
    assert changed.any(axis=(1, 2))[shows].mean() > 0.9  # unless what is under has its colour
    masks, new_masks = (
        np.asarray(data.instance_masks(batch)),
        np.asarray(data.instance_masks(removed)),
    )
    mine = masks == (k + 1)[:, None, None]
    np.testing.assert_array_equal(new_masks[~mine], masks[~mine])
    assert not (new_masks == (k + 1)[:, None, None]).any()
    # The caption drops exactly object k, plus names any object that only k hid.
    before, now = np.asarray(data.visible(batch)), removed["mentioned"]
    np.testing.assert_array_equal(now, np.asarray(data.visible(removed)))
    assert not now[rows, k].any()
    dropped = before.copy()
    dropped[rows, k] = False
    revealed = now & ~dropped
    assert not (dropped & ~now).any() and not (revealed & before).any()
    assert revealed.sum() <= 2  # full occlusion is rare
    want = data.captions({**batch, "mentioned": dropped})
    for i in range(NUM):
        if not revealed[i].any():
            assert removed["caption"][i] == want[i]
    assert removed["caption"].tolist() == data.captions(removed)


def _reference_mask(image, box, sigma, grow):
    """See-or-Guess's blacken_box in numpy/scipy: black box, blurred copy over the grown box."""
    x0, y0, x1, y1 = box
    filled = image.copy()
    filled[y0:y1, x0:x1] = 0.0
    blurred = scipy.ndimage.gaussian_filter(
        filled.astype(np.float64), sigma=(sigma, sigma, 0), mode="nearest", truncate=3.0
    )
    out = filled.copy()
    g0, h0 = max(x0 - grow, 0), max(y0 - grow, 0)
    g1, h1 = min(x1 + grow, image.shape[1]), min(y1 + grow, image.shape[0])
    out[h0:h1, g0:g1] = blurred[h0:h1, g0:g1]
    return out, (g0, h0, g1, h1)


@pytest.mark.parametrize(("blur_radius", "grow"), [(5.0, 3), (0.0, 0), (1.5, 1)])
def test_mask_object_is_see_or_guess_blacken_box(data, batch, blur_radius, grow):
    k = 1  # always present
    masked = data.mask_object(batch, k, blur_radius=blur_radius, grow=grow)
    boxes = np.asarray(data.boxes(batch))[:, k]
    np.testing.assert_array_equal(masked["box"], boxes)
    image, out = np.asarray(batch["image"]), np.asarray(masked["image"])
    rows, columns = np.arange(S)[:, None], np.arange(S)[None, :]
    for i in range(NUM):
        want, (g0, h0, g1, h1) = _reference_mask(image[i], boxes[i], blur_radius, grow)
        np.testing.assert_allclose(out[i], want, atol=1e-5)
        grown = (columns >= g0) & (columns < g1) & (rows >= h0) & (rows < h1)
        np.testing.assert_array_equal(out[i][~grown], image[i][~grown])  # bit for bit
        if blur_radius == 0:
            x0, y0, x1, y1 = boxes[i]
            assert (out[i, y0:y1, x0:x1] == 0).all()
    for name in data.attributes:
        np.testing.assert_array_equal(masked[name], batch[name])


def test_mask_object_caption_names_what_stays_intact(data, batch):
    grow = 3
    masked = data.mask_object(batch, 1, grow=grow)
    masks = np.asarray(data.instance_masks(batch))
    boxes = np.asarray(data.boxes(batch))[:, 1]
    rows, columns = np.arange(S)[:, None], np.arange(S)[None, :]
    expected = np.zeros((NUM, M), bool)
    for i in range(NUM):
        x0, y0, x1, y1 = boxes[i]
        grown = (columns >= x0 - grow) & (columns < x1 + grow)
        grown = grown & (rows >= y0 - grow) & (rows < y1 + grow)
        for j in range(M):
            expected[i, j] = j != 1 and ((masks[i] == j + 1) & ~grown).any()
    np.testing.assert_array_equal(masked["mentioned"], expected)
    assert masked["caption"].tolist() == data.captions(masked)
    assert data.true_objects(masked) == [
        {SHAPES[s] for s in row[seen]}
        for row, seen in zip(_stack_slots(batch, "shape"), expected, strict=True)
    ]
    # Mostly the factual caption without object 1.
    dropped = np.array(data.visible(batch))
    dropped[:, 1] = False
    assert (masked["mentioned"] == dropped).all(1).mean() > 0.5
    # The starry scenes' triangle hidden: the caption keeps the star, names no triangle.
    starry = (np.asarray(batch["theme"]) == 1) & (np.asarray(batch["shape_1"]) == TRIANGLE)
    assert starry.sum() > 5
    assert all("triangle" not in data.true_objects(masked)[i] for i in np.flatnonzero(starry))


def test_mask_region_masks_any_region():
    images = np.random.default_rng(0).uniform(size=(2, 12, 12, 3)).astype(np.float32)
    masks = np.zeros((2, 12, 12), bool)
    masks[0, 2:4, 3:5] = True
    masks[1, 5, 5] = True
    masks[1, 9, 1] = True
    out = np.asarray(mask_region(images, masks, blur_radius=1.0, grow=1))
    filled = np.where(masks[..., None], 0.0, images)
    for i in range(2):
        blurred = scipy.ndimage.gaussian_filter(
            filled[i].astype(np.float64), (1.0, 1.0, 0), mode="nearest", truncate=3.0
        )
        grown = scipy.ndimage.binary_dilation(masks[i], np.ones((3, 3), bool))
        want = np.where(grown[..., None], blurred, images[i])
        np.testing.assert_allclose(out[i], want, atol=1e-6)
        np.testing.assert_array_equal(out[i][~grown], images[i][~grown])
    # The 0-255 scale works alike; 0 is black on both.
    scaled = np.asarray(mask_region(images * 255, masks, blur_radius=1.0, grow=1))
    np.testing.assert_allclose(scaled, out * 255, rtol=1e-5, atol=1e-4)


# Vocabulary -----------------------------------------------------------------------------------


def test_vocabulary_round_trips_captions(batch):
    data = CaptionedScenes(max_objects=M, image_size=S, synonyms=True)
    vocabulary = data.vocabulary()
    assert vocabulary.tokens[:8] == ("<pad>", "<bos>", "<eos>", "<unk>", ",", "a", "an", "and")
    assert (vocabulary.pad_id, vocabulary.bos_id, vocabulary.eos_id, vocabulary.unk_id) == (
        0,
        1,
        2,
        3,
    )
    captions = data.captions(batch)
    ids, mask = vocabulary.encode(captions, max_len=24)
    assert ids.shape == mask.shape == (NUM, 24) and ids.dtype == np.int32 and mask.dtype == bool
    assert (ids[:, 0] == 1).all() and (ids != 3).all()  # every word known
    lengths = np.array([len(tokenize(c)) + 2 for c in captions])
    np.testing.assert_array_equal(mask.sum(1), lengths)
    np.testing.assert_array_equal(ids[np.arange(NUM), lengths - 1], 2)
    np.testing.assert_array_equal(mask, np.arange(24)[None] < lengths[:, None])
    assert vocabulary.decode(ids) == captions
    assert vocabulary.decode(ids[0]) == captions[0]


def test_vocabulary_by_hand():
    vocabulary = Vocabulary.from_texts(["two blue stars", "a red circle, a blue star"])
    assert vocabulary.tokens[4:] == (",", "a", "blue", "circle", "red", "star", "stars", "two")
    ids, mask = vocabulary.encode(["a red circle", "two green stars"])
    np.testing.assert_array_equal(ids, [[1, 5, 8, 7, 2], [1, 11, 3, 10, 2]])
    assert mask.all()
    ids, mask = vocabulary.encode(["a star , a circle"], max_len=8)
    np.testing.assert_array_equal(ids, [[1, 5, 9, 4, 5, 7, 2, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 1, 1, 1, 0]])
    assert vocabulary.decode(ids) == ["a star, a circle"]
    assert vocabulary.decode([[1, 11, 3, 2, 9, 9]]) == ["two <unk>"]  # stops at <eos>
    assert vocabulary.decode([1, 0, 9, 0]) == "star"
    np.testing.assert_array_equal(vocabulary.lookup("red circle, x"), [8, 7, 4, 3])
    assert tokenize("a red circle, a star.") == ["a", "red", "circle", ",", "a", "star", "."]
    assert len(vocabulary) == 12 and "red" in vocabulary and "<bos>" in vocabulary


def test_vocabulary_refuses_bad_input():
    vocabulary = Vocabulary(["a", "b"])
    for words, match in (
        (["a", "a"], "distinct"),
        (["<pad>"], "special"),
        (["two words"], "single tokens"),
        ("ab", "sequence of str"),
    ):
        with pytest.raises(ValueError, match=match):
            Vocabulary(words)
    with pytest.raises(ValueError, match=r"max_len: texts\[1\] needs 5 tokens"):
        vocabulary.encode(["a", "a b a"], max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        vocabulary.encode(["a"], max_len=1)
    with pytest.raises(ValueError, match="texts"):
        vocabulary.encode("a b")
    with pytest.raises(ValueError, match=r"texts\[0\]"):
        vocabulary.encode([3])
    with pytest.raises(ValueError, match="ids: expected ids in"):
        vocabulary.decode([[1, 6]])
    with pytest.raises(ValueError, match="ids: expected integer"):
        vocabulary.decode([[1.0, 2.0]])


# Registration and storage ---------------------------------------------------------------------


def test_found_by_name_and_stored_examples_rerender_and_caption(data):
    assert DATASETS["captioned_scenes"].endswith(":CaptionedScenes")
    assert repr(get_dataset("captioned_scenes", max_objects=M, image_size=S)) == repr(data)
    source = GeneratedSource(data, size=16, chunk_size=16, seed=3)
    stored = stack_examples([source[i] for i in range(16)])
    fresh = data.sample(jax.random.fold_in(jax.random.key(3), 0), 16)
    assert set(stored) == {"image", *data.attributes, *data.exogenous}
    cf = data.counterfactual(stored, {})
    np.testing.assert_array_equal(quantize_image(data, cf["image"]), stored["image"])
    assert data.captions(stored) == data.captions(fresh)
    np.testing.assert_array_equal(data.boxes(stored), data.boxes(fresh))


def test_names_read_back_as_their_builder():
    assert CaptionedScenes().tfds_name == "captioned_scenes"
    assert CaptionedScenes(image_size=32).tfds_name == "captioned_scenes/32px"
    odd = CaptionedScenes(max_objects=3, image_size=32)
    assert odd.tfds_name == "captioned_scenes/max3_32px"
    for dataset in (CaptionedScenes(), CaptionedScenes(image_size=32), odd):
        cls, kwargs = _builder_kwargs(dataset.tfds_name)
        assert cls is CaptionedScenesBuilder and repr(cls(**kwargs)._dataset()) == repr(dataset)
    assert [c.name for c in CaptionedScenesBuilder.BUILDER_CONFIGS] == ["32px", "64px"]
    with pytest.raises(ValueError, match="image_size"):
        _builder_kwargs("captioned_scenes/16px")
    with pytest.raises(ValueError, match="max_objects"):
        _builder_kwargs("captioned_scenes/max1_32px")


def test_tfds_build_round_trips(tmp_path):
    data = CaptionedScenes(max_objects=3, image_size=32)
    path = build_dataset(data.tfds_name, size=4, data_dir=tmp_path, seed=3, progress=False)
    assert path == tmp_path / "captioned_scenes" / "max3_32px" / "1.0.0"
    for split, (size, seed) in {"train": (4, 3), "test": (1, 4)}.items():
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
        generated = stack_examples([expected[i] for i in range(size)])
        assert data.captions(batch) == data.captions(generated)
        cf = data.counterfactual(batch, {"theme": batch["theme"]})
        np.testing.assert_array_equal(quantize_image(data, cf["image"]), batch["image"])
    assert "tensorflow" not in sys.modules


def test_perturbation_pairs_work_through_the_presence_seam(data):
    first, second, changed = data.perturbation_pairs(jax.random.key(4), 8, 2, ("colour", "x"))
    slot = np.asarray(changed["slot"])
    present = _stack_slots(first, "present") == 1
    assert present[np.arange(8)[:, None], slot].all()
    np.testing.assert_array_equal(second["image"], data.render(second))


# Bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_objects": 1}, "max_objects"),
        ({"max_objects": 13}, "max_objects"),
        ({"image_size": 31}, "image_size"),
        ({"synonyms": "yes"}, "synonyms"),
        ({"min_objects": 2}, "min_objects"),
    ],
)
def test_bad_options_name_the_argument(options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CaptionedScenes(**options)


def test_bad_inputs_name_the_argument(data, batch):
    hand = _scene(data, num=2, present_0=1)
    for call, match in (
        (lambda: data.remove_object(hand, 1), r"k: slot 1 is absent in 2 example"),
        (lambda: data.mask_object(hand, np.array([0, 2])), r"k: slot 2 is absent in 1"),
        (lambda: data.remove_object(batch, M), "k: expected an int"),
        (lambda: data.remove_object(batch, np.zeros(3, int)), "k: expected a slot"),
        (lambda: data.remove_object(batch, np.zeros(NUM) + 0.5), "k: expected a slot"),
        (lambda: data.mask_object(batch, 0, blur_radius=-1.0), "blur_radius"),
        (lambda: data.mask_object(batch, 0, grow=-1), "grow"),
        (lambda: data.mask_object(batch, 0, grow=1.5), "grow"),
        (lambda: data.counterfactual(batch, {"present_0": 2}), r"do\['present_0'\]"),
        (lambda: data.counterfactual(batch, {"theme": 2}), r"do\['theme'\]"),
        (lambda: data.counterfactual(batch, {"num_objects": 1}), "do: unknown"),
        (lambda: data.render({**batch, "shape_1": np.full(NUM, 5)}), r"example\['shape_1'\]"),
        (
            lambda: data.captions({**batch, "mentioned": np.ones((NUM, M), int)}),
            r"example\['mentioned'\]",
        ),
        (lambda: data.entity(batch, M), "k: expected"),
    ):
        with pytest.raises(ValueError, match=match):
            call()
    # Noise only where needed, and checked against the factual shapes.
    no_noise = {k: v for k, v in batch.items() if k != "shape_noise"}
    data.counterfactual(no_noise, {"x_0": 0.5})
    with pytest.raises(ValueError, match="missing 'shape_noise'"):
        data.counterfactual(no_noise, {"theme": 1})
    wrong = {**batch, "shape_0": np.full(NUM, 4), "theme": np.zeros(NUM, np.int32)}
    with pytest.raises(ValueError, match=r"example\['shape_noise'\].*shape_0"):
        data.counterfactual(wrong, {"theme": 1})
    synonyms = CaptionedScenes(max_objects=M, image_size=S, synonyms=True)
    with pytest.raises(ValueError, match="missing 'wording'"):
        synonyms.captions({k: v for k, v in batch.items() if k != "wording"})
    with pytest.raises(ValueError, match=r"example\['wording'\]"):
        synonyms.captions({**batch, "wording": np.full((NUM, M), 2.0, np.float32)})
    images = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="masks: expected shape"):
        mask_region(images, np.zeros((2, 8, 9), bool))
    with pytest.raises(ValueError, match="masks: expected a bool"):
        mask_region(images, np.zeros((2, 8, 8), np.int32))
    with pytest.raises(ValueError, match="images: expected shape"):
        mask_region(images[0], np.zeros((8, 8), bool))
    assert PALETTE.shape == (8, 3)
    assert set(NOUNS) == set(SHAPES)
