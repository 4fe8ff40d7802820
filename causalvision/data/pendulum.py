"""The CausalVAE pendulum as an explicit SCM over its attributes plus a pure-JAX renderer.

A pendulum hangs from a pivot and a sun shines on it; the shadow on the floor follows from the
pendulum angle and the light angle by exact projective geometry:

    angle  θ ~ Uniform(-36°, 39.6°)      (root)
    light  φ ~ Uniform(54°, 133.2°)      (root)
    shadow_length   = max(3, |proj(pivot) - proj(tip)|)       (deterministic child of θ, φ)
    shadow_position = ½ [proj(pivot) + proj(tip)]              (deterministic child of θ, φ)

with proj(x, y, base) = x + (base - y) / tan φ onto the floor y = -0.5, pivot (10, 10.5) and
tip (10 + 9.5 sin θ, 10.5 - 9.5 cos θ). Because the attributes form an ordinary
`causalvision.scm.SCM` and the image is a deterministic function of them, any example can be
re-rendered under any intervention: `Pendulum.counterfactual` gives the exact ground-truth
counterfactual image.

Source: huawei-noah/trustworthyAI, `research/CausalVAE/causal_data/pendulum.py` (Yang et al.,
CausalVAE, CVPR 2021). Same canvas (x in (0, 20), y in (-1, 21)), shapes, colours and geometry.
What differs:

- rendering is procedural: anti-aliased signed-distance shapes rasterised by a jit-compiled,
  vectorised JAX function (no matplotlib), and the canvas fills the whole image (no figure
  margins); RGB in [0, 1] instead of RGBA PNG files;
- labels are float32 in degrees / canvas units, not integer-truncated file names;
- the roots are continuous uniforms over the reference ranges (the integer grids
  a in [-40, 44), b in [60, 148) with θ = 0.9a°, φ = 0.9b°); `Pendulum.grid()` reproduces the
  reference's 84 x 87 = 7,308 discrete examples exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from causalvision.data.dataset import check_attributes
from causalvision.scm import SCM, AdditiveNoise, Attribute, Root
from causalvision.validation import check_int

Array = jax.Array

__all__ = ["Pendulum"]

# Supports hold every value with a margin (a flow's interval is open; uniform draws may hit
# the low end exactly); standardisation is the generator's marginal mean and standard
# deviation (uniform roots analytically, shadows by Monte Carlo over 4M draws).
ATTRIBUTE_SPECS = (
    Attribute("angle", "continuous", support=("interval", -36.5, 40.0), standardise=(1.8, 21.82)),
    Attribute("light", "continuous", support=("interval", 53.5, 133.7), standardise=(93.6, 22.86)),
    Attribute(
        "shadow_length",
        "continuous",
        parents=("angle", "light"),
        support=("positive", 2.5),  # >= 3 (40% of the mass sits at 3), <= 12.8
        standardise=(4.96, 2.37),
    ),
    Attribute(
        "shadow_position",
        "continuous",
        parents=("angle", "light"),
        support=("interval", 1.5, 20.5),  # in [2.0, 19.93]
        standardise=(10.64, 3.42),
    ),
)
ATTRIBUTES = tuple(spec.name for spec in ATTRIBUTE_SPECS)

# Geometry of the reference canvas, in canvas units.
X_RANGE = (0.0, 20.0)
Y_RANGE = (-1.0, 21.0)
PIVOT = (10.0, 10.5)
ROD_LENGTH = 8.0  # pivot to bob centre
TIP_LENGTH = 9.5  # pivot to the far edge of the bob
BOB_RADIUS = 1.5
SUN_RADIUS = 3.0
SUN_HEIGHT = 20.5
FLOOR = -0.5
MIN_SHADOW = 3.0
# 3 points wide on a 1-inch canvas: 3/72 of the image side, whatever its resolution.
LINE_WIDTH_FRACTION = 3.0 / 72.0

ORANGE = (1.0, 165.0 / 255.0, 0.0)
FIREBRICK = (178.0 / 255.0, 34.0 / 255.0, 34.0 / 255.0)
BLACK = (0.0, 0.0, 0.0)

# Reference ranges: θ = aπ/200 rad = 0.9a degrees.
ANGLE_RANGE = (-36.0, 39.6)  # a in [-40, 44)
LIGHT_RANGE = (54.0, 133.2)  # b in [60, 148)
DEGREES_PER_STEP = 0.9


def _radians(degrees: Array) -> Array:
    return degrees * jnp.float32(np.pi / 180.0)


def shadow_geometry(angle: Array, light: Array) -> tuple[Array, Array]:
    """Shadow length and position (floor x) for pendulum `angle` and `light` in degrees."""
    theta, phi = _radians(angle), _radians(light)
    cot = jnp.cos(phi) / jnp.sin(phi)  # 1 / tan φ, finite at φ = 90°
    pivot_x, pivot_y = PIVOT
    tip_x = pivot_x + TIP_LENGTH * jnp.sin(theta)
    tip_y = pivot_y - TIP_LENGTH * jnp.cos(theta)
    proj_pivot = pivot_x + (FLOOR - pivot_y) * cot
    proj_tip = tip_x + (FLOOR - tip_y) * cot
    length = jnp.maximum(jnp.float32(MIN_SHADOW), jnp.abs(proj_pivot - proj_tip))
    return length, 0.5 * (proj_pivot + proj_tip)


def _shadow_length(parents: Array) -> Array:
    return shadow_geometry(parents[:, 0], parents[:, 1])[0]


def _shadow_position(parents: Array) -> Array:
    return shadow_geometry(parents[:, 0], parents[:, 1])[1]


def _as_float32(value: Any) -> Array:
    return jnp.asarray(value).astype(jnp.float32)


# -------------------------------------------------------------------------------------------
# Rasterisation: signed distances in pixel units, coverage = clip(0.5 - d, 0, 1).


def _pixel_xy(x: Array, y: Array, size: int) -> tuple[Array, Array]:
    """Canvas (x, y) -> continuous pixel (column, row); pixel (i, j) covers [j, j+1) x [i, i+1)."""
    column = (x - X_RANGE[0]) * (size / (X_RANGE[1] - X_RANGE[0]))
    row = (Y_RANGE[1] - y) * (size / (Y_RANGE[1] - Y_RANGE[0]))
    return column, row


def _ellipse_distance(px, py, cx, cy, ax, ay):
    """Approximate signed distance to an axis-aligned ellipse (first-order, exact on circles)."""
    qx, qy = (px - cx) / ax, (py - cy) / ay
    k = jnp.sqrt(qx * qx + qy * qy)
    grad = jnp.sqrt((qx / ax) ** 2 + (qy / ay) ** 2)
    safe = jnp.maximum(grad, jnp.float32(1e-6))
    far_inside = (k - 1.0) * jnp.minimum(ax, ay)
    return jnp.where(k > 0.5, k * (k - 1.0) / safe, far_inside)


def _segment_distance(px, py, x0, y0, x1, y1, half_width):
    """Signed distance to a line of width 2*half_width with projecting (square) caps."""
    dx, dy = x1 - x0, y1 - y0
    length = jnp.sqrt(dx * dx + dy * dy)
    safe = jnp.maximum(length, jnp.float32(1e-6))
    ux, uy = dx / safe, dy / safe
    rx, ry = px - 0.5 * (x0 + x1), py - 0.5 * (y0 + y1)
    along = jnp.abs(rx * ux + ry * uy) - (0.5 * length + half_width)
    across = jnp.abs(-rx * uy + ry * ux) - half_width
    outside = jnp.sqrt(jnp.maximum(along, 0.0) ** 2 + jnp.maximum(across, 0.0) ** 2)
    return outside + jnp.minimum(jnp.maximum(along, across), 0.0)


def _over(image: Array, distance: Array, colour: tuple[float, float, float]) -> Array:
    alpha = jnp.clip(0.5 - distance, 0.0, 1.0)[:, :, None]
    return image * (1.0 - alpha) + jnp.asarray(colour, jnp.float32).reshape(1, 1, 3) * alpha


def _render_one(angle, light, length, position, size: int) -> Array:
    centres = jnp.arange(size, dtype=jnp.float32) + 0.5
    px, py = centres[None, :], centres[:, None]
    scale_x = size / (X_RANGE[1] - X_RANGE[0])
    scale_y = size / (Y_RANGE[1] - Y_RANGE[0])
    half_width = jnp.float32(0.5 * LINE_WIDTH_FRACTION * size)
    theta, phi = _radians(angle), _radians(light)
    cot = jnp.cos(phi) / jnp.sin(phi)

    sun_x, sun_y = _pixel_xy(PIVOT[0] + (SUN_HEIGHT - PIVOT[1]) * cot, SUN_HEIGHT, size)
    pivot_x, pivot_y = _pixel_xy(PIVOT[0], PIVOT[1], size)
    bob_x, bob_y = _pixel_xy(
        PIVOT[0] + ROD_LENGTH * jnp.sin(theta), PIVOT[1] - ROD_LENGTH * jnp.cos(theta), size
    )
    left_x, floor_y = _pixel_xy(position - 0.5 * length, FLOOR, size)
    right_x, _ = _pixel_xy(position + 0.5 * length, FLOOR, size)

    image = jnp.ones((size, size, 3), jnp.float32)
    image = _over(
        image,
        _ellipse_distance(px, py, sun_x, sun_y, SUN_RADIUS * scale_x, SUN_RADIUS * scale_y),
        ORANGE,
    )
    image = _over(
        image, _segment_distance(px, py, pivot_x, pivot_y, bob_x, bob_y, half_width), BLACK
    )
    image = _over(
        image,
        _ellipse_distance(px, py, bob_x, bob_y, BOB_RADIUS * scale_x, BOB_RADIUS * scale_y),
        FIREBRICK,
    )
    image = _over(
        image, _segment_distance(px, py, left_x, floor_y, right_x, floor_y, half_width), BLACK
    )
    return image


@partial(jax.jit, static_argnames="size")
def _render(angle, light, length, position, *, size: int) -> Array:
    return jax.vmap(partial(_render_one, size=size))(angle, light, length, position)


# -------------------------------------------------------------------------------------------


class Pendulum:
    """The CausalVAE pendulum: an SCM over (angle, light, shadow_length, shadow_position).

    Args:
      image_size: side of the square RGB images in pixels (>= 16; default 96 as the reference).

    Attributes:
      scm: the attributes' `SCM`; `angle` and `light` (degrees) are uniform roots,
        `shadow_length` and `shadow_position` (canvas units) deterministic children.

    Example:
      >>> import jax
      >>> pendulum = Pendulum(image_size=16)
      >>> batch = pendulum.sample(jax.random.key(0), 2)  # attributes + "image"
      >>> batch["image"].shape
      (2, 16, 16, 3)
      >>> cf = pendulum.counterfactual(batch, do={"light": 120.0})
      >>> cf["light"].tolist(), bool((cf["angle"] == batch["angle"]).all())
      ([120.0, 120.0], True)
      >>> bool((cf["shadow_position"] != batch["shadow_position"]).all())  # the shadow moved
      True
    """

    name = "pendulum"
    attribute_specs = ATTRIBUTE_SPECS
    attributes = ATTRIBUTES
    pixel_scale = 255.0  # renders in [0, 1]
    exogenous: ClassVar[dict[str, Any]] = {}  # the image is a function of the attributes
    measure = None  # no exact morphometry of pendulum images

    def __init__(self, image_size: int = 96):
        self.image_size = check_int(image_size, "image_size", 16)
        self.scm = SCM(
            {
                "angle": Root(dist.Uniform(*ANGLE_RANGE)),
                "light": Root(dist.Uniform(*LIGHT_RANGE)),
                "shadow_length": AdditiveNoise(("angle", "light"), _shadow_length, dist.Delta(0.0)),
                "shadow_position": AdditiveNoise(
                    ("angle", "light"), _shadow_position, dist.Delta(0.0)
                ),
            }
        )

    def __repr__(self) -> str:
        return f"Pendulum(image_size={self.image_size})"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    @property
    def tfds_name(self) -> str:
        return f"pendulum/{self.image_size}px"

    @staticmethod
    def to_pixel(x: Any, y: Any, image_size: int = 96) -> tuple[np.ndarray, np.ndarray]:
        """Canvas (x, y) -> integer pixel (row, column) containing it, at `image_size`."""
        column, row = _pixel_xy(np.asarray(x, np.float64), np.asarray(y, np.float64), image_size)
        return np.floor(row).astype(np.int64), np.floor(column).astype(np.int64)

    @property
    def line_width(self) -> float:
        """Width of the rod and the shadow, in pixels (3 points on a 1-inch canvas)."""
        return LINE_WIDTH_FRACTION * self.image_size

    def _attributes(self, values: Mapping[str, Any], argument: str) -> dict[str, Array]:
        if not isinstance(values, Mapping):
            raise ValueError(f"{argument}: expected a dict of attributes, got {type(values)}")
        missing = [n for n in ATTRIBUTES if n not in values]
        if missing:
            raise ValueError(f"{argument}: missing attribute(s) {missing}; need {ATTRIBUTES}")
        out = {n: _as_float32(values[n]) for n in ATTRIBUTES}
        shapes = {n: v.shape for n, v in out.items()}
        if any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) != 1:
            raise ValueError(f"{argument}: expected attributes of one shape (N,), got {shapes}")
        check_attributes(ATTRIBUTE_SPECS, out, argument)
        return out

    def render(self, attributes: Mapping[str, Any]) -> Array:
        """Images `(N, S, S, 3)` float32 in [0, 1] of the given attributes (each `(N,)`).

        The rod and bob follow `angle`, the sun `light`, the shadow `shadow_length` and
        `shadow_position`; the image is a deterministic function of the attributes.
        """
        a = self._attributes(attributes, "attributes")
        return _render(
            a["angle"],
            a["light"],
            a["shadow_length"],
            a["shadow_position"],
            size=self.image_size,
        )

    def sample(self, key: Array, num: int) -> dict[str, Array]:
        """`num` examples from the generator: the four attributes `(N,)` and "image"."""
        values = self.scm.sample(key, check_int(num, "num", 1))
        return {**{n: values[n] for n in ATTRIBUTES}, "image": self.render(values)}

    def counterfactual(self, example: Mapping[str, Any], do: Mapping[str, Any]) -> dict[str, Array]:
        """The exact counterfactual of `example` (attributes `(N,)`) under `do`, re-rendered.

        Deterministic children keep zero noise, so e.g. `do={"angle": 10.0}` moves the shadow
        as the geometry dictates, while `do={"shadow_length": 5.0}` changes only the shadow.
        """
        factual = self._attributes(example, "example")
        check_attributes(ATTRIBUTE_SPECS, do, "do")  # before the geometry hides a bad value
        for name in ("angle", "light"):
            value = np.asarray(factual[name])
            ok = self.scm.mechanisms[name].in_support(value)
            if ok is not None and not ok.all():
                low, high = ANGLE_RANGE if name == "angle" else LIGHT_RANGE
                raise ValueError(
                    f"example[{name!r}]: {int((~ok).sum())} value(s) outside the support "
                    f"[{low}, {high}) degrees, e.g. {value[~ok][:3].tolist()}"
                )
        values = self.scm.counterfactual(factual, do)
        values = {n: _as_float32(values[n]) for n in ATTRIBUTES}
        return {**values, "image": self.render(values)}

    @staticmethod
    def grid(num_angle: int = 84, num_light: int = 87) -> dict[str, Array]:
        """Attributes of a deterministic grid, angle-major (images: `render` them on demand).

        The defaults give the reference CausalVAE set exactly: θ = 0.9a° for a in {-40..43},
        φ = 0.9b° for b in {60..147} without 100, 84 x 87 = 7,308 examples in the reference's
        order. Other sizes give evenly spaced values over the same closed ranges
        [-36°, 38.7°] x [54°, 132.3°].
        """
        check_int(num_angle, "num_angle", 1)
        check_int(num_light, "num_light", 1)
        if (num_angle, num_light) == (84, 87):
            angles = DEGREES_PER_STEP * np.arange(-40, 44, dtype=np.float64)
            steps = np.array([b for b in range(60, 148) if b != 100], dtype=np.float64)
            lights = DEGREES_PER_STEP * steps
        else:
            angles = np.linspace(-36.0, 38.7, num_angle)
            lights = np.linspace(54.0, 132.3, num_light)
        angle = jnp.asarray(np.repeat(angles, len(lights)), jnp.float32)
        light = jnp.asarray(np.tile(lights, len(angles)), jnp.float32)
        length, position = shadow_geometry(angle, light)
        return {
            "angle": angle,
            "light": light,
            "shadow_length": length,
            "shadow_position": position,
        }
