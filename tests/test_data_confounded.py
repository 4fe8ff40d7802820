"""The confounded shapes against their probability table, exact counterfactual footprints,
an exact background reading, the engine's own counterfactual law and the TFDS splits."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from causalvision.data import (
    ConfoundedShapes,
    ConfoundedShapesBuilder,
    GeneratedSource,
    build_dataset,
    load_source,
    quantize_image,
    stack_examples,
)
from causalvision.data.confounded import shape_table
from causalvision.data.tfds_builders import _builder_kwargs

K = 4
DRAWS = 20_000
SIGMAS = 5  # binomial bounds: a false alarm in ~1 of 3.5 million checks


@pytest.fixture(scope="module")
def data():
    return ConfoundedShapes()


@pytest.fixture(scope="module")
def batch(data):
    return data.sample(jax.random.key(0), 64)


def _within_binomial(count: int, num: int, p: float) -> bool:
    if p in (0.0, 1.0):
        return count == num * p
    return abs(count - num * p) <= SIGMAS * np.sqrt(num * p * (1 - p))


@pytest.mark.parametrize("split", ["train", "unconfounded", "anticorrelated", "deterministic"])
def test_draws_follow_the_probability_table(data, split):
    dataset = ConfoundedShapes(agreement=1.0) if split == "deterministic" else data.split(split)
    agreement = {"train": 0.95, "unconfounded": 1 / K, "anticorrelated": 0.0}.get(split, 1.0)
    assert dataset.agreement == pytest.approx(agreement, abs=1e-12)
    values = dataset.scm.sample(jax.random.key(1), DRAWS)
    shape, background = np.asarray(values["shape"]), np.asarray(values["background"])
    assert _within_binomial(int((shape == background).sum()), DRAWS, agreement)
    for c in range(K):
        assert _within_binomial(int((background == c).sum()), DRAWS, 1 / K)
    # Every (shape, background) group as often as P(background) P(shape | background) says.
    counts = np.bincount(np.asarray(dataset.group(shape, background)), minlength=K * K)
    expected = dataset.group_probabilities
    table = shape_table(K, agreement)
    np.testing.assert_allclose(expected.reshape(K, K), table.T / K)  # [shape, background]
    assert expected.sum() == pytest.approx(1.0)
    for g in range(K * K):
        assert _within_binomial(int(counts[g]), DRAWS, expected[g]), (g, counts[g], expected[g])


def test_groups_index_shape_then_background(data):
    assert data.num_groups == 16
    shape, background = np.array([0, 3, 1, 2]), np.array([0, 2, 3, 1])
    np.testing.assert_array_equal(data.group(shape, background), [0, 14, 7, 9])
    assert jax.jit(data.group)(jnp.asarray(shape), jnp.asarray(background)).tolist() == [
        0, 14, 7, 9
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"group\['shape'\]"):
        data.group(np.array([4]), np.array([0]))


def test_samples_come_from_the_scm_with_their_gumbel_noise(data, batch):
    key_scm, _ = jax.random.split(jax.random.key(0))
    values = data.scm.sample(key_scm, 64)
    for name in data.attributes:
        np.testing.assert_array_equal(batch[name], values[name])
    # The stored noise gives the stored shape: argmax_s log P(s | background) + g_s.
    logits = np.log(shape_table(K, 0.95))[np.asarray(batch["background"])]
    np.testing.assert_array_equal(
        np.argmax(logits + np.asarray(batch["shape_noise"]), -1), batch["shape"]
    )
    assert set(batch) == {"image", *data.attributes, *data.exogenous}
    assert batch["image"].shape == (64, 32, 32, 3) and batch["image"].dtype == jnp.float32
    image = np.asarray(batch["image"])
    assert 0.0 <= image.min() and image.max() <= 1.0
    # The object lies inside the canvas: its circumcircle (plus the margin) fits.
    position, radius = np.asarray(batch["position"]), np.asarray(batch["radius"])
    assert ((position - radius[:, None] > 0.03) & (position + radius[:, None] < 0.97)).all()


def test_render_is_deterministic(data, batch):
    np.testing.assert_array_equal(data.render(batch), batch["image"])
    again = data.sample(jax.random.key(0), 64)
    np.testing.assert_array_equal(again["image"], batch["image"])
    other = data.sample(jax.random.key(1), 64)
    assert not np.array_equal(other["image"], batch["image"])


def test_do_shape_redraws_only_the_object(data, batch):
    new = (np.asarray(batch["shape"]) + 1) % K
    cf = data.counterfactual(batch, do={"shape": new})
    np.testing.assert_array_equal(cf["shape"], new)
    np.testing.assert_array_equal(cf["background"], batch["background"])
    footprint = (np.asarray(data.coverage(batch)) > 0) | (np.asarray(data.coverage(cf)) > 0)
    changed = (np.asarray(cf["image"]) != np.asarray(batch["image"])).any(-1)
    assert not (changed & ~footprint).any()  # background pixels bit for bit
    assert (changed.sum(axis=(1, 2)) >= 10).all()  # and the object did change
    for name in ("position", "radius", "rotation", "tone", "texture", "shape_noise"):
        np.testing.assert_array_equal(cf[name], batch[name])


def test_do_background_holding_the_shape_recolours_only_the_background(data, batch):
    new = (np.asarray(batch["background"]) + 1) % K
    cf = data.counterfactual(batch, do={"background": new, "shape": batch["shape"]})
    np.testing.assert_array_equal(cf["shape"], batch["shape"])
    cover = np.asarray(data.coverage(batch))
    before, after = np.asarray(batch["image"]), np.asarray(cf["image"])
    np.testing.assert_array_equal(after[cover == 1], before[cover == 1])  # the object kept
    assert (np.abs(after - before).max(-1)[cover == 0] > 0.1).all()  # every background pixel
    np.testing.assert_array_equal(data.measure(after * 255)["background"], new)


def test_do_background_alone_is_the_gumbel_max_counterfactual(data, batch):
    """The shape follows the background as the SCM says, with the example's own noise."""
    new = (np.asarray(batch["background"]) + 1) % K
    cf = data.counterfactual(batch, do={"background": new})
    logits = np.log(shape_table(K, 0.95))[new]
    expected = np.argmax(logits + np.asarray(batch["shape_noise"]), -1)
    np.testing.assert_array_equal(cf["shape"], expected)
    np.testing.assert_array_equal(cf["background"], new)
    moved = {**batch, "background": new, "shape": expected}
    np.testing.assert_array_equal(cf["image"], data.render(moved))
    # Mostly the shape follows the new background; with agreement 0 it never matches it,
    # with agreement 1 it always does.
    assert (np.asarray(cf["shape"]) == new).mean() > 0.8
    anti = data.split("anticorrelated")
    sample = anti.sample(jax.random.key(2), 64)
    to = (np.asarray(sample["background"]) + 2) % K
    assert (np.asarray(anti.counterfactual(sample, {"background": to})["shape"]) != to).all()
    sure = ConfoundedShapes(agreement=1.0)
    sample = sure.sample(jax.random.key(3), 64)
    np.testing.assert_array_equal(sure.counterfactual(sample, {"background": to})["shape"], to)


