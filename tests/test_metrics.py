"""Counterfactual metrics against counterfactual functions whose answers are known by hand:
the exact Morpho generator, a clipped constant shift, an exactly invertible roll, a function that
ignores `do`, and a deliberately order-dependent one."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from causalvision.data import GeneratedSource, MorphoDigits, quantize_image, stack_examples
from causalvision.metrics import (
    batched,
    commutativity,
    composition,
    effectiveness,
    evaluate_counterfactuals,
    flatten_metrics,
    ground_truth_error,
    quantile_bins,
    reversibility,
    sample_interventions,
    scm_parents_fn,
    update_parents,
)

NUM = 12
ATTRS = ("digit", "thickness", "intensity")


@pytest.fixture(scope="module")
def morpho():
    return MorphoDigits()


@pytest.fixture(scope="module")
def batch(morpho):
    return morpho.sample(jax.random.key(0), NUM)


def parents_of(batch):
    return {n: batch[n] for n in ATTRS}


def exact_cf(morpho, style, quantized=False):
    """The dataset's own counterfactual: re-render the abducted example under `do`."""

    def cf_fn(images, parents, do):
        image = morpho.counterfactual({**parents, "style": style}, do)["image"]
        return jnp.asarray(quantize_image(morpho, image), jnp.float32) if quantized else image

    return cf_fn


def shift_cf(c):
    """Adds c to every pixel whatever the intervention, clipped to [0, 255]."""
    return lambda images, parents, do: jnp.clip(images + jnp.float32(c), 0.0, 255.0)


def roll_cf(images, parents, do):
    """Rolls each image by (new digit - factual digit) columns: exactly invertible."""
    shift = do.get("digit", parents["digit"]) - parents["digit"]
    return jax.vmap(lambda image, s: jnp.roll(image, s, axis=1))(images, shift)


def identity_cf(images, parents, do):
    return images


def small_images():
    """Three 2x2 grey images with values chosen to hit the 255 clip at different cycles."""
    pixels = np.array([[0, 50, 200, 250], [255, 255, 100, 10], [128, 0, 0, 240]], np.float32)
    return pixels.reshape(3, 2, 2, 1)


def small_parents():
    return {
        "digit": jnp.array([1, 2, 3], jnp.int32),
        "thickness": jnp.array([1.5, 2.5, 3.5], jnp.float32),
        "intensity": jnp.array([100.0, 150.0, 200.0], jnp.float32),
    }


# -------------------------------------------------------------------------------------------
# Exact generator: zero error.


def test_exact_generator_has_zero_composition_and_ground_truth_error(morpho, batch):
    pa = parents_of(batch)
    cf_fn = exact_cf(morpho, batch["style"])
    comp = composition(cf_fn, batch["image"], pa, cycles=3)
    assert comp["l1"].shape == (3,) and comp["per_image"].shape == (3, NUM)
    np.testing.assert_array_equal(comp["l1"], 0.0)

    do = {"thickness": sample_interventions(jax.random.key(1), pa, "thickness")}
    gt = ground_truth_error(cf_fn, batch, do, morpho, quantize=False)
    assert float(gt["l1"]) == 0.0 and float(gt["rmse"]) == 0.0
    # Same image, same oracle: the attribute errors are the oracle's own floor.
    for name in ("thickness_mae", "intensity_mae"):
        assert float(gt[name]) == float(gt[f"{name}_floor"])
    assert float(gt["intensity_mae"]) < 1e-3  # intensity is measured exactly


