"""Real-dataset loaders on mocked TFDS data (never downloads): Morpho-MNIST and CelebA."""

import pickle
import sys

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from causalvision.data import (
    CELEBA_ATTRIBUTES,
    CelebAPreprocess,
    GeneratedSource,
    MnistToMorpho,
    MorphoDigits,
    celeba_source,
    mnist_source,
    pad_to_32,
    perturb,
)

NUM_DIGITS = 16


@pytest.fixture(scope="module")
def fake_mnist():
    """MNIST-like records: synthetic digits cropped to 28x28 uint8, with their labels.

    TFDS's own mock data is uniform noise, which has no stroke to thin or thicken.
    """
    source = GeneratedSource(MorphoDigits(), size=NUM_DIGITS, seed=7, chunk_size=NUM_DIGITS)
    return [
        {"image": source[i]["image"][2:30, 2:30], "label": source[i]["digit"]}
        for i in range(NUM_DIGITS)
    ]


def _mnist(records, **kwargs):
    def as_data_source(self, split, decoders=None, deserialize_method=None, **_):
        assert self.name == "mnist" and split == "train"
        return records

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        source = mnist_source("train", **kwargs)
    return source


def _thickness(source):
    return np.array([source[i]["thickness"] for i in range(len(source))])


def test_mnist_perturbations_change_measured_thickness(fake_mnist):
    plain = _mnist(fake_mnist)
    thick = _mnist(fake_mnist, perturbation="thicken")
    thin = _mnist(fake_mnist, perturbation="thin")
    base, thicker, thinner = _thickness(plain), _thickness(thick), _thickness(thin)
    # Morpho-MNIST's thickening (amount 1) dilates by half the stroke width on each side, so
    # strokes roughly double; thinning (0.7) erodes them to about half.
    assert np.all(thicker > base + 0.8), (base, thicker)
    assert 1.6 < thicker.mean() / base.mean() < 2.3
    assert np.all(thinner < base), (base, thinner)
    assert 0.3 < thinner.mean() / base.mean() < 0.75
    # "plain" (binarise and resample only) keeps the thickness: the resampling is faithful.
    plain_set = _thickness(_mnist(fake_mnist, perturbation="plain"))
    np.testing.assert_allclose(plain_set, base, atol=0.25)
    # A stronger amount thickens more.
    stronger = _thickness(_mnist(fake_mnist, perturbation="thicken", amount=1.5))
    assert stronger.mean() > thicker.mean() + 0.5


def test_mnist_records(fake_mnist):
    source = _mnist(fake_mnist, perturbation="thicken")
    assert len(source) == NUM_DIGITS
    example = source[3]
    assert set(example) == {"image", "digit", "thickness", "intensity"}
    assert example["image"].dtype == np.uint8 and example["image"].shape == (32, 32, 1)
    assert example["digit"].dtype == np.int64 and int(example["digit"]) == fake_mnist[3]["label"]
    assert example["thickness"].dtype == np.float32 and example["intensity"].dtype == np.float32
    # Perturbed images are binarised and resampled: the stroke saturates.
    assert example["image"].max() >= 250 and 240 < float(example["intensity"]) <= 255
    batch = source.__getitems__([3, 0])
    np.testing.assert_array_equal(batch[0]["image"], example["image"])
    # Unperturbed: the original image, only padded by 2.
    original = _mnist(fake_mnist, measure=False)[5]
    assert set(original) == {"image", "digit"}
    np.testing.assert_array_equal(original["image"][2:30, 2:30], fake_mnist[5]["image"])
    assert not original["image"][:2].any() and not original["image"][:, 30:].any()
    # The transform is a pickleable grain map that works on its own.
    transform = pickle.loads(pickle.dumps(source.transform))
    np.testing.assert_array_equal(transform(fake_mnist[3])["image"], example["image"])
    assert isinstance(source.transform, MnistToMorpho)
    assert isinstance(source.transform, grain.transforms.Map)


def test_mnist_on_tfds_mock_data():
    with tfds.testing.mock_data(num_examples=3):
        source = mnist_source("test", perturbation="thin")
        plain = mnist_source("test")
    assert len(source) == 3
    example = source[2]
    assert example["image"].shape == (32, 32, 1) and example["image"].dtype == np.uint8
    assert plain[2]["image"].shape == (32, 32, 1)
    assert 0 <= int(example["digit"]) <= 9
    assert "tensorflow" not in sys.modules