def test_do_background_alone_matches_the_engines_counterfactual_law(data):
    """Our deterministic answer (true noise) and the engine's (posterior draws of the noise)
    give the same joint law of (factual, counterfactual) over a population."""
    sample = data.sample(jax.random.key(4), 4096)
    factual = {n: sample[n] for n in data.attributes}
    new = (np.asarray(sample["background"]) + 1) % K
    ours = np.asarray(data.counterfactual(sample, {"background": new})["shape"])
    engine = data.scm.counterfactual(factual, {"background": new}, key=jax.random.key(5))
    engine = np.asarray(engine["shape"])
    kept = np.asarray(sample["shape"])
    # At 95% agreement the shape mostly moves with the background: kept ~5%, follows ~95%.
    assert (ours == kept).mean() < 0.1 and (ours == new).mean() > 0.9
    for ours_event, engine_event in ((ours == kept, engine == kept), (ours == new, engine == new)):
        p = (ours_event.mean() + engine_event.mean()) / 2
        sigma = np.sqrt(2 * p * (1 - p) / len(ours))
        assert abs(ours_event.mean() - engine_event.mean()) <= SIGMAS * sigma


def test_null_interventions_reproduce_stored_images():
    data = ConfoundedShapes(num_classes=6, agreement=0.5)
    source = GeneratedSource(data, size=16, chunk_size=16, seed=3)
    stored = stack_examples([source[i] for i in range(16)])
    for do in ({}, {"background": stored["background"]}, {"shape": stored["shape"]}):
        cf = data.counterfactual(stored, do)
        np.testing.assert_array_equal(quantize_image(data, cf["image"]), stored["image"])
        np.testing.assert_array_equal(cf["shape"], stored["shape"])


@pytest.mark.parametrize("num_classes", [2, 4, 6])
def test_measure_reads_the_background_exactly(num_classes):
    data = ConfoundedShapes(num_classes=num_classes, agreement=1 / num_classes)
    sample = data.sample(jax.random.key(6), 256)
    images = quantize_image(data, sample["image"])
    np.testing.assert_array_equal(data.measure(images)["background"], sample["background"])
    grey = np.full((2, 32, 32, 3), 200, np.uint8)  # nothing coloured: no reading
    np.testing.assert_array_equal(data.measure(grey)["background"], [-1, -1])
    with pytest.raises(ValueError, match="images"):
        data.measure(images[:, :16])


