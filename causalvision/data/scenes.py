"""Scenes of several coloured shapes with exact per-object ground truth: for slot attention and
object-centric causal representation learning (OC-CRL, REFERENCE §6).

The generator is an explicit SCM over scalar attributes, M = `max_objects` object slots:

    num_objects  ~ Uniform{min_objects, ..., M}  (categorical over {0, ..., M}, P = 0 below
                                                  min_objects; Gumbel-max)
    for each slot k < M, independently of everything else:
    shape_k      ~ Uniform{circle, square, triangle, diamond, star}
    colour_k     ~ Uniform over an 8-colour palette
    size_k       ~ Uniform[0.08, 0.15)   circumradius, a fraction of the image side
                                          (support (5/64, 5/32))
    x_k, y_k     ~ Uniform[0.17, 0.83)   centre: column and row (y grows downwards), fractions
                                          of the side (support (21/128, 107/128)); at any
                                          supported value the object stays inside the canvas

All nodes are independent roots (no node has a parent), so the counterfactual of every node
not intervened on is its factual value: `counterfactual` needs no key and no stored Gumbel
noise (there is no child whose argmax it could decide). Slots k >= num_objects are *absent*:
their attributes exist (drawn as above, so every slot always has a full set of values and
`do` works on any slot) but the renderer ignores them; `do(num_objects=n)` makes slots
n..M-1 disappear and brings back the absent ones below n, with their own attributes.

The image (RGB in [0, 1], `pixel_scale` 255) is a plain dark-grey background with the present
objects composited in slot order, object k over objects 0..k-1 (later slots on top), each
anti-aliased from its signed distance (coverage = clip(0.5 - d, 0, 1), d in pixels, as in
`causalvision.data.confounded`). Besides the attributes the renderer reads one exogenous field,
"rotation" `(M,)` (radians per slot, uniform), kept with every example.

Instance masks (`instance_masks`) are computed on demand from the attributes and the rotation,
not stored: 0 is the background and k + 1 marks the pixels where slot k is the top-most
present object with coverage >= 0.5 (so masks show visibility after occlusion; an object
fully hidden behind later ones has an empty mask). They are exact, cheap (one render's worth
of distances) and would only duplicate what a stored example already determines; the stored
examples stay attributes + exogenous + image, like every dataset's.

`perturbation_pairs` gives OC-CRL's sparse perturbations: a scene and its exact counterfactual
with a few present objects' single properties changed, everything else re-rendered from the
same noise.

Looked up as "sprite_scenes" (`causalvision.data.DATASETS`); TFDS names "sprite_scenes"
(64 px, 2-6 objects), "sprite_scenes/128px", and `SpriteScenes(...).tfds_name` for others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from causalvision.data.confounded import _circle, _square, _star, _triangle
from causalvision.data.dataset import check_attributes
from causalvision.scm import SCM, Attribute, Categorical, Root
from causalvision.validation import check_int

Array = jax.Array

__all__ = ["SpriteScenes"]

DEFAULTS = {"max_objects": 6, "min_objects": 2, "image_size": 64}
MAX_OBJECTS = 12
MIN_IMAGE_SIZE = 32
SHAPES = ("circle", "square", "triangle", "diamond", "star")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white")
PALETTE = np.array(
    [
        (0.90, 0.15, 0.15),
        (0.20, 0.75, 0.25),
        (0.20, 0.40, 0.95),
        (0.95, 0.85, 0.15),
        (0.85, 0.25, 0.85),
        (0.15, 0.80, 0.85),
        (1.00, 0.55, 0.10),
        (0.95, 0.95, 0.95),
    ],
    np.float32,
)
BACKGROUND = (0.1, 0.1, 0.1)
PROPERTIES = ("shape", "colour", "size", "x", "y")
CATEGORICAL = {"shape": len(SHAPES), "colour": len(COLOURS)}
# Sampling ranges; each spec's (open) support adds a margin, since a uniform draw may hit the
# low end exactly. Support bounds are dyadic, so float32 values compare with them exactly. At
# any supported size and position the object lies inside the canvas (x - size >= 1/128).
SIZE_RANGE = (0.08, 0.15)
POSITION_RANGE = (0.17, 0.83)
SIZE_SUPPORT = (5 / 64, 5 / 32)
POSITION_SUPPORT = (21 / 128, 107 / 128)
RANGES = {"size": SIZE_RANGE, "x": POSITION_RANGE, "y": POSITION_RANGE}
SUPPORTS = {"size": SIZE_SUPPORT, "x": POSITION_SUPPORT, "y": POSITION_SUPPORT}
SHIFT_RANGE = (0.2, 0.5)  # a perturbation's offset, as a fraction of the sampling range
MASK_COVERAGE = 0.5  # a pixel belongs to an object it covers at least this much


def num_objects_table(max_objects: int, min_objects: int) -> np.ndarray:
    """P(num_objects = n) for n in {0, ..., max_objects}: uniform from min_objects on."""
    table = np.zeros(max_objects + 1)
    table[min_objects:] = 1.0 / (max_objects + 1 - min_objects)
    return table


def _uniform_spec(name: str, prop: str) -> Attribute:
    """A uniform root's spec: its support, and its mean and standard deviation."""
    low, high = RANGES[prop]
    return Attribute(
        name,
        "continuous",
        support=("interval", *SUPPORTS[prop]),
        standardise=((low + high) / 2.0, (high - low) / np.sqrt(12.0)),
    )


