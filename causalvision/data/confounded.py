"""A confounded shape-classification benchmark: an explicit SCM, so every group is known exactly.

The label is the shape of one object; a confounder, the background, shifts both the label's
distribution and the image's appearance (K classes of each, K = `num_classes`):

    background  C ~ Uniform{0, ..., K-1}                     (root, Gumbel-max categorical)
    shape       Y = argmax_s [log P(s | C) + g_s],  g ~ Gumbel(0, 1)^K   (child of C)
                P(Y = s | C = c) = a if s == c else (1 - a) / (K - 1),   a = `agreement`

and the image is a deterministic function of (C, Y) and the renderer's exogenous noise: the
background is a uniform colour of hue c/K (one well-separated hue per class) modulated by
low-contrast stripes (orientation and phase from the noise); the object is a light-grey shape
(circle, square, triangle, cross, star, ring: the first K), anti-aliased from signed distances
at a random position (fully inside the canvas), size, rotation and grey tone, none of which
depends on a class. Colour is the easy shortcut, shape the invariant feature.

Splits (`ConfoundedShapes.split`), after Waterbirds and Colored MNIST (REFERENCE §4.6):

- "train": the dataset as built (default a = 0.95, Waterbirds' 95% agreement): a classifier
  can score ~95% by reading the background colour alone;
- "unconfounded": a = 1/K, shape independent of background: every group equally likely;
- "anticorrelated": a = 0, the shape never matches its background: a pure-colour classifier
  scores 0%, so worst-group and mean accuracy here expose a shortcut.

Group `g = shape * K + background` (`ConfoundedShapes.group`): all K² groups are known for
every example, so worst-group accuracy is exact, with P(group) from `group_probabilities`.

Counterfactuals are exact and deterministic. Every example keeps the renderer's noise and
the shape node's Gumbel noise `shape_noise` (K floats) among its `exogenous` fields, so the
SCM's counterfactual needs no posterior draw of that noise (`SCM.counterfactual` would draw
one, with a key, different per call): under `do(background=c')` alone the shape is
`argmax_s [log P(s | c') + g_s]` with the example's own g (Gumbel-max counterfactual
stability, Oberst & Sontag 2019), so it may change with the background, as the SCM says; at
the default 95% agreement it follows the new background ~95% of the time. To change the
background only, hold the shape too: `do={"background": c', "shape": y}`. `do(shape)`
changes only the object, `do(background, shape)` only the colour.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from causalvision.data.dataset import check_attributes
from causalvision.scm import SCM, Attribute, Categorical
from causalvision.validation import check_int, check_real

Array = jax.Array

__all__ = ["ConfoundedShapes"]

ATTRIBUTES = ("background", "shape")
SHAPES = ("circle", "square", "triangle", "cross", "star", "ring")
MAX_CLASSES = len(SHAPES)
DEFAULTS = {"num_classes": 4, "agreement": 0.95, "image_size": 32}
STYLE = ("position", "radius", "rotation", "tone", "texture")
NOISE = "shape_noise"  # the shape node's Gumbel noise, (K,) per example

# Renderer noise ranges; lengths are fractions of the image side, so one example's noise
# renders the same picture at any resolution.
RADIUS_RANGE = (0.2, 0.3)  # every shape lies within this circumradius
MARGIN = 0.04  # between the object's circumcircle and the canvas edge
TONE_RANGE = (0.8, 1.0)  # grey level of the object
BACKGROUND_SATURATION, BACKGROUND_VALUE = 0.8, 0.6  # HSV of the palette: darker than objects
STRIPE_AMPLITUDE = 0.1  # relative brightness modulation of the background
STRIPE_PERIOD = 0.25  # of the image side
MIN_CHROMA = 0.05  # a pixel this far from grey (RGB in [0, 1]) shows the background hue


def palette(num_classes: int) -> np.ndarray:
    """The background colours `(K, 3)` in [0, 1]: hues c/K, evenly spaced around the circle."""
    return np.array(
        [
            colorsys.hsv_to_rgb(c / num_classes, BACKGROUND_SATURATION, BACKGROUND_VALUE)
            for c in range(num_classes)
        ],
        np.float32,
    )


def shape_table(num_classes: int, agreement: float) -> np.ndarray:
    """P(shape = s | background = c) `(K, K)`: `agreement` on the diagonal, the rest even."""
    table = np.full((num_classes, num_classes), (1.0 - agreement) / (num_classes - 1))
    np.fill_diagonal(table, agreement)
    return table


# -------------------------------------------------------------------------------------------
# Signed distances of unit shapes (circumradius <= 1, centred at the origin), after Inigo
# Quilez's 2D distance functions; negative inside.


def _box(x, y, half_x, half_y):
    dx, dy = jnp.abs(x) - half_x, jnp.abs(y) - half_y
    outside = jnp.sqrt(jnp.maximum(dx, 0.0) ** 2 + jnp.maximum(dy, 0.0) ** 2)
    return outside + jnp.minimum(jnp.maximum(dx, dy), 0.0)


def _circle(x, y):
    return jnp.sqrt(x * x + y * y) - 0.85


def _square(x, y):
    return _box(x, y, 0.68, 0.68)  # circumradius 0.96


def _triangle(x, y):
    """Equilateral, circumradius 1, centroid at the origin, apex up (-y)."""
    k = math.sqrt(3.0)
    half = 0.5 * k  # half the side
    x = jnp.abs(x) - half
    y = -y + half / k
    fold = x + k * y > 0.0
    x, y = jnp.where(fold, (x - k * y) / 2.0, x), jnp.where(fold, (-k * x - y) / 2.0, y)
    x = x - jnp.clip(x, -2.0 * half, 0.0)
    return -jnp.sqrt(x * x + y * y) * jnp.sign(y)


def _cross(x, y):
    return jnp.minimum(_box(x, y, 0.95, 0.3), _box(x, y, 0.3, 0.95))  # circumradius 0.996


def _star(x, y):
    """Five points at radius 1, inner vertices at radius ~0.5."""
    k1x, k1y = 0.809016994375, -0.587785252292
    k2x, k2y = -k1x, k1y
    x = jnp.abs(x)
    y = -y  # a point up
    d = 2.0 * jnp.maximum(k1x * x + k1y * y, 0.0)
    x, y = x - d * k1x, y - d * k1y
    d = 2.0 * jnp.maximum(k2x * x + k2y * y, 0.0)
    x, y = x - d * k2x, y - d * k2y
    x = jnp.abs(x)
    y = y - 1.0
    inner = 0.5
    bax, bay = -inner * k1y, inner * k1x - 1.0
    h = jnp.clip((x * bax + y * bay) / (bax * bax + bay * bay), 0.0, 1.0)
    return jnp.sqrt((x - bax * h) ** 2 + (y - bay * h) ** 2) * jnp.sign(y * bax - x * bay)


def _ring(x, y):
    return jnp.abs(jnp.sqrt(x * x + y * y) - 0.68) - 0.24  # radii 0.44 to 0.92


_DISTANCES = (_circle, _square, _triangle, _cross, _star, _ring)


# -------------------------------------------------------------------------------------------
# Rendering: coverage = clip(0.5 - d, 0, 1) with d the signed distance in pixels.


def _grid(size: int) -> tuple[Array, Array]:
    centres = jnp.arange(size, dtype=jnp.float32) + 0.5
    return centres[None, :], centres[:, None]  # column (x), row (y)


def _coverage_one(shape, position, radius, rotation, *, size: int, num_classes: int) -> Array:
    px, py = _grid(size)
    r = radius * size
    dx, dy = px - position[0] * size, py - position[1] * size
    cos, sin = jnp.cos(rotation), jnp.sin(rotation)
    x, y = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r
    distances = jnp.stack([f(x, y) for f in _DISTANCES[:num_classes]])
    return jnp.clip(0.5 - distances[shape] * r, 0.0, 1.0)


def _background_one(background, texture, colours, *, size: int) -> Array:
    px, py = _grid(size)
    orientation, phase = texture[0], texture[1]
    along = (px * jnp.cos(orientation) + py * jnp.sin(orientation)) / (STRIPE_PERIOD * size)
    shade = 1.0 + STRIPE_AMPLITUDE * jnp.sin(2.0 * jnp.pi * along + phase)
    return shade[:, :, None] * colours[background][None, None, :]


def _render_one(background, shape, style, colours, *, size: int, num_classes: int) -> Array:
    alpha = _coverage_one(
        shape, style["position"], style["radius"], style["rotation"],
        size=size, num_classes=num_classes,
    )[:, :, None]  # fmt: skip
    image = _background_one(background, style["texture"], colours, size=size)
    return image * (1.0 - alpha) + style["tone"] * alpha


@partial(jax.jit, static_argnames=("size", "num_classes"))
def _render(background, shape, style, colours, *, size: int, num_classes: int) -> Array:
    one = partial(_render_one, colours=colours, size=size, num_classes=num_classes)
    return jax.vmap(one)(background, shape, style)


@partial(jax.jit, static_argnames=("size", "num_classes"))
def _coverage(shape, position, radius, rotation, *, size: int, num_classes: int) -> Array:
    one = partial(_coverage_one, size=size, num_classes=num_classes)
    return jax.vmap(one)(shape, position, radius, rotation)


@partial(jax.jit, static_argnames="num")
def _draw_attributes(scm: SCM, key: Array, *, num: int) -> tuple[dict[str, Array], Array]:
    """`scm.sample(key, num)`'s values, plus the shape node's Gumbel noise behind them."""
    noise = scm.sample_noise(key, num)
    return scm.propagate(noise), noise["shape"]


@jax.jit
def _measure(images: Array, directions: Array) -> Array:
    """Background class per image: a vote of the non-grey pixels' hues (-1 if none)."""
    x = images.astype(jnp.float32) / 255.0
    chroma = x - x.mean(axis=-1, keepdims=True)  # a grey pixel is 0; shading scales it
    coloured = jnp.sqrt((chroma**2).sum(-1)) > MIN_CHROMA
    nearest = jnp.argmax(chroma @ directions.T, axis=-1)
    votes = jax.nn.one_hot(nearest, directions.shape[0]) * coloured[..., None].astype(jnp.float32)
    counts = votes.sum(axis=(1, 2))
    return jnp.where(counts.sum(-1) > 0, jnp.argmax(counts, -1), -1).astype(jnp.int32)