def test_shapes_are_distinguishable():
    """Same noise, same background, two shapes: always some 20 clearly different pixels."""
    data = ConfoundedShapes(num_classes=6)
    style = data.sample_style(jax.random.key(7), 256)
    background = np.zeros(256, np.int32)
    images = [
        np.asarray(data.render({**style, "background": background, "shape": np.full(256, s)}))
        for s in range(6)
    ]
    for a in range(6):
        for b in range(a + 1, 6):
            different = (np.abs(images[a] - images[b]).max(-1) > 0.25).sum(axis=(1, 2))
            assert different.min() >= 20, (data.shapes[a], data.shapes[b], different.min())


def test_splits_and_names(data):
    assert data.split("train") is data
    unconfounded, anti = data.split("unconfounded"), data.split("anticorrelated")
    assert (unconfounded.agreement, anti.agreement) == (0.25, 0.0)
    assert (anti.num_classes, anti.image_size) == (4, 32)
    assert data.SPLITS == ("train", "unconfounded", "anticorrelated")
    assert data.shapes == ("circle", "square", "triangle", "cross")
    assert data.tfds_name == "confounded_shapes"
    assert ConfoundedShapes(image_size=64).tfds_name == "confounded_shapes/64px"
    odd = ConfoundedShapes(num_classes=3, agreement=1 / 3, image_size=16)
    assert odd.tfds_name == "confounded_shapes/k3_a0.3333333333333333_16px"
    # Every tfds_name reads back as the builder of exactly these options.
    for dataset in (data, ConfoundedShapes(image_size=64), odd, anti):
        cls, kwargs = _builder_kwargs(dataset.tfds_name)
        rebuilt = cls(**kwargs)._dataset()
        assert cls is ConfoundedShapesBuilder and repr(rebuilt) == repr(dataset)
    with pytest.raises(ValueError, match="name"):
        data.split("validation")
    with pytest.raises(ValueError, match="image_size"):
        _builder_kwargs("confounded_shapes/8px")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 7}, "num_classes"),
        ({"num_classes": 2.0}, "num_classes"),
        ({"agreement": -0.1}, "agreement"),
        ({"agreement": 1.5}, "agreement"),
        ({"agreement": float("nan")}, "agreement"),
        ({"image_size": 15}, "image_size"),
    ],
)
def test_bad_options_name_the_argument(options, match):
    with pytest.raises(ValueError, match=match):
        ConfoundedShapes(**options)


def test_bad_inputs_name_the_argument(data, batch):
    for do, match in (
        ({"shape": K}, r"do\['shape'\]"),
        ({"shape": 1.5}, r"do\['shape'\]"),
        ({"shape": float("nan")}, r"do\['shape'\]"),
        ({"background": -1}, r"do\['background'\]"),
        ({"colour": 1}, "do: unknown"),
        ({"shape": np.zeros(3)}, r"do\['shape'\]: expected a class or one per example"),
    ):
        with pytest.raises(ValueError, match=match):
            data.counterfactual(batch, do)
    with pytest.raises(ValueError, match=r"example\['shape'\]"):
        data.render({**batch, "shape": np.full(64, 4)})
    with pytest.raises(ValueError, match=r"example\['radius'\]"):
        data.render({**batch, "radius": np.zeros(3)})
    with pytest.raises(ValueError, match="missing 'shape_noise'"):
        data.counterfactual(
            {k: v for k, v in batch.items() if k != "shape_noise"}, {"background": 0}
        )
    # Noise of another split does not give its shapes under this SCM: refused, not misread.
    anti = data.split("anticorrelated").sample(jax.random.key(8), 16)
    with pytest.raises(ValueError, match=r"shape_noise.*split"):
        data.counterfactual(anti, {"background": 0})
    data.counterfactual(anti, {"background": 0, "shape": 1})  # no noise needed: fine


def test_tfds_splits_equal_the_generated_sources(tmp_path):
    data = ConfoundedShapes()
    path = build_dataset("confounded_shapes", size=32, data_dir=tmp_path, seed=3, progress=False)
    assert path == tmp_path / "confounded_shapes" / "32px" / "1.0.0"
    splits = {"train": (32, 3), "test": (8, 4), "unconfounded": (8, 5), "anticorrelated": (8, 6)}
    for split, (size, seed) in splits.items():
        stored = load_source("confounded_shapes", split, tmp_path)
        assert len(stored) == size, split
        dataset = data.split("train" if split == "test" else split)
        expected = GeneratedSource(dataset, size, seed)
        for i in (0, size - 1):
            got, want = stored[i], expected[i]
            assert got.keys() == want.keys()
            for key in want:
                assert np.asarray(got[key]).dtype == want[key].dtype, (split, key)
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{split} {key}")
        batch = stack_examples([stored[i] for i in range(size)])
        if split == "anticorrelated":
            assert (batch["shape"] != batch["background"]).all()
        cf = dataset.counterfactual(batch, {"background": batch["background"]})
        np.testing.assert_array_equal(quantize_image(dataset, cf["image"]), batch["image"])
    assert "tensorflow" not in sys.modules