def _slot_specs(k: int) -> tuple[Attribute, ...]:
    return (
        Attribute(f"shape_{k}", "categorical", num_classes=len(SHAPES)),
        Attribute(f"colour_{k}", "categorical", num_classes=len(COLOURS)),
        _uniform_spec(f"size_{k}", "size"),
        _uniform_spec(f"x_{k}", "x"),
        _uniform_spec(f"y_{k}", "y"),
    )


# -------------------------------------------------------------------------------------------
# Rendering. Distances of unit shapes (circumradius <= 1) are the confounded shapes' plus a
# diamond; coverage = clip(0.5 - d, 0, 1) with d the signed distance in pixels.


def _diamond(x, y):
    """A rhombus with half-diagonals 0.6 (x) and 1 (y), after Inigo Quilez's sdRhombus."""
    bx, by = 0.6, 1.0
    x, y = jnp.abs(x), jnp.abs(y)
    h = jnp.clip(((bx - 2.0 * x) * bx - (by - 2.0 * y) * by) / (bx * bx + by * by), -1.0, 1.0)
    dx, dy = x - 0.5 * bx * (1.0 - h), y - 0.5 * by * (1.0 + h)
    return jnp.sqrt(dx * dx + dy * dy) * jnp.sign(x * by + y * bx - bx * by)


_DISTANCES = (_circle, _square, _triangle, _diamond, _star)


def _coverage_one(shape, size, x, y, rotation, *, image_size: int) -> Array:
    """One object's coverage `(S, S)` in [0, 1], present or not."""
    centres = jnp.arange(image_size, dtype=jnp.float32) + 0.5
    px, py = centres[None, :], centres[:, None]
    r = size * image_size
    dx, dy = px - x * image_size, py - y * image_size
    cos, sin = jnp.cos(rotation), jnp.sin(rotation)
    u, v = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r
    distance = _DISTANCES[0](u, v)
    for index, fn in enumerate(_DISTANCES[1:], start=1):  # a select chain: fuses, no stack
        distance = jnp.where(shape == index, fn(u, v), distance)
    return jnp.clip(0.5 - distance * r, 0.0, 1.0)


def _alphas_one(scene, *, image_size: int) -> Array:
    """Coverage `(M, S, S)` of every slot of one scene, zero for absent slots."""
    one = partial(_coverage_one, image_size=image_size)
    cover = jax.vmap(one)(scene["shape"], scene["size"], scene["x"], scene["y"], scene["rotation"])
    return cover * scene["present"][:, None, None].astype(cover.dtype)


