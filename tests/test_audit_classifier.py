"""Classifier audits recover planted dependences: classifiers whose dependence on each Morpho
attribute is known in closed form, audited on the generator's exact counterfactuals."""

import jax
import numpy as np
import pytest

from causalvision.audit import (
    as_classifier,
    audit_classifier,
    bootstrap_mean,
    effect_curve,
    effect_map,
    exact_counterfactuals,
    mediators,
)
from causalvision.data import GeneratedSource, get_dataset, stack_examples

CENTRE, SLOPE = 150.0, 0.05  # the intensity reader's logistic curve
UNITS = 32


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def morpho():
    dataset = get_dataset("morpho_digits")
    source = GeneratedSource(dataset, UNITS, seed=5)
    examples = stack_examples([source[i] for i in range(UNITS)])
    examples["image"] = examples["image"].astype(np.float32)
    return dataset, examples


@pytest.fixture(scope="module")
def intensity_reader(morpho):
    """P(class 1) = σ(SLOPE · (measured intensity − CENTRE)): depends on intensity alone
    (Morpho's measured intensity is exact)."""
    dataset, _ = morpho

    def predict(images):
        intensity = np.asarray(dataset.measure(images)["intensity"], np.float64)
        p1 = _sigmoid(SLOPE * (intensity - CENTRE))
        return np.stack([1 - p1, p1], axis=1)

    return predict


def stroke_reader(images):
    """P(class 1) from the share of stroke pixels (above half the image's maximum): invariant
    to the stroke's intensity, so it ignores do(intensity)."""
    share = (images[..., 0] > 0.5 * images.max(axis=(1, 2, 3))[:, None, None]).mean(axis=(1, 2))
    p1 = _sigmoid(50.0 * (share - 0.12))
    return np.stack([1 - p1, p1], axis=1)


@pytest.fixture(scope="module")
def intensity_audit(morpho, intensity_reader):
    dataset, examples = morpho
    return audit_classifier(
        exact_counterfactuals(dataset), dataset, examples, as_classifier(intensity_reader),
        [{"intensity": 220.0}, {"thickness": 4.0}], key=jax.random.key(0), num_bootstrap=400,
    )  # fmt: skip


def test_a_planted_intensity_dependence_matches_its_closed_form(morpho, intensity_audit):
    dataset, examples = morpho
    intensity = np.asarray(dataset.measure(examples["image"])["intensity"], np.float64)
    factual_p1 = _sigmoid(SLOPE * (intensity - CENTRE))
    ace = np.mean(_sigmoid(SLOPE * (220.0 - CENTRE)) - factual_p1)
    flips = np.mean((intensity > CENTRE) != (220.0 > CENTRE))
    row = intensity_audit["interventions"][0]
    assert row["label"] == "do(intensity=220)"
    # The exact counterfactual's stroke sits on the uint8 grid: within half a grey level.
    got = row["model"]["ace"]
    assert abs(got["mean"][1] - ace) < 1e-3 and abs(got["mean"][0] + ace) < 1e-3
    assert got["low"][1] <= ace <= got["high"][1]
    assert row["model"]["flip_rate"]["mean"] == pytest.approx(flips)
    # On each unit's factual class: + the change of P(1) where class 1 was predicted, − it
    # elsewhere.
    change = _sigmoid(SLOPE * (220.0 - CENTRE)) - factual_p1
    own = np.mean(np.where(factual_p1 > 0.5, change, -change))
    assert abs(row["model"]["ace_factual_class"]["mean"] - own) < 1e-3
    # Intensity has no attribute below it: no direct / mediated split.
    assert row["mediators"] == [] and row["direct"] is None and row["mediated"] is None
    # The model here is the generator itself: no generator error, full agreement.
    assert row["generator_error"]["ace"] == [0.0, 0.0]
    assert row["generator_error"]["decision_agreement"] == 1.0


