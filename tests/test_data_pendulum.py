"""The pendulum generator against hand-computed geometry, the reference CausalVAE grid
statistics, pixel colours at known canvas points, and exact counterfactual re-rendering."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from causalvision.data import Pendulum

FIREBRICK = np.array([178, 34, 34]) / 255
ORANGE = np.array([255, 165, 0]) / 255


def by_hand(theta_deg: float, phi_deg: float) -> tuple[float, float]:
    """REFERENCE §1.3 with plain math: (shade, mid) of the shadow on the floor y = -0.5."""
    theta, phi = math.radians(theta_deg), math.radians(phi_deg)

    def proj(x, y, base):
        return x + (base - y) / math.tan(phi)

    pivot = proj(10.0, 10.5, -0.5)
    tip = proj(10 + 9.5 * math.sin(theta), 10.5 - 9.5 * math.cos(theta), -0.5)
    return max(3.0, abs(pivot - tip)), 0.5 * (pivot + tip)


def one(angle: float, light: float) -> dict:
    """A single fully specified example, through the SCM (roots set by intervention)."""
    values = Pendulum().scm.sample(jax.random.key(0), 1, do={"angle": angle, "light": light})
    return {k: np.asarray(v) for k, v in values.items()}


def pixel(image, x, y):
    row, col = Pendulum.to_pixel(x, y, image.shape[0])
    return np.asarray(image[int(row), int(col)])


def test_vertical_pendulum_under_overhead_sun_casts_the_floor_shadow_at_10():
    ex = one(0.0, 90.0)
    np.testing.assert_allclose(ex["shadow_length"], [3.0], atol=1e-5)
    np.testing.assert_allclose(ex["shadow_position"], [10.0], atol=1e-5)


@pytest.mark.parametrize("angle, light", [(30.0, 60.0), (-20.0, 120.0), (38.7, 54.0)])
def test_oblique_shadows_match_the_hand_computed_projection(angle, light):
    shade, mid = by_hand(angle, light)
    ex = one(angle, light)
    np.testing.assert_allclose(ex["shadow_length"], [shade], atol=1e-4)
    np.testing.assert_allclose(ex["shadow_position"], [mid], atol=1e-4)


def test_30_60_by_closed_form():
    # cot 60° = 1/√3; pivot -> 10 - 11/√3;
    # tip (14.75, 10.5 - 9.5·√3/2) -> 14.75 - (11 - 9.5·√3/2)/√3, so shade = 4.75 + 4.75.
    s3 = math.sqrt(3.0)
    pivot, tip = 10 - 11 / s3, 14.75 - (11 - 9.5 * s3 / 2) / s3
    ex = one(30.0, 60.0)
    np.testing.assert_allclose(ex["shadow_length"], [abs(tip - pivot)], atol=1e-4)  # 4.75 + 4.75
    np.testing.assert_allclose(ex["shadow_length"], [9.5], atol=1e-4)
    np.testing.assert_allclose(ex["shadow_position"], [0.5 * (pivot + tip)], atol=1e-4)


def test_reference_grid_reproduces_the_causalvae_statistics():
    grid = Pendulum.grid()
    assert all(v.shape == (7308,) and v.dtype == jnp.float32 for v in grid.values())
    angle, light = np.asarray(grid["angle"]), np.asarray(grid["light"])
    np.testing.assert_allclose(np.unique(angle), 0.9 * np.arange(-40, 44), atol=1e-5)
    lights = np.unique(light)
    assert len(lights) == 87 and not np.isclose(lights, 90.0).any()
    np.testing.assert_allclose([lights[0], lights[-1]], [54.0, 132.3], atol=1e-5)
    # Angle-major order, as the reference loops.
    np.testing.assert_allclose(angle[:87], -36.0, atol=1e-6)
    shade, mid = np.asarray(grid["shadow_length"]), np.asarray(grid["shadow_position"])
    assert shade.min() >= 3.0
    assert 0.38 <= np.mean(shade == 3.0) <= 0.41  # reference: 39.6% on the floor
    assert 3.0 <= shade.min() and shade.max() <= 12.6 and shade.max() > 12.5
    assert 2.0 <= mid.min() < 2.1 and 19.5 < mid.max() <= 19.7
    # Every label is the float64 geometry of its angles.
    for i in (0, 1234, 7307):
        np.testing.assert_allclose(
            [shade[i], mid[i]], by_hand(float(angle[i]), float(light[i])), atol=1e-4
        )
    small = Pendulum.grid(3, 4)
    assert small["angle"].shape == (12,)
    np.testing.assert_allclose(np.unique(small["angle"]), [-36.0, 1.35, 38.7], atol=1e-5)


def test_samples_stay_in_the_support_and_obey_the_geometry():
    values = Pendulum().scm.sample(jax.random.key(1), 4000)
    angle, light = np.asarray(values["angle"]), np.asarray(values["light"])
    assert angle.min() >= -36.0 and angle.max() < 39.6 and np.ptp(angle) > 70
    assert light.min() >= 54.0 and light.max() < 133.2 and np.ptp(light) > 75
    shade = np.asarray(values["shadow_length"])
    assert shade.min() >= 3.0 and 0.2 < np.mean(shade == 3.0) < 0.6
    for i in range(5):
        np.testing.assert_allclose(
            [shade[i], values["shadow_position"][i]],
            by_hand(float(angle[i]), float(light[i])),
            atol=1e-4,
        )


def test_canvas_to_pixel_mapping():
    # x in (0, 20) -> columns left to right; y in (-1, 21) -> rows top to bottom.
    assert Pendulum.to_pixel(0.01, 20.99, 96) == (0, 0)
    assert Pendulum.to_pixel(19.99, -0.99, 96) == (95, 95)
    assert Pendulum.to_pixel(10.0, 10.0, 96) == (48, 48)  # row floor(11 · 96/22) = 48
    assert Pendulum.to_pixel(5.0, -0.5, 32) == (31, 8)
    assert Pendulum().line_width == pytest.approx(4.0)  # 3 pt at 96 dpi


@pytest.mark.parametrize("size", [96, 64, 32])
def test_rendered_colours_at_known_canvas_points(size):
    pendulum = Pendulum(image_size=size)
    ex = one(10.0, 70.0)
    image = pendulum.render(ex)
    assert image.shape == (1, size, size, 3) and image.dtype == jnp.float32
    image = np.asarray(image[0])
    assert image.min() >= 0.0 and image.max() <= 1.0
    theta, phi = math.radians(10.0), math.radians(70.0)
    bob = (10 + 8 * math.sin(theta), 10.5 - 8 * math.cos(theta))
    sun = (10 + 10 / math.tan(phi), 20.5)
    np.testing.assert_allclose(pixel(image, *bob), FIREBRICK, atol=0.05)
    np.testing.assert_allclose(pixel(image, *sun), ORANGE, atol=0.05)
    np.testing.assert_allclose(pixel(image, 2.0, 8.0), [1.0, 1.0, 1.0])  # far from everything
    np.testing.assert_allclose(pixel(image, 10.0, 13.0), [1.0, 1.0, 1.0])  # above the pivot
    # The rod, halfway between pivot and bob, is black (grey-ish at 32 px: 1.3 px wide).
    dark = 0.05 if size >= 64 else 0.6
    rod = (10 + 4 * math.sin(theta), 10.5 - 4 * math.cos(theta))
    assert pixel(image, *rod).max() < dark
    # The shadow row: dark around mid, white beyond mid ± (shade/2 + line width).
    shade, mid = float(ex["shadow_length"][0]), float(ex["shadow_position"][0])
    width = pendulum.line_width * 20 / size  # in canvas x units
    for x in (mid, mid - 0.4 * shade, mid + 0.4 * shade):
        assert pixel(image, x, -0.5).max() < dark
    for x in (mid - shade / 2 - width - 0.5, mid + shade / 2 + width + 0.5):
        np.testing.assert_allclose(pixel(image, x, -0.5), [1.0, 1.0, 1.0])


def test_sample_returns_attributes_and_images():
    pendulum = Pendulum(image_size=32)
    batch = pendulum.sample(jax.random.key(2), 16)
    assert set(batch) == {"angle", "light", "shadow_length", "shadow_position", "image"}
    assert batch["image"].shape == (16, 32, 32, 3)
    assert all(
        batch[k].shape == (16,) and batch[k].dtype == jnp.float32 for k in Pendulum.attributes
    )
    again = pendulum.render({k: batch[k] for k in Pendulum.attributes})
    assert np.array_equal(np.asarray(again), np.asarray(batch["image"]))  # bit-identical
    assert np.mean(np.asarray(batch["image"]) < 0.99) > 0.02  # not blank


@pytest.fixture(scope="module")
def batch():
    return Pendulum(image_size=64).sample(jax.random.key(3), 8)


def test_null_counterfactuals_re_render_bit_identical_images(batch):
    pendulum = Pendulum(image_size=64)
    for do in ({}, {"angle": batch["angle"]}, {"light": batch["light"]}):
        cf = pendulum.counterfactual(batch, do=do)
        assert np.array_equal(np.asarray(cf["image"]), np.asarray(batch["image"])), do
        for k in Pendulum.attributes:
            assert np.array_equal(np.asarray(cf[k]), np.asarray(batch[k])), (do, k)


def test_do_angle_moves_the_shadow_as_the_geometry_says(batch):
    pendulum = Pendulum(image_size=64)
    cf = pendulum.counterfactual(batch, do={"angle": 25.0})
    np.testing.assert_array_equal(cf["light"], batch["light"])
    np.testing.assert_allclose(cf["angle"], 25.0)
    for i in range(8):
        shade, mid = by_hand(25.0, float(batch["light"][i]))
        np.testing.assert_allclose(
            [cf["shadow_length"][i], cf["shadow_position"][i]], [shade, mid], atol=1e-4
        )
    changed = np.abs(np.asarray(cf["image"]) - np.asarray(batch["image"])).max(axis=(1, 2, 3))
    assert (changed > 0.5).all()


def test_do_shadow_length_changes_only_pixels_near_the_shadow_row(batch):
    pendulum = Pendulum(image_size=64)
    cf = pendulum.counterfactual(batch, do={"shadow_length": 11.0})
    for k in ("angle", "light", "shadow_position"):
        np.testing.assert_array_equal(cf[k], batch[k])
    np.testing.assert_allclose(cf["shadow_length"], 11.0)
    diff = np.abs(np.asarray(cf["image"]) - np.asarray(batch["image"])).max(axis=(0, 2, 3))
    row, _ = Pendulum.to_pixel(10.0, -0.5, 64)
    near = np.abs(np.arange(64) - row) <= pendulum.line_width
    assert diff[~near].max() == 0.0
    assert diff[near].max() > 0.5


def test_bad_inputs_raise_value_errors_naming_the_argument(batch):
    pendulum = Pendulum(image_size=64)
    with pytest.raises(ValueError, match="image_size"):
        Pendulum(image_size=8)
    with pytest.raises(ValueError, match="do"):
        pendulum.counterfactual(batch, do={"wind": 1.0})
    with pytest.raises(ValueError, match=r"do\['angle'\].*support"):
        pendulum.counterfactual(batch, do={"angle": 80.0})
    with pytest.raises(ValueError, match="example"):
        pendulum.counterfactual({"angle": batch["angle"]}, do={})
    with pytest.raises(ValueError, match=r"example\['angle'\].*support"):
        pendulum.counterfactual({**batch, "angle": batch["angle"] + 100.0}, do={})
    with pytest.raises(ValueError, match="attributes"):
        pendulum.render({"angle": jnp.zeros(2), "light": jnp.zeros(2)})
    with pytest.raises(ValueError, match="num"):
        pendulum.sample(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="num_angle"):
        Pendulum.grid(0, 5)