def _render_one(scene, palette, *, image_size: int) -> Array:
    alphas = _alphas_one(scene, image_size=image_size)
    image = jnp.broadcast_to(jnp.asarray(BACKGROUND, jnp.float32), (image_size, image_size, 3))
    for k in range(alphas.shape[0]):  # slot order: later slots on top
        alpha = alphas[k][:, :, None]
        image = image * (1.0 - alpha) + palette[scene["colour"][k]][None, None, :] * alpha
    return image


def _masks_one(scene, *, image_size: int) -> Array:
    alphas = _alphas_one(scene, image_size=image_size)
    labels = jnp.zeros((image_size, image_size), jnp.int32)
    for k in range(alphas.shape[0]):  # absent slots have coverage 0: never labelled
        labels = jnp.where(alphas[k] >= MASK_COVERAGE, k + 1, labels)
    return labels


def _visibility_one(scene, *, image_size: int) -> Array:
    """Each slot's weight in the composite, alpha_k * prod_{j > k} (1 - alpha_j)."""
    alphas = _alphas_one(scene, image_size=image_size)
    transmit = jnp.cumprod((1.0 - alphas)[::-1], axis=0)[::-1]  # prod_{j >= k}
    above = jnp.concatenate([transmit[1:], jnp.ones_like(transmit[:1])])
    return alphas * above


@partial(jax.jit, static_argnames="image_size")
def _render(scenes, palette, *, image_size: int) -> Array:
    return jax.vmap(partial(_render_one, palette=palette, image_size=image_size))(scenes)


@partial(jax.jit, static_argnames="image_size")
def _masks(scenes, *, image_size: int) -> Array:
    return jax.vmap(partial(_masks_one, image_size=image_size))(scenes)


@partial(jax.jit, static_argnames="image_size")
def _coverage(scenes, *, image_size: int) -> Array:
    return jax.vmap(partial(_alphas_one, image_size=image_size))(scenes)


@partial(jax.jit, static_argnames="image_size")
def _visibility(scenes, *, image_size: int) -> Array:
    return jax.vmap(partial(_visibility_one, image_size=image_size))(scenes)


@partial(jax.jit, static_argnames="num")
def _draw_attributes(scm: SCM, key: Array, *, num: int) -> dict[str, Array]:
    """`scm.sample(key, num)`'s values."""
    return scm.propagate(scm.sample_noise(key, num))


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


# -------------------------------------------------------------------------------------------


def config_name(max_objects: int, min_objects: int, image_size: int) -> str:
    """The TFDS config name of `SpriteScenes(max_objects, min_objects, image_size)`."""
    if (max_objects, min_objects) == (DEFAULTS["max_objects"], DEFAULTS["min_objects"]):
        return f"{image_size}px"
    return f"min{min_objects}_max{max_objects}_{image_size}px"