def test_an_effect_through_a_mediator_is_all_mediated(morpho, intensity_audit):
    """do(thickness) reaches an intensity reader only through intensity (thickness ->
    intensity): the direct part, intensity held at its factual value, is zero."""
    dataset, examples = morpho
    row = intensity_audit["interventions"][1]
    assert row["mediators"] == ["intensity"] == list(mediators(dataset, "thickness"))
    total, direct = row["model"]["ace"]["mean"][1], row["direct"]["ace"]["mean"][1]
    mediated = row["mediated"]["ace"]["mean"][1]
    assert abs(total) > 0.1
    assert abs(direct) < 2e-3
    assert mediated == pytest.approx(total - direct, abs=1e-12)
    # The thickness's new intensity is the SCM's: the total effect is the reader's change
    # at the counterfactual intensities.
    cf = dataset.counterfactual(examples, {"thickness": np.full(UNITS, 4.0, np.float32)})
    factual = np.asarray(dataset.measure(examples["image"])["intensity"], np.float64)
    expected = np.mean(
        _sigmoid(SLOPE * (np.asarray(cf["intensity"], np.float64) - CENTRE))
        - _sigmoid(SLOPE * (factual - CENTRE))
    )
    assert total == pytest.approx(expected, abs=5e-3)


def test_a_classifier_that_ignores_an_attribute_has_no_effect_of_it(morpho):
    dataset, examples = morpho
    record = audit_classifier(
        exact_counterfactuals(dataset), dataset, examples, as_classifier(stroke_reader),
        [{"intensity": 220.0}, {"thickness": 4.5}], key=jax.random.key(1), num_bootstrap=400,
    )  # fmt: skip
    ignored, used = record["interventions"]
    assert ignored["model"]["flip_rate"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    assert abs(ignored["model"]["ace"]["mean"][1]) < 1e-3
    # It reads the stroke's width, so thickness moves it, directly (not through intensity).
    assert used["model"]["flip_rate"]["low"] > 0.2
    assert abs(used["mediated"]["ace"]["mean"][1]) < 1e-3


def test_the_most_affected_units_are_ranked_by_their_change(morpho, intensity_audit):
    row = intensity_audit["interventions"][0]["model"]["most_affected"]
    assert len(row["units"]) == 8
    assert row["tv_change"] == sorted(row["tv_change"], reverse=True)
    dataset, examples = morpho
    intensity = np.asarray(dataset.measure(examples["image"])["intensity"], np.float64)
    change = np.abs(_sigmoid(SLOPE * (220.0 - CENTRE)) - _sigmoid(SLOPE * (intensity - CENTRE)))
    # (to 3e-3: the counterfactual's stroke intensity sits on the uint8 grid)
    np.testing.assert_allclose(row["tv_change"], np.sort(change)[::-1][:8], atol=3e-3)


def test_effect_curves_rise_with_the_intervention_value(morpho, intensity_reader):
    dataset, examples = morpho
    values = [80.0, 150.0, 240.0]
    curve = effect_curve(
        exact_counterfactuals(dataset), dataset, examples, as_classifier(intensity_reader),
        "intensity", values, key=jax.random.key(2), num_bootstrap=100,
    )  # fmt: skip
    intensity = np.asarray(dataset.measure(examples["image"])["intensity"], np.float64)
    for value, ace in zip(values, curve["ace"], strict=True):
        expected = np.mean(
            _sigmoid(SLOPE * (value - CENTRE)) - _sigmoid(SLOPE * (intensity - CENTRE))
        )
        assert ace["mean"][1] == pytest.approx(expected, abs=1e-3)


def test_the_effect_map_lights_up_the_block_the_classifier_reads():
    """A classifier reading only pixel (5, 9): only the block holding it carries an effect."""

    def pixel_reader(images):
        p1 = _sigmoid(0.1 * (images[:, 5, 9, 0] - 100.0))
        return np.stack([1 - p1, p1], axis=1)

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (6, 16, 16, 1)).astype(np.float32)
    x_cf = rng.uniform(0, 255, (6, 16, 16, 1)).astype(np.float32)
    got = effect_map(as_classifier(pixel_reader), x, x_cf, patch=4)
    expected = np.zeros((4, 4))
    expected[1, 2] = np.mean(np.abs(pixel_reader(x_cf)[:, 1] - pixel_reader(x)[:, 1]))
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert effect_map(as_classifier(pixel_reader), x, x_cf, patch=6).shape == (3, 3)