# -------------------------------------------------------------------------------------------


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


class ConfoundedShapes:
    """Shapes on coloured backgrounds, the background confounding the shape label.

    Args:
      num_classes: K, the number of shapes and of backgrounds, in [2, 6] (default 4:
        circle, square, triangle, cross; then star, ring).
      agreement: P(shape == background), in [0, 1] (default 0.95); 1/K makes them independent.
      image_size: side of the square RGB images in pixels (>= 16; default 32).

    Attributes:
      scm: the attributes' `SCM`: `background` a uniform categorical root, `shape` a
        `Categorical` child with table P(s | c) = agreement if s == c else the rest evenly.
      SPLITS: the named splits `split(name)` gives.

    Examples are dicts of "background", "shape" `(N,)` int32, the exogenous fields
    "position" `(N, 2)` (object centre, fractions of the side), "radius" `(N,)` (object
    circumradius, fraction of the side), "rotation" `(N,)` (radians), "tone" `(N,)` (grey
    level), "texture" `(N, 2)` (stripe orientation and phase, radians), "shape_noise" `(N, K)`
    (the Gumbel noise of the shape node) and "image" `(N, S, S, 3)` float32 in [0, 1].

    Example:
      >>> import jax
      >>> data = ConfoundedShapes(image_size=16)
      >>> batch = data.sample(jax.random.key(0), 4)
      >>> batch["image"].shape
      (4, 16, 16, 3)
      >>> groups = data.group(batch["shape"], batch["background"])  # shape * K + background
      >>> swapped = data.counterfactual(batch, do={"background": 2, "shape": batch["shape"]})
      >>> data.measure(swapped["image"] * 255)["background"].tolist()  # read off the pixels
      [2, 2, 2, 2]
      >>> test = data.split("anticorrelated").sample(jax.random.key(1), 4)
      >>> bool((test["shape"] != test["background"]).all())
      True
    """

    name = "confounded_shapes"
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "unconfounded", "anticorrelated")
    pixel_scale = 255.0  # renders in [0, 1]

    def __init__(
        self,
        num_classes: int = DEFAULTS["num_classes"],
        agreement: float = DEFAULTS["agreement"],
        image_size: int = DEFAULTS["image_size"],
    ):
        self.num_classes = check_int(num_classes, "num_classes", 2, MAX_CLASSES)
        self.agreement = check_real(agreement, "agreement", 0.0, 1.0)
        self.image_size = check_int(image_size, "image_size", 16)
        k = self.num_classes
        self.attribute_specs = (
            Attribute("background", "categorical", num_classes=k),
            Attribute("shape", "categorical", parents=("background",), num_classes=k),
        )
        self.attributes = ATTRIBUTES
        self.exogenous = {
            "position": (2,),
            "radius": (),
            "rotation": (),
            "tone": (),
            "texture": (2,),
            NOISE: (k,),
        }
        self.scm = SCM(
            {
                "background": Categorical([], [1.0 / k] * k),
                "shape": Categorical(["background"], shape_table(k, self.agreement)),
            }
        )
        self.colours = palette(k)
        centred = self.colours - self.colours.mean(axis=-1, keepdims=True)
        self._directions = centred / np.linalg.norm(centred, axis=-1, keepdims=True)

    def __repr__(self) -> str:
        return (
            f"ConfoundedShapes(num_classes={self.num_classes}, agreement={self.agreement}, "
            f"image_size={self.image_size})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    @property
    def tfds_name(self) -> str:
        """The TFDS name: `confounded_shapes` for the defaults, `confounded_shapes/<S>px` for
        another size only, `confounded_shapes/k<K>_a<agreement>_<S>px` otherwise."""
        k, a, s = self.num_classes, self.agreement, self.image_size
        if (k, a) != (DEFAULTS["num_classes"], DEFAULTS["agreement"]):
            return f"{self.name}/k{k}_a{a!r}_{s}px"
        return self.name if s == DEFAULTS["image_size"] else f"{self.name}/{s}px"

    @property
    def shapes(self) -> tuple[str, ...]:
        """The shape of each class, by index."""
        return SHAPES[: self.num_classes]

    # Benchmark helpers -----------------------------------------------------------------------

    def split(self, name: str) -> ConfoundedShapes:
        """The dataset of a named split, same options but its agreement: "train" (this one),
        "unconfounded" (1/K: shape independent of background) or "anticorrelated" (0)."""
        agreements = {"unconfounded": 1.0 / self.num_classes, "anticorrelated": 0.0}
        if name == "train":
            return self
        if not isinstance(name, str) or name not in agreements:
            raise ValueError(f"name: expected one of {self.SPLITS}, got {name!r}")
        return ConfoundedShapes(self.num_classes, agreements[name], self.image_size)

    @property
    def num_groups(self) -> int:
        """K²: one group per (shape, background) pair."""
        return self.num_classes**2

    def group(self, shape: Any, background: Any) -> Array:
        """Group index `shape * K + background` of each example, int32 (works under jit)."""
        values = {"shape": shape, "background": background}
        if not any(_is_traced(v) for v in values.values()):
            check_attributes(self.attribute_specs, values, "group")
        shape, background = (jnp.asarray(v).astype(jnp.int32) for v in (shape, background))
        return shape * self.num_classes + background

    @property
    def group_probabilities(self) -> np.ndarray:
        """P(group) `(K²,)` under the generator, indexed by `group(shape, background)`."""
        joint = shape_table(self.num_classes, self.agreement) / self.num_classes  # [c, s]
        return joint.T.reshape(-1)  # [s, c] -> s * K + c

    # Exogenous noise -------------------------------------------------------------------------

    @staticmethod
    def sample_style(key: Array, num: int) -> dict[str, Array]:
        """The renderer's exogenous noise of `num` examples (no class changes its law)."""
        k_radius, k_position, k_rotation, k_tone, k_texture = jax.random.split(key, 5)
        uniform = partial(jax.random.uniform, dtype=jnp.float32)
        radius = uniform(k_radius, (num,), minval=RADIUS_RANGE[0], maxval=RADIUS_RANGE[1])
        low = radius + MARGIN  # the circumcircle stays inside the canvas
        position = low[:, None] + uniform(k_position, (num, 2)) * (1.0 - 2.0 * low)[:, None]
        angles = uniform(k_texture, (num, 2)) * jnp.asarray([[jnp.pi, 2.0 * jnp.pi]])
        return {
            "position": position,
            "radius": radius,
            "rotation": uniform(k_rotation, (num,), maxval=2.0 * jnp.pi),
            "tone": uniform(k_tone, (num,), minval=TONE_RANGE[0], maxval=TONE_RANGE[1]),
            "texture": angles,
        }

    def _fields(
        self, values: Any, names: tuple[str, ...], num: int, argument: str
    ) -> dict[str, Array]:
        """Exogenous fields `names` of `values`: float32, shape (num, *field), finite."""
        out = {}
        for name in names:
            if name not in values:
                raise ValueError(f"{argument}: missing {name!r}; need {(*ATTRIBUTES, *names)}")
            expected = (num, *self.exogenous[name])
            value = jnp.asarray(values[name]).astype(jnp.float32)
            if value.shape != expected:
                raise ValueError(
                    f"{argument}[{name!r}]: expected shape {expected}, got {value.shape}"
                )
            if not _is_traced(value) and not np.isfinite(np.asarray(value)).all():
                raise ValueError(f"{argument}[{name!r}]: expected finite numbers")
            out[name] = value
        return out

    def _attributes(self, values: Any, argument: str) -> tuple[dict[str, Array], int]:
        if not isinstance(values, Mapping):
            raise ValueError(f"{argument}: expected a dict of attributes, got {type(values)}")
        missing = [n for n in ATTRIBUTES if n not in values]
        if missing:
            raise ValueError(f"{argument}: missing attribute(s) {missing}; need {ATTRIBUTES}")
        out = {n: jnp.asarray(values[n]) for n in ATTRIBUTES}
        shapes = {n: v.shape for n, v in out.items()}
        if any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) != 1:
            raise ValueError(f"{argument}: expected attributes of one shape (N,), got {shapes}")
        check_attributes(self.attribute_specs, out, argument)
        return {n: v.astype(jnp.int32) for n, v in out.items()}, shapes["shape"][0]

    def _do(self, do: Any, num: int) -> dict[str, Array]:
        if not isinstance(do, Mapping):
            raise ValueError(f"do: expected a dict attribute -> value, got {do!r}")
        unknown = sorted(set(do) - set(ATTRIBUTES))
        if unknown:
            raise ValueError(f"do: unknown attribute(s) {unknown}; expected {ATTRIBUTES}")
        check_attributes(self.attribute_specs, do, "do")
        out = {}
        for name, value in do.items():
            value = jnp.asarray(value)
            if value.shape not in ((), (num,)):
                raise ValueError(
                    f"do[{name!r}]: expected a class or one per example ({num},), "
                    f"got shape {value.shape}"
                )
            out[name] = jnp.broadcast_to(value.astype(jnp.int32), (num,))
        return out

    # Public API ------------------------------------------------------------------------------

    def render(self, example: Mapping[str, Any]) -> Array:
        """Images `(N, S, S, 3)` float32 in [0, 1] of background, shape and the style fields."""
        values, num = self._attributes(example, "example")
        style = self._fields(example, STYLE, num, "example")
        return _render(
            values["background"],
            values["shape"],
            style,
            jnp.asarray(self.colours),
            size=self.image_size,
            num_classes=self.num_classes,
        )

    def coverage(self, example: Mapping[str, Any]) -> Array:
        """The object's anti-aliased coverage `(N, S, S)` in [0, 1] (0: pure background)."""
        values, num = self._attributes(example, "example")
        style = self._fields(example, ("position", "radius", "rotation"), num, "example")
        return _coverage(
            values["shape"],
            style["position"],
            style["radius"],
            style["rotation"],
            size=self.image_size,
            num_classes=self.num_classes,
        )

    def sample(self, key: Array, num: int) -> dict[str, Array]:
        """`num` examples: the attributes `(N,)` (drawn from `scm`), the exogenous fields and
        "image". The attributes equal `self.scm.sample(jax.random.split(key)[0], num)`."""
        num = check_int(num, "num", 1)
        key_scm, key_style = jax.random.split(key)
        values, gumbels = _draw_attributes(self.scm, key_scm, num=num)
        example = {n: values[n] for n in ATTRIBUTES}
        example.update(self.sample_style(key_style, num))
        example[NOISE] = gumbels
        return {**example, "image": self.render(example)}

    def counterfactual(self, example: Mapping[str, Any], do: Mapping[str, Any]) -> dict[str, Any]:
        """The exact counterfactual of `example` under `do`, re-rendered with the same noise.

        `do(shape)` redraws only the object; `do(background, shape)` only the background;
        `do(background)` alone gives the shape the SCM's Gumbel-max counterfactual
        `argmax_s [log P(s | c') + g_s]` with the example's own `shape_noise` g (so the shape
        may change with the background), which needs "shape_noise" consistent with this
        dataset's SCM (the split the example came from).
        """
        values, num = self._attributes(example, "example")
        do = self._do(do, num)
        style = self._fields(example, STYLE, num, "example")
        needs_noise = "background" in do and "shape" not in do
        fixed = dict(values) if "background" not in do else {"background": values["background"]}
        noise = {}
        if needs_noise:
            noise["shape"] = self._fields(example, (NOISE,), num, "example")[NOISE]
            self._check_noise(values, noise["shape"])
        cf = self.scm.propagate(noise, do, fixed=fixed, num_units=num)
        out = {n: jnp.asarray(cf[n]).astype(jnp.int32) for n in ATTRIBUTES}
        out.update(style)
        if NOISE in example:
            out[NOISE] = self._fields(example, (NOISE,), num, "example")[NOISE]
        return {**out, "image": self.render(out)}

    def _check_noise(self, values: Mapping[str, Array], gumbels: Array) -> None:
        """The stored Gumbel noise must give the factual shape under this SCM."""
        mechanism = self.scm.mechanisms["shape"]
        predicted = mechanism.predict(gumbels, {"background": values["background"]})
        wrong = np.asarray(predicted != values["shape"])
        if wrong.any():
            raise ValueError(
                f"example[{NOISE!r}]: {int(wrong.sum())} example(s) whose Gumbel noise does not "
                f"give their shape under this dataset's SCM (agreement {self.agreement}); "
                f"take the counterfactual with the split they were drawn from "
                f"(dataset.split(...)), or hold the shape: do={{'background': ..., 'shape': ...}}"
            )

    def measure(self, images: Any) -> dict[str, Array]:
        """The background class `(N,)` int32 read exactly off images `(N, S, S, 3)` on the 0-255
        scale: the palette hue most non-grey pixels show (the object is grey; stripes only
        scale the colour). -1 for an image without a coloured pixel. The shape has no exact
        reading (train a classifier on unconfounded data for one)."""
        images = jnp.asarray(images)
        if images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise ValueError(
                f"images: expected shape (N, {', '.join(map(str, self.image_shape))}), "
                f"got {images.shape}"
            )
        return {"background": _measure(images, jnp.asarray(self._directions))}