class SpriteScenes:
    """Scenes of 0..M coloured shapes with exact attributes, occlusion and instance masks.

    Args:
      max_objects: M, the number of object slots, in [1, 12] (default 6).
      min_objects: the fewest objects a scene has, in [0, max_objects] (default 2); the
        number of objects is uniform over [min_objects, max_objects].
      image_size: side of the square RGB images in pixels (>= 32; default 64, also 128).

    Attributes:
      scm: the attributes' `SCM`: independent roots `num_objects` (categorical), and per slot
        k `shape_k`, `colour_k` (uniform categoricals), `size_k`, `x_k`, `y_k` (uniform).
      PROPERTIES: the per-object properties ("shape", "colour", "size", "x", "y"); slot k's
        are the attributes f"{property}_{k}".
      shapes, colours: the class names of `shape_k` and `colour_k`; `palette` the RGB colours.

    Examples are dicts of "num_objects" `(N,)` int32, for each slot k "shape_k", "colour_k"
    `(N,)` int32 and "size_k", "x_k", "y_k" `(N,)` float32 (every slot, present or absent),
    the exogenous field "rotation" `(N, M)` float32 (radians) and "image" `(N, S, S, 3)`
    float32 in [0, 1]. Slots k >= num_objects are absent: not drawn, never in a mask.
    Objects are drawn in slot order, later slots on top, and may overlap (even hide an
    earlier object completely: positions are independent).

    Example:
      >>> import jax
      >>> data = SpriteScenes(max_objects=3, image_size=32)
      >>> batch = data.sample(jax.random.key(0), 2)
      >>> masks = data.instance_masks(batch)  # 0 background, k + 1 where slot k shows
      >>> masks.shape, int(masks.max()) <= 3
      ((2, 32, 32), True)
      >>> recoloured = data.counterfactual(batch, do={"colour_0": 2})
      >>> recoloured["colour_0"].tolist(), data.colours[2]
      ([2, 2], 'blue')
      >>> first, second, changed = data.perturbation_pairs(jax.random.key(1), 2)
      >>> changed["slot"].shape  # (pairs, objects changed): the one slot changed per pair
      (2, 1)
    """

    name = "sprite_scenes"
    PROPERTIES: ClassVar[tuple[str, ...]] = PROPERTIES
    pixel_scale = 255.0  # renders in [0, 1]
    measure = None  # no reading of attributes off images; masks come from `instance_masks`
    shapes: ClassVar[tuple[str, ...]] = SHAPES
    colours: ClassVar[tuple[str, ...]] = COLOURS
    palette = PALETTE

    def __init__(
        self,
        max_objects: int = DEFAULTS["max_objects"],
        min_objects: int = DEFAULTS["min_objects"],
        image_size: int = DEFAULTS["image_size"],
    ):
        self.max_objects = check_int(max_objects, "max_objects", 1, MAX_OBJECTS)
        self.min_objects = check_int(min_objects, "min_objects", 0, self.max_objects)
        self.image_size = check_int(image_size, "image_size", MIN_IMAGE_SIZE)
        m = self.max_objects
        self.attribute_specs = (
            Attribute("num_objects", "categorical", num_classes=m + 1),
            *(spec for k in range(m) for spec in _slot_specs(k)),
        )
        self.attributes = tuple(spec.name for spec in self.attribute_specs)
        self._categorical = frozenset(s.name for s in self.attribute_specs if s.categorical)
        self.exogenous = {"rotation": (m,)}
        mechanisms: dict[str, Any] = {
            "num_objects": Categorical([], num_objects_table(m, self.min_objects))
        }
        for k in range(m):
            mechanisms[f"shape_{k}"] = Categorical([], [1.0 / len(SHAPES)] * len(SHAPES))
            mechanisms[f"colour_{k}"] = Categorical([], [1.0 / len(COLOURS)] * len(COLOURS))
            mechanisms[f"size_{k}"] = Root(dist.Uniform(*SIZE_RANGE))
            mechanisms[f"x_{k}"] = Root(dist.Uniform(*POSITION_RANGE))
            mechanisms[f"y_{k}"] = Root(dist.Uniform(*POSITION_RANGE))
        self.scm = SCM(mechanisms)

    def __repr__(self) -> str:
        return (
            f"SpriteScenes(max_objects={self.max_objects}, min_objects={self.min_objects}, "
            f"image_size={self.image_size})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    @property
    def config_name(self) -> str:
        """The TFDS config: f"{S}px" for the default object counts, else
        f"min{min_objects}_max{max_objects}_{S}px"."""
        return config_name(self.max_objects, self.min_objects, self.image_size)

    @property
    def tfds_name(self) -> str:
        """`sprite_scenes` for the defaults, `sprite_scenes/<config_name>` otherwise."""
        config = self.config_name
        return self.name if config == f"{DEFAULTS['image_size']}px" else f"{self.name}/{config}"

    def slot_attributes(self, k: int) -> tuple[str, ...]:
        """The attribute names of slot k: shape_k, colour_k, size_k, x_k, y_k."""
        k = check_int(k, "k", 0, self.max_objects - 1)
        return tuple(f"{p}_{k}" for p in PROPERTIES)

    # Validation ------------------------------------------------------------------------------

    def _attributes(self, values: Any, argument: str) -> tuple[dict[str, Array], int]:
        if not isinstance(values, Mapping):
            raise ValueError(f"{argument}: expected a dict of attributes, got {type(values)}")
        missing = [n for n in self.attributes if n not in values]
        if missing:
            raise ValueError(
                f"{argument}: missing attribute(s) {missing[:6]}; need {self.attributes[:6]}..."
            )
        out = {n: jnp.asarray(values[n]) for n in self.attributes}
        shapes = {v.shape for v in out.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(
                f"{argument}: expected attributes of one shape (N,), got shapes {sorted(shapes)}"
            )
        check_attributes(self.attribute_specs, out, argument)
        num = next(iter(shapes))[0]
        return {n: self._cast(n, v) for n, v in out.items()}, num

    def _cast(self, name: str, value: Any) -> Array:
        value = jnp.asarray(value)
        return value.astype(jnp.int32 if name in self._categorical else jnp.float32)

    def _rotation(self, values: Mapping[str, Any], num: int, argument: str) -> Array:
        if "rotation" not in values:
            raise ValueError(f"{argument}: missing 'rotation'; need it besides the attributes")
        expected = (num, self.max_objects)
        value = jnp.asarray(values["rotation"]).astype(jnp.float32)
        if value.shape != expected:
            raise ValueError(
                f"{argument}['rotation']: expected shape {expected}, got {value.shape}"
            )
        if not _is_traced(value) and not np.isfinite(np.asarray(value)).all():
            raise ValueError(f"{argument}['rotation']: expected finite numbers")
        return value

    def _do(self, do: Any, num: int) -> dict[str, Array]:
        if not isinstance(do, Mapping):
            raise ValueError(f"do: expected a dict attribute -> value, got {do!r}")
        unknown = sorted(set(do) - set(self.attributes))
        if unknown:
            raise ValueError(f"do: unknown attribute(s) {unknown}; expected e.g. 'x_0'")
        check_attributes(self.attribute_specs, do, "do")
        out = {}
        for name, value in do.items():
            value = jnp.asarray(value)
            if value.shape not in ((), (num,)):
                raise ValueError(
                    f"do[{name!r}]: expected one value or one per example ({num},), "
                    f"got shape {value.shape}"
                )
            out[name] = jnp.broadcast_to(self._cast(name, value), (num,))
        return out

    def _scenes(self, example: Mapping[str, Any]) -> dict[str, Array]:
        """The renderer's input (`_stack`) of a checked example."""
        values, num = self._attributes(example, "example")
        return self._stack(values, self._rotation(example, num, "example"))

    def _stack(self, values: Mapping[str, Array], rotation: Array) -> dict[str, Array]:
        """The renderer's input: per property `(N, M)`, "present" `(N, M)` bool, rotation."""
        m = self.max_objects
        scenes = {p: jnp.stack([values[f"{p}_{k}"] for k in range(m)], -1) for p in PROPERTIES}
        return {**scenes, "present": self._present(values), "rotation": rotation}

    def _present(self, values: Mapping[str, Array]) -> Array:
        """Which slots are drawn, `(N, M)` bool: the first num_objects. The one place the
        renderer learns presence, so a subclass with another presence rule overrides it."""
        return jnp.arange(self.max_objects)[None, :] < values["num_objects"][:, None]

    # Public API ------------------------------------------------------------------------------

    def render(self, example: Mapping[str, Any]) -> Array:
        """Images `(N, S, S, 3)` float32 in [0, 1] of the attributes and "rotation"."""
        scenes = self._scenes(example)
        return _render(scenes, jnp.asarray(PALETTE), image_size=self.image_size)

    def coverage(self, example: Mapping[str, Any]) -> Array:
        """Each slot's anti-aliased coverage `(N, M, S, S)` in [0, 1] before occlusion
        (0 everywhere for absent slots): its footprint is where this is > 0."""
        return _coverage(self._scenes(example), image_size=self.image_size)

    def visibility(self, example: Mapping[str, Any]) -> Array:
        """Each slot's weight in the image `(N, M, S, S)` after occlusion:
        coverage_k * prod_{j > k} (1 - coverage_j); image = sum_k weight_k colour_k +
        (1 - sum_k weight_k) background."""
        return _visibility(self._scenes(example), image_size=self.image_size)

    def instance_masks(self, example: Mapping[str, Any]) -> Array:
        """Instance masks `(N, S, S)` int32: 0 background, k + 1 where slot k is the top-most
        present object covering the pixel at least half. Exact from the attributes and
        "rotation"; absent slots never appear; a fully hidden object has no pixel."""
        return _masks(self._scenes(example), image_size=self.image_size)

    def objects(self, example: Mapping[str, Any]) -> dict[str, Array]:
        """Per-object ground truth as a set, for slot models: "present" `(N, M)` bool and
        "shape", "colour" (int32), "size", "x", "y" (float32) `(N, M)`, plus "rotation"."""
        scenes = self._scenes(example)
        return {p: scenes[p] for p in ("present", *PROPERTIES, "rotation")}

    @staticmethod
    def sample_rotation(key: Array, num: int, max_objects: int) -> Array:
        """The renderer's exogenous noise: a uniform rotation per slot, `(num, max_objects)`."""
        return jax.random.uniform(key, (num, max_objects), jnp.float32, 0.0, 2.0 * jnp.pi)

    def sample(self, key: Array, num: int) -> dict[str, Array]:
        """`num` examples: the attributes `(N,)` (drawn from `scm`), "rotation" `(N, M)` and
        "image". The attributes equal `self.scm.sample(jax.random.split(key)[0], num)`."""
        num = check_int(num, "num", 1)
        key_scm, key_rotation = jax.random.split(key)
        values = _draw_attributes(self.scm, key_scm, num=num)
        example = {n: self._cast(n, values[n]) for n in self.attributes}
        example["rotation"] = self.sample_rotation(key_rotation, num, self.max_objects)
        return {**example, "image": self.render(example)}

    def counterfactual(self, example: Mapping[str, Any], do: Mapping[str, Any]) -> dict[str, Any]:
        """The exact counterfactual of `example` under `do`, re-rendered with its rotation.

        Every node is a root, so each attribute not in `do` keeps its factual value: objects
        not intervened on are exactly unchanged (pixels outside an intervened object's old and
        new footprints are bit for bit the same). `do` values: a class or number, or one per
        example `(N,)`, inside the attribute's support.
        """
        values, num = self._attributes(example, "example")
        do = self._do(do, num)
        rotation = self._rotation(example, num, "example")
        cf = self.scm.propagate({}, do, fixed=values, num_units=num)
        out: dict[str, Any] = {n: self._cast(n, cf[n]) for n in self.attributes}
        out["rotation"] = rotation
        scenes = self._stack(out, rotation)
        image = _render(scenes, jnp.asarray(PALETTE), image_size=self.image_size)
        return {**out, "image": image}

    def perturbation_pairs(
        self,
        key: Array,
        num: int,
        num_changed: int = 1,
        properties: Sequence[str] = PROPERTIES,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Array]]:
        """Sparse perturbation pairs (OC-CRL): scenes and their exact counterfactuals with
        `num_changed` present objects changed in one property each.

        Args:
          key: PRNG key.
          num: number of pairs.
          num_changed: distinct present objects changed per pair, in [1, min_objects].
          properties: the properties a change may pick, among `PROPERTIES`.

        Returns:
          `(first, second, changed)`: `first` a sample; `second` the counterfactual of `first`
          under the `do` that gives each chosen object's chosen property a new value: a
          continuous one moves by a random offset of 20-50% of its sampling range (random
          sign, the other sign where the first would leave the range), a categorical one
          becomes another class (uniformly). Everything else is kept, so the images differ
          only inside the changed objects' old and new footprints (not at all where the
          changed object is hidden behind later ones). `changed` holds
          `(num, num_changed)` arrays: "slot" (int32), "property" (int32, an index into
          `PROPERTIES`), "old" and "new" (float32 values; classes as whole numbers).
        """
        num = check_int(num, "num", 1)
        if self.min_objects < 1:
            raise ValueError(
                f"num_changed: every scene needs num_changed present objects, but this dataset "
                f"has min_objects={self.min_objects}; build it with min_objects >= 1"
            )
        num_changed = check_int(num_changed, "num_changed", 1, self.min_objects)
        if isinstance(properties, str) or not isinstance(properties, Sequence):
            raise ValueError(f"properties: expected a sequence of names, got {properties!r}")
        properties = tuple(properties)
        bad = [p for p in properties if p not in PROPERTIES]
        if not properties or bad or len(set(properties)) != len(properties):
            raise ValueError(
                f"properties: expected distinct names among {PROPERTIES}, got {properties!r}"
            )
        k_first, k_slot, k_property, k_shift, k_sign, k_class = jax.random.split(key, 6)
        first = self.sample(k_first, num)
        m, shape = self.max_objects, (num, num_changed)
        present = np.asarray(self.objects(first)["present"])
        scores = np.where(present, np.asarray(jax.random.uniform(k_slot, (num, m))), 2.0)
        slot = np.argsort(scores, axis=1, kind="stable")[:, :num_changed].astype(np.int32)
        pick = np.asarray(jax.random.randint(k_property, shape, 0, len(properties)))
        prop = np.asarray([PROPERTIES.index(p) for p in properties], np.int32)[pick]
        columns = [
            [np.asarray(first[f"{p}_{k}"], np.float64) for k in range(m)] for p in PROPERTIES
        ]
        table = np.stack([np.stack(c, -1) for c in columns], axis=1)  # (N, P, M)
        rows = np.arange(num)[:, None]
        old = table[rows, prop, slot]
        fraction = jax.random.uniform(k_shift, shape, minval=SHIFT_RANGE[0], maxval=SHIFT_RANGE[1])
        fraction = np.asarray(fraction, np.float64)
        sign = np.where(np.asarray(jax.random.bernoulli(k_sign, 0.5, shape)), 1.0, -1.0)
        step = np.asarray(jax.random.uniform(k_class, shape), np.float64)
        new = np.empty_like(old)
        for index, name in enumerate(PROPERTIES):
            where = prop == index
            if name in CATEGORICAL:
                classes = CATEGORICAL[name]
                offset = 1 + np.minimum(np.floor(step * (classes - 1)), classes - 2)
                new[where] = ((old + offset) % classes)[where]
            else:
                low, high = RANGES[name]
                move = fraction * (high - low) * sign
                moved = old + move
                moved = np.where((moved < low) | (moved > high), old - move, moved)
                new[where] = moved[where]
        do: dict[str, np.ndarray] = {}
        for index, name in enumerate(PROPERTIES):
            for k in range(m):
                hit = (prop == index) & (slot == k)
                if hit.any():
                    attribute = f"{name}_{k}"
                    value = np.asarray(first[attribute]).copy()
                    r, c = np.nonzero(hit)
                    value[r] = new[r, c].astype(value.dtype)
                    do[attribute] = value
        second = self.counterfactual(first, do)
        changed = {
            "slot": jnp.asarray(slot),
            "property": jnp.asarray(prop),
            "old": jnp.asarray(old, jnp.float32),
            "new": jnp.asarray(new.astype(np.float32)),
        }
        return first, second, changed
