"""Morpho digits: the deepscm thickness -> intensity SCM by its moments, the Morpho-MNIST
measurements of rendered images against the labels, and exact counterfactual re-rendering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from causalvision.data import MorphoDigits

NUM = 256
# Measured on this batch (key 0): thickness MAE ≈ 0.07 px, correlation ≈ 0.99 (calibrated
# renderer); intensity agrees with the label to < 1e-4 on every image.
THICKNESS_MAE = 0.15
THICKNESS_ONE = 0.6  # a single image's measured thickness vs its label (junctions, caps)
ATTRS = ("digit", "thickness", "intensity", "style")


def logit(p):
    return np.log(p) - np.log1p(-p)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def morpho():
    return MorphoDigits()


@pytest.fixture(scope="module")
def batch(morpho):
    out = morpho.sample(jax.random.key(0), NUM)
    out["measured"] = morpho.measure(out["image"])
    return out


def example(batch):
    return {k: batch[k] for k in ATTRS}


def test_scm_moments_match_the_deepscm_generator(morpho):
    values = morpho.scm.sample(jax.random.key(1), 20_000)
    t, i = np.asarray(values["thickness"]), np.asarray(values["intensity"])
    digit = np.asarray(values["digit"])
    assert abs(t.mean() - 2.5) < 0.02
    assert abs(t.std() - np.sqrt(10) / 5) < 0.02  # sd of Gamma(10, 5) = √10 / 5 ≈ 0.632
    assert t.min() > 0.5
    assert 64.0 < i.min() and i.max() < 255.0
    assert np.corrcoef(t, i)[0, 1] > 0.5
    # n = logit((i - 64) / 191) given t is N(2(t - 2.5), 0.5²).
    residual = (logit((i.astype(np.float64) - 64) / 191) - 2 * (t - 2.5)) / 0.5
    assert abs(residual.mean()) < 0.03 and abs(residual.std() - 1) < 0.03
    assert set(np.unique(digit)) == set(range(10))
    assert np.all(np.abs(np.bincount(digit) / digit.size - 0.1) < 0.01)


def test_sample_layout(batch):
    assert batch["image"].shape == (NUM, 32, 32, 1) and batch["image"].dtype == jnp.float32
    assert batch["digit"].dtype == jnp.int32
    image = np.asarray(batch["image"])
    assert image.min() >= 0.0 and image.max() <= 255.0


def test_measured_intensity_equals_the_label(batch):
    error = np.abs(np.asarray(batch["measured"]["intensity"]) - np.asarray(batch["intensity"]))
    assert (error <= 1.0).mean() >= 0.95
    assert np.median(error) < 1e-3


def test_measured_thickness_tracks_the_label(batch):
    t = np.asarray(batch["thickness"])
    measured = np.asarray(batch["measured"]["thickness"])
    assert np.corrcoef(t, measured)[0, 1] > 0.97
    assert np.abs(measured - t).mean() < THICKNESS_MAE
    assert abs(np.mean(measured - t)) < 0.05  # calibrated: no overall bias
    assert np.quantile(np.abs(measured - t), 0.95) < THICKNESS_ONE


def test_measured_thickness_is_monotonic_in_the_label(morpho, batch):
    measured = []
    for t in (1.5, 2.5, 3.5):
        images = morpho.render({**example(batch), "thickness": jnp.full((NUM,), t)})
        measured.append(np.asarray(morpho.measure(images)["thickness"]))
    low, mid, high = measured
    assert np.all(low < mid) and np.all(mid < high)
    np.testing.assert_allclose([low.mean(), mid.mean(), high.mean()], [1.5, 2.5, 3.5], atol=0.15)


def test_rerendering_unchanged_attributes_is_bit_identical(morpho, batch):
    np.testing.assert_array_equal(morpho.render(example(batch)), batch["image"])


def test_do_thickness_keeps_the_noise(morpho, batch):
    cf = morpho.counterfactual(example(batch), {"thickness": 4.0})
    np.testing.assert_array_equal(cf["digit"], batch["digit"])
    for name in batch["style"]:
        np.testing.assert_array_equal(cf["style"][name], batch["style"][name])
    np.testing.assert_allclose(cf["thickness"], 4.0)
    # The abducted ε is kept: i' = 64 + 191 σ(2(4 - 2.5) + 0.5 ε).
    t, i = np.asarray(batch["thickness"], np.float64), np.asarray(batch["intensity"], np.float64)
    eps = (logit((i - 64) / 191) - 2 * (t - 2.5)) / 0.5
    expected = 64 + 191 * sigmoid(2 * (4.0 - 2.5) + 0.5 * eps)
    np.testing.assert_allclose(cf["intensity"], expected, atol=0.05)
    measured = morpho.measure(cf["image"])
    assert abs(float(np.mean(measured["thickness"])) - 4.0) < THICKNESS_MAE
    assert np.all(np.abs(np.asarray(measured["thickness"]) - 4.0) < THICKNESS_ONE + 0.4)
    np.testing.assert_allclose(measured["intensity"], cf["intensity"], atol=1.0)


def test_do_intensity_leaves_thickness(morpho, batch):
    cf = morpho.counterfactual(example(batch), {"intensity": 200.0})
    np.testing.assert_array_equal(cf["thickness"], batch["thickness"])
    np.testing.assert_array_equal(cf["digit"], batch["digit"])
    measured = morpho.measure(cf["image"])
    assert (np.abs(np.asarray(measured["intensity"]) - 200.0) <= 1.0).mean() >= 0.95
    # Same shape, new brightness: the stroke footprint is unchanged.
    np.testing.assert_array_equal(cf["image"] > 0, batch["image"] > 0)


def test_do_digit_changes_only_the_digit(morpho, batch):
    cf = morpho.counterfactual(example(batch), {"digit": 3})
    np.testing.assert_array_equal(cf["digit"], np.full(NUM, 3))
    np.testing.assert_array_equal(cf["thickness"], batch["thickness"])
    np.testing.assert_array_equal(cf["intensity"], batch["intensity"])
    changed = np.asarray(batch["digit"]) != 3
    differs = np.any(np.asarray(cf["image"] != batch["image"]), axis=(1, 2, 3))
    np.testing.assert_array_equal(differs, changed)


def test_same_key_same_images(morpho, batch):
    again = morpho.sample(jax.random.key(0), NUM)
    np.testing.assert_array_equal(again["image"], batch["image"])
    other = morpho.sample(jax.random.key(1), NUM)
    assert not np.array_equal(np.asarray(other["image"]), np.asarray(batch["image"]))


def test_errors_name_the_argument(morpho, batch):
    ex = example(batch)
    with pytest.raises(ValueError, match="do"):
        morpho.counterfactual(ex, {"colour": 1.0})
    with pytest.raises(ValueError, match="thickness"):
        morpho.counterfactual(ex, {"thickness": 0.4})
    with pytest.raises(ValueError, match=r"attributes.*thickness"):
        morpho.render({**ex, "thickness": jnp.full((NUM,), 0.5)})
    with pytest.raises(ValueError, match="images"):
        morpho.measure(jnp.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match="images"):
        morpho.measure(jnp.zeros((32, 32, 1)))
    with pytest.raises(ValueError, match="style"):
        morpho.render({**ex, "style": {}})
    with pytest.raises(ValueError, match="num"):
        morpho.sample(jax.random.key(0), 0)