def test_ground_truth_is_quantized_to_the_storage_grid(morpho, batch):
    do = {"digit": (batch["digit"] + 1) % 10}
    # A model of the stored (uint8) data that is exact scores 0 against the quantised truth.
    stored = exact_cf(morpho, batch["style"], quantized=True)
    stored_image = quantize_image(morpho, batch["image"])
    gt = ground_truth_error(stored, {**batch, "image": stored_image}, do, morpho)
    assert float(gt["l1"]) == 0.0 and float(gt["rmse"]) == 0.0
    # The float renderer is charged exactly its rounding to the grid (< 0.5 per pixel).
    gt = ground_truth_error(exact_cf(morpho, batch["style"]), batch, do, morpho)
    true = np.asarray(morpho.counterfactual(batch, do)["image"], np.float64)
    rounding = np.abs(true - np.rint(true)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(gt["per_image"]["l1"], rounding, rtol=1e-5, atol=1e-6)
    assert 0.0 < float(gt["l1"]) < 0.5


# -------------------------------------------------------------------------------------------
# Hand-computed values.


def test_constant_shift_composition_and_reversibility_by_hand():
    images, pa, c = small_images(), small_parents(), 7.0
    headroom = 255.0 - images.reshape(3, -1)  # after k shifts a pixel moved min(k c, headroom)

    def expected(steps):
        return np.minimum(steps * c, headroom).mean(axis=1)

    comp = composition(shift_cf(c), images, pa, cycles=10)
    for k in range(1, 11):
        np.testing.assert_allclose(comp["per_image"][k - 1], expected(k), rtol=1e-6)
        np.testing.assert_allclose(comp["l1"][k - 1], expected(k).mean(), rtol=1e-6)
        np.testing.assert_allclose(comp["l1_std"][k - 1], expected(k).std(), rtol=1e-5)
    # One reversibility cycle is two shifts.
    rev = reversibility(shift_cf(c), images, pa, {"thickness": 4.0}, cycles=5)
    for k in range(1, 6):
        np.testing.assert_allclose(rev["l1"][k - 1], expected(2 * k).mean(), rtol=1e-6)
    flat = flatten_metrics(comp, "composition_")
    assert flat["composition_l1_1"] == pytest.approx(expected(1).mean(), rel=1e-6)
    assert flat["composition_l1_10_std"] == pytest.approx(expected(10).std(), rel=1e-5)
    assert all(type(v) is float for v in flat.values())


def test_invertible_cf_has_zero_reversibility():
    images = np.arange(3 * 4 * 5 * 1, dtype=np.float32).reshape(3, 4, 5, 1)
    pa = small_parents()
    do = {"digit": jnp.array([4, 0, 9], jnp.int32)}
    assert float(jnp.abs(roll_cf(images, pa, do) - images).max()) > 0  # it does move
    rev = reversibility(roll_cf, images, pa, do, cycles=5)
    np.testing.assert_array_equal(rev["l1"], 0.0)
    np.testing.assert_array_equal(composition(roll_cf, images, pa, cycles=2)["l1"], 0.0)


def test_metrics_are_jit_friendly():
    images, pa = small_images(), small_parents()
    digits = jnp.array([4, 0, 9], jnp.int32)

    @jax.jit
    def run(images, pa, digits):
        rev = reversibility(roll_cf, images, pa, {"digit": digits}, cycles=2)
        comp = composition(shift_cf(3.0), images, pa, cycles=4)
        key = jax.random.key(0)
        drawn = sample_interventions(key, pa, "thickness", pa["thickness"], bins=2)
        return rev["l1"], comp["l1"], drawn

    rev, comp, drawn = run(images, pa, digits)
    np.testing.assert_array_equal(rev, 0.0)
    np.testing.assert_allclose(comp, composition(shift_cf(3.0), images, pa, cycles=4)["l1"])
    eager = sample_interventions(jax.random.key(0), pa, "thickness", pa["thickness"], bins=2)
    np.testing.assert_array_equal(drawn, eager)


def test_effectiveness_of_a_cf_that_ignores_do(morpho, batch):
    pa = parents_of(batch)
    images = batch["image"]
    t_star = sample_interventions(jax.random.key(2), pa, "thickness")
    parents_fn = scm_parents_fn(morpho.scm)
    eff = effectiveness(
        identity_cf, images, pa, {"thickness": t_star}, morpho.measure, parents_fn=parents_fn
    )
    measured = morpho.measure(images)
    i_star = morpho.scm.counterfactual(pa, {"thickness": t_star})["intensity"]
    t_err = np.abs(np.asarray(measured["thickness"]) - np.asarray(t_star))
    i_err = np.abs(np.asarray(measured["intensity"]) - np.asarray(i_star))
    np.testing.assert_allclose(eff["thickness_mae"], t_err.mean(), rtol=1e-5)
    np.testing.assert_allclose(eff["thickness_mae_std"], t_err.std(), rtol=1e-4)
    np.testing.assert_allclose(eff["intensity_mae"], i_err.mean(), rtol=1e-5)
    assert set(eff["per_image"]) == {"thickness_mae", "intensity_mae"}
    # Without the SCM the intensity target stays factual: only `do` updates the parents.
    plain = effectiveness(identity_cf, images, pa, {"thickness": t_star}, morpho.measure)
    i_plain = np.abs(np.asarray(measured["intensity"]) - np.asarray(pa["intensity"]))
    np.testing.assert_allclose(plain["intensity_mae"], i_plain.mean(), rtol=1e-5)
    only = effectiveness(
        identity_cf, images, pa, {"thickness": t_star}, morpho.measure, "thickness"
    )
    assert "intensity_mae" not in only


def test_effectiveness_categorical_from_logits_and_labels():
    images, pa = small_images().copy(), small_parents()
    images[:, 0, 0, 0] = np.asarray(pa["digit"])  # the digit, readable off the image

    def logits_oracle(x):
        return {"digit": jax.nn.one_hot(x[:, 0, 0, 0].astype(jnp.int32), 10)}

    def label_oracle(x):
        return {"digit": x[:, 0, 0, 0].astype(jnp.int32), "thickness": x[:, 0, 1, 0]}

    do = {"digit": jnp.array([1, 5, 3], jnp.int32)}  # units 0 and 2 keep their digit
    eff = effectiveness(identity_cf, images, pa, do, logits_oracle)
    assert float(eff["digit_acc"]) == pytest.approx(2 / 3)
    eff = effectiveness(identity_cf, images, pa, do, label_oracle)
    assert float(eff["digit_acc"]) == pytest.approx(2 / 3)
    t_err = np.abs(images[:, 0, 1, 0] - np.asarray(pa["thickness"]))
    np.testing.assert_allclose(eff["thickness_mae"], t_err.mean(), rtol=1e-6)


def test_commutativity_exact_generator_and_order_dependent_cf(morpho, batch):
    pa = parents_of(batch)
    do_a = {"digit": (batch["digit"] + 3) % 10}
    do_b = {"thickness": sample_interventions(jax.random.key(3), pa, "thickness")}
    exact = commutativity(
        exact_cf(morpho, batch["style"]),
        batch["image"],
        pa,
        do_a,
        do_b,
        parents_fn=scm_parents_fn(morpho.scm),
    )
    assert float(exact["l1"]) == 0.0

    def order_dependent(images, parents, do):
        images = images + 10.0 if "thickness" in do else images
        return images * 2.0 if "intensity" in do else images

    images = np.full((3, 2, 2, 1), 40.0, np.float32)  # (40 + 10) 2 = 100 vs 40 2 + 10 = 90
    result = commutativity(
        order_dependent, images, small_parents(), {"thickness": 2.0}, {"intensity": 90.0}
    )
    np.testing.assert_allclose(result["per_image"], 10.0)
    assert float(result["l1"]) == 10.0 and float(result["l1_std"]) == 0.0


# -------------------------------------------------------------------------------------------
# Interventions.


def morpho_like(seed, num):
    """Attributes with Morpho's marginals, drawn with numpy (fast, no SCM tracing)."""
    rng = np.random.default_rng(seed)
    thickness = 0.5 + rng.gamma(10.0, 1 / 5, num)
    noise = 2 * (thickness - 2.5) + 0.5 * rng.standard_normal(num)
    return {
        "digit": jnp.asarray(rng.integers(0, 10, num), jnp.int32),
        "thickness": jnp.asarray(thickness, jnp.float32),
        "intensity": jnp.asarray(64 + 191 / (1 + np.exp(-noise)), jnp.float32),
    }


def test_sample_interventions_differ_from_the_factual_and_follow_the_key():
    pa = morpho_like(4, 512)
    marginal = morpho_like(5, 2000)
    digit = sample_interventions(jax.random.key(6), pa, "digit", marginal["digit"])
    assert digit.dtype == jnp.int32 and digit.shape == (512,)
    assert not np.any(np.asarray(digit) == np.asarray(pa["digit"]))
    assert set(np.unique(digit)) <= set(np.unique(marginal["digit"]))

    for node in ("thickness", "intensity"):
        drawn = sample_interventions(jax.random.key(7), pa, node, marginal[node])
        edges = np.asarray(quantile_bins(marginal[node], 10))
        assert edges.shape == (9,)
        np.testing.assert_allclose(
            edges, np.quantile(marginal[node], np.arange(1, 10) / 10), rtol=1e-5
        )
        factual_bin = np.searchsorted(edges, np.asarray(pa[node]), side="right")
        drawn_bin = np.searchsorted(edges, np.asarray(drawn), side="right")
        assert not np.any(factual_bin == drawn_bin)
        assert np.all(np.isin(np.asarray(drawn), np.asarray(marginal[node])))

    edges = jnp.array([2.0, 3.0], jnp.float32)  # explicit bins: < 2, [2, 3), >= 3
    drawn = sample_interventions(
        jax.random.key(8), pa, "thickness", marginal["thickness"], bins=edges
    )
    same = np.searchsorted(edges, np.asarray(drawn), side="right") == np.searchsorted(
        edges, np.asarray(pa["thickness"]), side="right"
    )
    assert not same.any()

    again = sample_interventions(jax.random.key(6), pa, "digit", marginal["digit"])
    np.testing.assert_array_equal(digit, again)
    other = sample_interventions(jax.random.key(9), pa, "digit", marginal["digit"])
    assert np.any(np.asarray(other) != np.asarray(digit))
    free = sample_interventions(jax.random.key(6), pa, "digit", marginal["digit"], False)
    assert np.any(np.asarray(free) == np.asarray(pa["digit"]))  # ~10% coincide by chance


def test_sample_interventions_errors():
    pa = small_parents()
    with pytest.raises(ValueError, match="node"):
        sample_interventions(jax.random.key(0), pa, "colour")
    with pytest.raises(ValueError, match="marginal_values"):
        sample_interventions(jax.random.key(0), pa, "digit", jnp.array([2, 2], jnp.int32))
    with pytest.raises(ValueError, match="marginal_values"):
        sample_interventions(jax.random.key(0), pa, "digit", jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="bins"):
        sample_interventions(jax.random.key(0), pa, "thickness", bins=1)


# -------------------------------------------------------------------------------------------
# Error paths.


def test_bad_inputs_name_the_argument(morpho, batch):
    images, pa = small_images(), small_parents()
    with pytest.raises(ValueError, match=r"parents\['thickness'\]"):
        composition(identity_cf, images, {**pa, "thickness": jnp.zeros(4, jnp.float32)})
    with pytest.raises(ValueError, match="images"):
        composition(identity_cf, images[..., 0], pa)
    with pytest.raises(ValueError, match="do: unknown node 'colour'"):
        effectiveness(identity_cf, images, pa, {"colour": 1.0}, lambda x: {})
    with pytest.raises(ValueError, match=r"do_values\['thickness'\]"):
        reversibility(identity_cf, images, pa, {"thickness": jnp.zeros(5, jnp.float32)})
    with pytest.raises(ValueError, match=r"do\['digit'\]"):
        effectiveness(identity_cf, images, pa, {"digit": 2.5}, lambda x: {})
    with pytest.raises(ValueError, match="do_b: unknown node"):
        commutativity(identity_cf, images, pa, {"digit": 1}, {"colour": 1})
    with pytest.raises(ValueError, match="cf_fn"):
        composition(lambda x, p, d: x[:, :1], images, pa)
    with pytest.raises(ValueError, match="cycles"):
        composition(identity_cf, images, pa, cycles=0)
    with pytest.raises(ValueError, match="targets"):
        effectiveness(
            identity_cf, images, pa, {"digit": 1}, lambda x: {"digit": x[:, 0, 0, 0]}, ["colour"]
        )
    with pytest.raises(ValueError, match="oracle"):
        effectiveness(identity_cf, images, pa, {"digit": 1}, lambda x: {"colour": x[:, 0, 0, 0]})
    with pytest.raises(ValueError, match="do: unknown node"):
        ground_truth_error(identity_cf, batch, {"colour": 1.0}, morpho)
    with pytest.raises(ValueError, match=r"example\['image'\]"):
        ground_truth_error(identity_cf, {**batch, "image": batch["image"][:, :, :, 0]}, {}, morpho)
    with pytest.raises(ValueError, match="interventions"):
        evaluate_counterfactuals(
            identity_cf,
            {**pa, "image": images},
            key=jax.random.key(0),
            oracle=lambda x: {},
            interventions=("colour",),
        )


# -------------------------------------------------------------------------------------------
# The protocol.


def test_evaluate_counterfactuals_exact_generator(morpho):
    # Stored examples (uint8 images, int64 digits, numpy) and a generator on the same grid:
    # every error is exactly 0.
    source = GeneratedSource(morpho, size=NUM, seed=3, chunk_size=NUM)
    examples = stack_examples([source[i] for i in range(NUM)])
    assert examples["image"].dtype == np.uint8
    cf_fn = exact_cf(morpho, examples["style"], quantized=True)
    metrics = evaluate_counterfactuals(
        cf_fn,
        examples,
        key=jax.random.key(10),
        dataset=morpho,
        composition_cycles=2,
        reversibility_cycles=2,
    )
    json.dumps(metrics)
    assert all(type(v) is float for v in metrics.values())
    assert metrics["num_examples"] == NUM
    assert metrics["composition_l1_1"] == 0.0 and metrics["composition_l1_2"] == 0.0
    for label in ("thickness", "intensity", "digit", "random"):
        assert metrics[f"gt_error/do({label})/l1"] == 0.0
        assert metrics[f"gt_error/do({label})/rmse"] == 0.0
        assert metrics[f"reversibility/do({label})/l1_2"] == 0.0
        # The measured error of an exact counterfactual is the oracle's own error.
        for attr in ("thickness", "intensity"):
            eff = metrics[f"effectiveness/do({label})/{attr}_mae"]
            assert eff == pytest.approx(metrics[f"gt_error/do({label})/{attr}_mae_floor"])
    assert metrics["effectiveness/do(thickness)/thickness_mae"] < 0.3
    # Digit commutes with both; thickness and intensity do not in the true SCM: skipped.
    assert metrics["commutativity/do(digit),do(thickness)/l1"] == 0.0
    assert metrics["commutativity/do(digit),do(intensity)/l1"] == 0.0
    assert not any(k.startswith("commutativity/do(thickness),do(intensity)") for k in metrics)


def test_evaluate_counterfactuals_without_dataset_named_oracles_and_batches():
    images, pa = small_images().copy(), small_parents()
    images[:, 0, 0, 0] = np.asarray(pa["digit"])

    def oracle(x):
        return {"digit": x[:, 0, 0, 0].astype(jnp.int32)}

    metrics = evaluate_counterfactuals(
        shift_cf(0.0),
        {**pa, "image": images},
        key=jax.random.key(0),
        oracle={"reader": oracle},
        interventions=("digit", "thickness"),
        random_subset=False,
        composition_cycles=1,
        reversibility_cycles=1,
        batch_size=2,
    )
    assert metrics["composition_l1_1"] == 0.0
    assert metrics["effectiveness/do(digit)/reader/digit_acc"] == 0.0  # forced to differ
    assert metrics["effectiveness/do(thickness)/reader/digit_acc"] == 1.0
    assert metrics["commutativity/do(digit),do(thickness)/l1"] == 0.0
    assert not any(k.startswith("gt_error") for k in metrics)


def test_helpers():
    pa = small_parents()
    assert (
        update_parents(pa, {"digit": jnp.array([7, 7, 7], jnp.int32)})["digit"].tolist() == [7] * 3
    )
    images = small_images()
    do = {"digit": jnp.array([2, 3, 4], jnp.int32)}
    seen = []

    def recording_cf(images, parents, do):
        seen.append(images.shape[0])
        return roll_cf(images, parents, do)

    # 3 images in chunks of 2, and in one chunk of 4: a short chunk is padded (so a jitted
    # cf_fn compiles once) and the padding's output dropped.
    for size, calls in ((2, [2, 2]), (4, [4]), (3, [3])):
        seen.clear()
        out = batched(recording_cf, size)(images, pa, do)
        np.testing.assert_array_equal(out, roll_cf(images, pa, do))
        assert seen == calls
    # A pytree result (say, every node of the counterfactual world) is chunked alike.
    world = batched(lambda x, p, d: {"image": roll_cf(x, p, d), "digit": d["digit"]}, 2)
    out = world(images, pa, do)
    np.testing.assert_array_equal(out["image"], roll_cf(images, pa, do))
    np.testing.assert_array_equal(out["digit"], [2, 3, 4])
    with pytest.raises(ValueError, match="batch_size"):
        batched(roll_cf, 0)