def test_perturb_function():
    image = pad_to_32(np.zeros((28, 28), np.uint8))
    assert image.shape == (32, 32, 1)
    np.testing.assert_array_equal(perturb(image, "thicken"), image)  # blank stays blank
    digit = GeneratedSource(MorphoDigits(), size=1, chunk_size=1)[0]["image"]
    thicker = perturb(digit, "thicken", thickness=2.0)  # radius int(1 * 4 * 2 / 2) = 4
    assert thicker.dtype == np.uint8 and thicker.shape == (32, 32, 1)
    assert (thicker > 127).sum() > (digit > 127).sum()
    with pytest.raises(ValueError, match="kind"):
        perturb(digit, "swell")
    with pytest.raises(ValueError, match="amount"):
        perturb(digit, "thin", amount=-0.5)
    with pytest.raises(ValueError, match="amount"):
        perturb(digit, "plain", amount=1.0)
    with pytest.raises(ValueError, match="image"):
        perturb(digit[:28], "thin")
    with pytest.raises(ValueError, match="image"):
        pad_to_32(digit)


def test_mnist_invalid_arguments():
    with tfds.testing.mock_data(num_examples=1):
        with pytest.raises(ValueError, match="perturbation"):
            mnist_source(perturbation="fracture")
        with pytest.raises(ValueError, match="amount"):
            mnist_source(amount=0.5)
        with pytest.raises(ValueError, match="amount"):
            mnist_source(perturbation="thicken", amount="big")
        with pytest.raises(ValueError, match="split"):
            mnist_source(split=1)


def test_celeba_on_tfds_mock_data():
    with tfds.testing.mock_data(num_examples=2):
        source = celeba_source("validation", image_size=32)
        subset = celeba_source(
            "train", image_size=16, crop_size=148, attributes=["Smiling", "Male"]
        )
        raw = tfds.data_source("celeb_a", split="train")
    assert len(source) == 2
    example = source[1]
    assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.uint8
    assert example["attributes"].shape == (40,) and example["attributes"].dtype == np.float32
    assert source.attribute_names == CELEBA_ATTRIBUTES and len(CELEBA_ATTRIBUTES) == 40
    expected = [float(raw[1]["attributes"][name]) for name in CELEBA_ATTRIBUTES]
    np.testing.assert_array_equal(example["attributes"], expected)
    assert set(np.unique(example["attributes"])) <= {0.0, 1.0}
    small = subset[1]
    assert small["image"].shape == (16, 16, 3)
    assert subset.attribute_names == ("Smiling", "Male")
    np.testing.assert_array_equal(
        small["attributes"],
        [float(raw[1]["attributes"]["Smiling"]), float(raw[1]["attributes"]["Male"])],
    )
    assert "tensorflow" not in sys.modules


def test_celeba_crop_and_resize():
    # A face-sized image whose central 148x148 square is white and the rest black.
    image = np.zeros((218, 178, 3), np.uint8)
    image[35:183, 15:163] = 255
    record = {"image": image, "attributes": dict.fromkeys(CELEBA_ATTRIBUTES, False)}
    out = CelebAPreprocess(64, crop_size=148)(record)
    assert out["image"].shape == (64, 64, 3)
    assert out["image"].min() == 255  # exactly the white square
    assert not out["attributes"].any()
    full = CelebAPreprocess(178, crop_size=178)(record)["image"]  # no resize: a plain crop
    np.testing.assert_array_equal(full, image[20:198])
    transform = pickle.loads(pickle.dumps(CelebAPreprocess(64, attributes=["Young"])))
    assert transform.attribute_names == ("Young",)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": 64.0}, "image_size"),
        ({"crop_size": 200}, "crop_size"),
        ({"attributes": ["Smiling", "Happy"]}, "attributes"),
        ({"attributes": ["Male", "Male"]}, "attributes"),
        ({"attributes": []}, "attributes"),
        ({"attributes": "Smiling"}, "attributes"),
    ],
)
def test_celeba_invalid_arguments(kwargs, match):
    with tfds.testing.mock_data(num_examples=1), pytest.raises(ValueError, match=match):
        celeba_source(**kwargs)