def test_bootstrap_intervals_are_percentiles_of_resampled_means():
    values = np.arange(10.0)
    key = jax.random.key(3)
    got = bootstrap_mean(values, key=key, num_bootstrap=500, level=0.9)
    rows = np.asarray(jax.random.randint(key, (500, 10), 0, 10))
    means = values[rows].mean(axis=1)
    assert got["mean"] == 4.5
    assert got["low"] == pytest.approx(np.quantile(means, 0.05))
    assert got["high"] == pytest.approx(np.quantile(means, 0.95))
    assert bootstrap_mean(np.full(7, 2.0), key=key) == {"mean": 2.0, "low": 2.0, "high": 2.0}


def test_bad_classifiers_and_interventions_are_refused_before_any_work(morpho, intensity_reader):
    dataset, examples = morpho
    images = examples["image"][:4]
    with pytest.raises(ValueError, match=r"classifier: expected class probabilities of shape"):
        as_classifier(lambda x: np.ones((len(x),)))(images)
    with pytest.raises(ValueError, match=r"classifier: expected probabilities"):
        as_classifier(lambda x: np.tile([2.0, -1.0], (len(x), 1)))(images)
    with pytest.raises(ValueError, match=r"non-finite"):
        as_classifier(lambda x: np.full((len(x), 2), np.nan))(images)
    with pytest.raises(ValueError, match=r"classifier: expected 3 classes, got 2"):
        as_classifier(intensity_reader, num_classes=3)(images)
    with pytest.raises(ValueError, match=r"classifier: expected a callable"):
        as_classifier(42)
    with pytest.raises(ValueError, match=r"classifier: '/nonexistent' holds no run"):
        as_classifier("/nonexistent")
    classifier = as_classifier(intensity_reader)
    model = exact_counterfactuals(dataset)
    key = jax.random.key(0)
    for interventions, message in (
        ([{"colour": 1.0}], r"interventions: \['colour'\] not among"),
        ([{"intensity": 1e6}], r"interventions"),
        ({"intensity": 200.0}, r"interventions: expected a non-empty list"),
        ([], r"interventions: expected a non-empty list"),
    ):
        with pytest.raises(ValueError, match=message):
            audit_classifier(model, dataset, examples, classifier, interventions, key=key)
    with pytest.raises(ValueError, match=r"level"):
        audit_classifier(model, dataset, examples, classifier, [{"intensity": 200.0}],
                         key=key, level=1.5)  # fmt: skip


def test_units_are_audited_in_chunks_with_the_same_answer(capsys):
    """More units than one chunk (64): the chunked counterfactuals equal one whole-batch
    call, the bar counts every unit."""
    dataset = get_dataset("morpho_digits")
    source = GeneratedSource(dataset, 70, seed=9)
    examples = stack_examples([source[i] for i in range(70)])
    examples["image"] = examples["image"].astype(np.float32)

    def brightness(images):
        p1 = _sigmoid((images.mean(axis=(1, 2, 3)) - 20.0) / 5.0)
        return np.stack([1 - p1, p1], axis=1)

    model = exact_counterfactuals(dataset)
    do = {"thickness": 2.0}
    record = audit_classifier(model, dataset, examples, as_classifier(brightness), [do],
                              key=jax.random.key(4), num_bootstrap=50,
                              show_progress=True)  # fmt: skip
    whole = model(examples, do)
    np.testing.assert_array_equal(record["images"]["do(thickness=2)"]["model"], whole)
    expected = np.mean(brightness(whole) - brightness(examples["image"]), axis=0)
    # (to float32's precision: the classifier computes in float32, the audit in float64)
    np.testing.assert_allclose(record["interventions"][0]["model"]["ace"]["mean"], expected,
                               rtol=1e-6)  # fmt: skip
    held = {"intensity": examples["intensity"]}
    direct = np.mean(brightness(model(examples, {**do, **held})) - brightness(examples["image"]), 0)
    np.testing.assert_allclose(record["interventions"][0]["direct"]["ace"]["mean"], direct,
                               rtol=1e-6)  # fmt: skip
    assert "70/70" in capsys.readouterr().err
