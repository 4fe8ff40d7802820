"""Captioned scenes of coloured shapes in which hallucination is known exactly (REFERENCE §5).

The sprite scenes (`causalvision.data.scenes`: the same shapes, palette, renderer, occlusion
and instance masks) with a per-slot presence variable, a deliberate co-occurrence confounder
and an exact caption per image. A captioner trained on them can learn to *guess* the star
from the triangle; masking or removing one object then shows exactly which mentions are seen
and which are guessed, and CHAIR (REFERENCE §5.2) counts the guessed ones without parsing
reference captions.

The SCM, over M = `max_objects` >= 2 slots (shapes circle, square, triangle, diamond, star):

    theme      ~ Categorical: plain 0.6, starry 0.4                       (root)
    present_0  = present_1 = 1 (P = 1)          present_k ~ Bernoulli(1/2), k >= 2
    shape_0    | theme = plain:  Uniform{circle, square, diamond}
               | theme = starry: star
    shape_1    | theme = plain:  Uniform{circle, square, diamond}
               | theme = starry: triangle 0.9, else Uniform{circle, square, diamond} (1/30 each)
    shape_k    ~ Uniform{circle, square, diamond}, k >= 2                 (roots)
    colour_k, size_k, x_k, y_k as in the sprite scenes (independent uniform roots)

so, exactly: a scene holds 2 + Binomial(M - 2, 1/2) objects; P(star in the scene) = 0.4;
P(triangle in the scene | star in it) = 0.9 (`COMPANION`); P(star | triangle) = 1 (stars and
triangles appear nowhere else); no plain scene has either. The theme is a confounder of the
two shapes, never drawn. Slots with present_k = 0 are not drawn, so `do(present_k=0)` removes
object k and re-renders everything else identically (`remove_object`). Objects are drawn in
slot order, later slots on top, so the star (slot 0) lies under every other object.

The shapes of slots 0 and 1 are Gumbel-max categoricals of the theme; every example keeps their
Gumbel noise "shape_noise" `(2, 5)`, so `counterfactual` under `do(theme=...)` gives them the
SCM's own counterfactual (Gumbel-max counterfactual stability) without a key; `do` of any other
node keeps every node not intervened on (all other nodes are roots).

Captions. A slot is *mentioned* when it is present and visible: it owns at least one pixel of
the instance mask (`SpriteScenes.instance_masks`: the top-most object covering the pixel at
least half), so an object hidden entirely behind later ones is not named. The caption is
deterministic:

    caption  := "nothing"                                     if no slot is mentioned
              | P1 | "P1 and P2" | "P1, P2, ..., P(n-1) and Pn"
    P        := count colour noun
    count    := "a" ("an" before a vowel: "an orange star") for one object,
                "two" ... "twelve" for more (the noun then plural)

The mentioned objects are grouped by (shape, colour); phrases are ordered left to right by the
centre x of each group's leftmost object (ties by slot). E.g. "a red circle, a blue star and
two green squares". With `synonyms=True` each phrase's noun is drawn from `NOUNS` (e.g.
square, box, block) by the exogenous "wording" `(M,)` uniform in [0, 1) of the group's leftmost
object: noun index floor(wording · number of nouns). The categories a caption names
(`true_objects`) are exact either way; `object_vocabulary` lists every word of each category
for CHAIR. Captions are not stored: like the instance masks they are computed from a stored
example (attributes, "rotation", "wording").

Counterfactual test images for an object k (See-or-Guess, REFERENCE §5.1):

- `remove_object(example, k)`: do(present_k = 0), re-rendered; its caption is recomputed (it
  drops object k, and names an object that was hidden behind k alone, if any);
- `mask_object(example, k, blur_radius=5, grow=3)`: the factual image with object k's box
  (`boxes`: the pixels it covers at all, before occlusion) filled black and a Gaussian blur
  (standard deviation `blur_radius` px) pasted over the box grown by `grow` px
  (`causalvision.data.masking.mask_region`). Its true caption leaves out object k and any
  object with no mask pixel outside the grown box (none of it stays intact).

Both return the example's fields plus "mentioned" `(N, M)` bool (the slots the true caption
names) and "caption" `(N,)` str; `captions` and `true_objects` read "mentioned" when an
example carries it.

Looked up as "captioned_scenes" (`causalvision.data.DATASETS`); TFDS names "captioned_scenes"
(64 px, 4 slots), "captioned_scenes/32px", and `CaptionedScenes(...).tfds_name` for others.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from causalvision.data.masking import box_masks, grow_masks, mask_region
from causalvision.data.scenes import (
    COLOURS,
    MAX_OBJECTS,
    MIN_IMAGE_SIZE,
    POSITION_RANGE,
    PROPERTIES,
    SHAPES,
    SIZE_RANGE,
    SpriteScenes,
    _uniform_spec,
)
from causalvision.data.text import Vocabulary
from causalvision.scm import SCM, Attribute, Categorical, Root
from causalvision.validation import check_int

Array = jax.Array

__all__ = ["CaptionedScenes"]

DEFAULTS = {"max_objects": 4, "image_size": 64}
THEMES = ("plain", "starry")
P_STARRY = 0.4  # P(theme = starry)
COMPANION = 0.9  # P(shape_1 = triangle | starry) = P(triangle | star)
P_PRESENT = 0.5  # P(present_k = 1), k >= 2
PLAIN_SHAPES = ("circle", "square", "diamond")
THEMED = ("shape_0", "shape_1")  # the theme's children
NOISE = "shape_noise"  # their Gumbel noise, (2, 5) per example
# Each category's nouns, (singular, plural); the first is the shape's own name.
NOUNS = {
    "circle": (("circle", "circles"), ("disc", "discs"), ("dot", "dots")),
    "square": (("square", "squares"), ("box", "boxes"), ("block", "blocks")),
    "triangle": (("triangle", "triangles"), ("wedge", "wedges")),
    "diamond": (("diamond", "diamonds"), ("rhombus", "rhombuses"), ("lozenge", "lozenges")),
    "star": (("star", "stars"), ("pentagram", "pentagrams")),
}
# NUMBERS[n - 2] counts n objects.
NUMBERS = (
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
EMPTY = "nothing"
VOCABULARY = (
    ",",
    "a",
    "an",
    "and",
    EMPTY,
    *NUMBERS,
    *COLOURS,
    *(word for nouns in NOUNS.values() for pair in nouns for word in pair),
)


def _row(table: Mapping[str, float]) -> list[float]:
    return [table.get(s, 0.0) for s in SHAPES]


PLAIN_ROW = _row({s: 1.0 / len(PLAIN_SHAPES) for s in PLAIN_SHAPES})
SHAPE_TABLES = {  # P(shape_k | theme), rows plain, starry
    "shape_0": np.array([PLAIN_ROW, _row({"star": 1.0})]),
    "shape_1": np.array(
        [
            PLAIN_ROW,
            _row(
                {"triangle": COMPANION}
                | {s: (1.0 - COMPANION) / len(PLAIN_SHAPES) for s in PLAIN_SHAPES}
            ),
        ]
    ),
}


def config_name(max_objects: int, image_size: int) -> str:
    """The TFDS config name of `CaptionedScenes(max_objects, image_size)`."""
    if max_objects == DEFAULTS["max_objects"]:
        return f"{image_size}px"
    return f"max{max_objects}_{image_size}px"


@partial(jax.jit, static_argnames="num")
def _draw(scm: SCM, key: Array, *, num: int) -> tuple[dict[str, Array], Array]:
    """`scm.sample(key, num)`'s values and the theme children's Gumbel noise `(N, 2, 5)`."""
    noise = scm.sample_noise(key, num)
    return scm.propagate(noise), jnp.stack([noise[n] for n in THEMED], axis=1)


@jax.jit
def _boxes(cover: Array) -> Array:
    """Boxes `(N, M, 4)` int32 of the pixels where each slot's coverage is > 0; 0s if none."""
    on = cover > 0
    size = cover.shape[-1]

    def bounds(any_on):  # (N, M, S) -> first index, last index + 1
        some = any_on.any(-1)
        low = jnp.argmax(any_on, -1)
        high = size - jnp.argmax(any_on[..., ::-1], -1)
        return jnp.where(some, low, 0), jnp.where(some, high, 0)

    x0, x1 = bounds(on.any(-2))
    y0, y1 = bounds(on.any(-1))
    return jnp.stack([x0, y0, x1, y1], -1).astype(jnp.int32)


@partial(jax.jit, static_argnames="num_slots")
def _owners(masks: Array, allowed: Array, *, num_slots: int) -> Array:
    """`(N, M)` bool: slot k labels at least one pixel of `masks` `(N, S, S)` where `allowed`
    `(N, S, S)` is True."""
    labels = jnp.arange(1, num_slots + 1)[None, :, None, None]
    return ((masks[:, None] == labels) & allowed[:, None]).any(axis=(2, 3))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(phrases: list[str]) -> str:
    if not phrases:
        return EMPTY
    if len(phrases) == 1:
        return phrases[0]
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"


# -------------------------------------------------------------------------------------------


class CaptionedScenes(SpriteScenes):
    """Sprite scenes with per-slot presence, a star-triangle confounder and exact captions.

    Args:
      max_objects: M, the number of object slots, in [2, 12] (default 4); slots 0 and 1 are
        always present, each other one with probability 1/2.
      image_size: side of the square RGB images in pixels (>= 32; default 64).
      synonyms: name each phrase's shape with a noun drawn from `NOUNS` by the example's
        "wording" (default False: the shape's own name).

    Attributes:
      scm: the attributes' `SCM` (see the module docstring): `theme`, and per slot k
        `present_k`, `shape_k`, `colour_k`, `size_k`, `x_k`, `y_k`; `shape_0` and `shape_1`
        are children of `theme`, every other node a root.
      shapes, colours, palette: as `SpriteScenes`'.

    Examples are dicts of "theme" `(N,)` int32, for each slot k "present_k", "shape_k",
    "colour_k" `(N,)` int32 and "size_k", "x_k", "y_k" `(N,)` float32, the exogenous fields
    "rotation" `(N, M)` (radians), "wording" `(N, M)` (in [0, 1)), "shape_noise" `(N, 2, 5)`
    (Gumbel noise of shape_0 and shape_1) and "image" `(N, S, S, 3)` float32 in [0, 1].
    Everything `SpriteScenes` offers for a scene works here: `render`, `coverage`,
    `visibility`, `instance_masks`, `objects`, `counterfactual`, `perturbation_pairs`. Test
    images with their true captions: `remove_object` (the counterfactual without an object)
    and `mask_object` (See-or-Guess: the object's box blacked out and blurred).

    Example:
      >>> import jax
      >>> data = CaptionedScenes(max_objects=2, image_size=32)
      >>> batch = data.sample(jax.random.key(0), 2)
      >>> data.captions(batch)
      ['a yellow square and an orange square', 'a magenta diamond and a white circle']
      >>> removed = data.remove_object(batch, 0)  # the exact counterfactual without slot 0
      >>> removed["caption"].tolist()
      ['an orange square', 'a magenta diamond']
      >>> ids, mask = data.vocabulary().encode(data.captions(batch), max_len=12)
      >>> ids.shape
      (2, 12)
    """

    name = "captioned_scenes"
    min_objects = 2  # slots 0 and 1 are always present
    themes: ClassVar[tuple[str, ...]] = THEMES

    def __init__(
        self,
        max_objects: int = DEFAULTS["max_objects"],
        image_size: int = DEFAULTS["image_size"],
        synonyms: bool = False,
    ):
        self.max_objects = check_int(max_objects, "max_objects", 2, MAX_OBJECTS)
        self.image_size = check_int(image_size, "image_size", MIN_IMAGE_SIZE)
        if not isinstance(synonyms, bool | np.bool_):
            raise ValueError(f"synonyms: expected True or False, got {synonyms!r}")
        self.synonyms = bool(synonyms)
        m = self.max_objects
        specs = [Attribute("theme", "categorical", num_classes=len(THEMES))]
        mechanisms: dict[str, Any] = {"theme": Categorical([], [1.0 - P_STARRY, P_STARRY])}
        for k in range(m):
            themed = f"shape_{k}" in THEMED
            specs += [
                Attribute(f"present_{k}", "categorical", num_classes=2),
                Attribute(
                    f"shape_{k}",
                    "categorical",
                    parents=("theme",) if themed else (),
                    num_classes=len(SHAPES),
                ),
                Attribute(f"colour_{k}", "categorical", num_classes=len(COLOURS)),
                _uniform_spec(f"size_{k}", "size"),
                _uniform_spec(f"x_{k}", "x"),
                _uniform_spec(f"y_{k}", "y"),
            ]
            presence = [0.0, 1.0] if k < 2 else [1.0 - P_PRESENT, P_PRESENT]
            mechanisms[f"present_{k}"] = Categorical([], presence)
            mechanisms[f"shape_{k}"] = (
                Categorical(["theme"], SHAPE_TABLES[f"shape_{k}"])
                if themed
                else Categorical([], PLAIN_ROW)
            )
            mechanisms[f"colour_{k}"] = Categorical([], [1.0 / len(COLOURS)] * len(COLOURS))
            mechanisms[f"size_{k}"] = Root(dist.Uniform(*SIZE_RANGE))
            mechanisms[f"x_{k}"] = Root(dist.Uniform(*POSITION_RANGE))
            mechanisms[f"y_{k}"] = Root(dist.Uniform(*POSITION_RANGE))
        self.attribute_specs = tuple(specs)
        self.attributes = tuple(spec.name for spec in self.attribute_specs)
        self._categorical = frozenset(s.name for s in self.attribute_specs if s.categorical)
        self.exogenous = {"rotation": (m,), "wording": (m,), NOISE: (len(THEMED), len(SHAPES))}
        self.scm = SCM(mechanisms)

    def __repr__(self) -> str:
        return (
            f"CaptionedScenes(max_objects={self.max_objects}, image_size={self.image_size}, "
            f"synonyms={self.synonyms})"
        )

    @property
    def config_name(self) -> str:
        """The TFDS config: f"{S}px" for 4 slots, else f"max{max_objects}_{S}px"."""
        return config_name(self.max_objects, self.image_size)

    @property
    def tfds_name(self) -> str:
        """`captioned_scenes` for the defaults, `captioned_scenes/<config_name>` otherwise
        (`synonyms` changes no stored field, only the captions computed from them)."""
        config = self.config_name
        return self.name if config == f"{DEFAULTS['image_size']}px" else f"{self.name}/{config}"

    def slot_attributes(self, k: int) -> tuple[str, ...]:
        """The attribute names of slot k: present_k, shape_k, colour_k, size_k, x_k, y_k."""
        k = check_int(k, "k", 0, self.max_objects - 1)
        return (f"present_{k}", *(f"{p}_{k}" for p in PROPERTIES))

    def _present(self, values: Mapping[str, Array]) -> Array:
        return jnp.stack([values[f"present_{k}"] for k in range(self.max_objects)], -1) == 1

    # Exogenous fields --------------------------------------------------------------------------

    def _field(self, example: Mapping[str, Any], name: str, num: int) -> Array:
        if name not in example:
            raise ValueError(f"example: missing {name!r}; it is needed besides the attributes")
        expected = (num, *self.exogenous[name])
        value = jnp.asarray(example[name])
        if value.shape != expected:
            raise ValueError(f"example[{name!r}]: expected shape {expected}, got {value.shape}")
        value = value.astype(jnp.float32)
        if not np.isfinite(np.asarray(value)).all():
            raise ValueError(f"example[{name!r}]: expected finite numbers")
        return value

    def _wording(self, example: Mapping[str, Any], num: int) -> np.ndarray:
        wording = np.asarray(self._field(example, "wording", num))
        if ((wording < 0) | (wording > 1)).any():
            raise ValueError("example['wording']: expected numbers in [0, 1]")
        return wording

    def _check_noise(self, values: Mapping[str, Array], gumbels: Array) -> None:
        """The stored Gumbel noise must give the factual shapes of slots 0 and 1."""
        for j, name in enumerate(THEMED):
            predicted = self.scm.mechanisms[name].predict(gumbels[:, j], {"theme": values["theme"]})
            wrong = np.asarray(predicted != values[name])
            if wrong.any():
                raise ValueError(
                    f"example[{NOISE!r}]: {int(wrong.sum())} example(s) whose Gumbel noise does "
                    f"not give their {name} under this SCM (e.g. example "
                    f"{int(np.flatnonzero(wrong)[0])}); hold the shapes instead: "
                    f"do={{'theme': ..., 'shape_0': ..., 'shape_1': ...}}"
                )

    @staticmethod
    def sample_wording(key: Array, num: int, max_objects: int) -> Array:
        """The captions' exogenous noise: a uniform number in [0, 1) per slot, `(num, M)`."""
        return jax.random.uniform(key, (num, max_objects), jnp.float32)

    # Sampling and counterfactuals -------------------------------------------------------------

    def sample(self, key: Array, num: int) -> dict[str, Array]:
        """`num` examples: the attributes `(N,)` (drawn from `scm`), "rotation", "wording",
        "shape_noise" and "image". The attributes equal
        `self.scm.sample(jax.random.split(key)[0], num)`."""
        num = check_int(num, "num", 1)
        key_scm, key_exogenous = jax.random.split(key)
        key_rotation, key_wording = jax.random.split(key_exogenous)
        values, gumbels = _draw(self.scm, key_scm, num=num)
        example = {n: self._cast(n, values[n]) for n in self.attributes}
        example["rotation"] = self.sample_rotation(key_rotation, num, self.max_objects)
        example["wording"] = self.sample_wording(key_wording, num, self.max_objects)
        example[NOISE] = gumbels
        return {**example, "image": self.render(example)}

    def counterfactual(self, example: Mapping[str, Any], do: Mapping[str, Any]) -> dict[str, Any]:
        """The exact counterfactual of `example` under `do`, re-rendered with its rotation.

        Each node not in `do` keeps its factual value, except that under `do(theme)` the shapes
        of slots 0 and 1 (unless also in `do`) follow the SCM with the example's own
        "shape_noise" (needed then, and checked to give the factual shapes). The exogenous
        fields the example has are kept.
        """
        values, num = self._attributes(example, "example")
        do = self._do(do, num)
        rotation = self._rotation(example, num, "example")
        fixed, noise = dict(values), {}
        free = [n for n in THEMED if n not in do] if "theme" in do else []
        if free:
            gumbels = self._field(example, NOISE, num)
            self._check_noise(values, gumbels)
            noise = {n: gumbels[:, j] for j, n in enumerate(THEMED)}
            for name in free:
                del fixed[name]
        cf = self.scm.propagate(noise, do, fixed=fixed, num_units=num)
        out: dict[str, Any] = {n: self._cast(n, cf[n]) for n in self.attributes}
        out["rotation"] = rotation
        for name in ("wording", NOISE):
            if name in example:
                out[name] = self._field(example, name, num)
        return {**out, "image": self.render(out)}

    # Ground truth for captioning ---------------------------------------------------------------

    def boxes(self, example: Mapping[str, Any]) -> Array:
        """Each slot's box `(N, M, 4)` int32 (x0, y0, x1, y1) on the pixel grid: columns
        x0..x1-1 and rows y0..y1-1 are those with a pixel the object covers at all (coverage
        > 0, before occlusion), so the box holds its mask and every pixel it tints. All 0 for
        absent slots."""
        return _boxes(self.coverage(example))

    def visible(self, example: Mapping[str, Any]) -> Array:
        """`(N, M)` bool: slot k is present and owns at least one instance-mask pixel."""
        masks = self.instance_masks(example)
        return _owners(masks, jnp.ones_like(masks, bool), num_slots=self.max_objects)

    def mentioned(self, example: Mapping[str, Any]) -> np.ndarray:
        """`(N, M)` bool: the slots the example's true caption names: its "mentioned" field
        if it has one (masked and removed examples), else `visible`."""
        _, num = self._attributes(example, "example")
        if "mentioned" not in example:
            return np.array(self.visible(example))
        value = np.asarray(example["mentioned"])
        if value.shape != (num, self.max_objects) or value.dtype != np.bool_:
            raise ValueError(
                f"example['mentioned']: expected bool of shape {(num, self.max_objects)}, "
                f"got {value.dtype} {value.shape}"
            )
        return value

    def _groups(self, example: Mapping[str, Any]) -> list[list[tuple[list[int], str]]]:
        """Per example, its phrases left to right: (slots, words "colour noun")."""
        scenes = self._scenes(example)
        mentioned = self.mentioned(example)
        num = mentioned.shape[0]
        shape, colour = np.asarray(scenes["shape"]), np.asarray(scenes["colour"])
        x = np.asarray(scenes["x"])
        wording = self._wording(example, num) if self.synonyms else None
        out = []
        for i in range(num):
            slots = sorted(np.flatnonzero(mentioned[i]).tolist(), key=lambda k: (x[i, k], k))
            groups: dict[tuple[int, int], list[int]] = {}
            for k in slots:
                groups.setdefault((int(shape[i, k]), int(colour[i, k])), []).append(k)
            phrases = []
            for (s, c), members in groups.items():
                nouns = NOUNS[SHAPES[s]]
                pick = 0
                if wording is not None:
                    pick = min(int(wording[i, members[0]] * len(nouns)), len(nouns) - 1)
                noun = nouns[pick][0 if len(members) == 1 else 1]
                phrases.append((members, f"{COLOURS[c]} {noun}"))
            out.append(phrases)
        return out

    def captions(self, example: Mapping[str, Any]) -> list[str]:
        """The true caption of each example (see the module docstring), N strings."""
        out = []
        for phrases in self._groups(example):
            words = []
            for members, entity in phrases:
                count = len(members)
                words.append(f"{_article(entity) if count == 1 else NUMBERS[count - 2]} {entity}")
            out.append(_join(words))
        return out

    def entity(self, example: Mapping[str, Any], k: int) -> list[str]:
        """The words naming slot k in each true caption, "colour noun" as written there
        (e.g. "green squares"), or "" where the caption does not name slot k."""
        k = check_int(k, "k", 0, self.max_objects - 1)
        return [
            next((entity for members, entity in phrases if k in members), "")
            for phrases in self._groups(example)
        ]

    def true_objects(self, example: Mapping[str, Any]) -> list[set[str]]:
        """The shape categories each true caption names (a set of `SHAPES` names each)."""
        scenes = self._scenes(example)
        shape, mentioned = np.asarray(scenes["shape"]), self.mentioned(example)
        return [{SHAPES[s] for s in row[seen]} for row, seen in zip(shape, mentioned, strict=True)]

    @staticmethod
    def object_vocabulary() -> dict[str, list[str]]:
        """Every word a caption may name each category with, singular and plural, for CHAIR:
        {"circle": ["circle", "circles", "disc", "discs", "dot", "dots"], ...}."""
        return {category: [w for pair in nouns for w in pair] for category, nouns in NOUNS.items()}

    @staticmethod
    def vocabulary() -> Vocabulary:
        """The word-level `Vocabulary` of every caption (synonyms included), the same for every
        option: the special tokens, ",", "a", "an", "and", "nothing", the numbers two-twelve,
        the colours, then the nouns."""
        return Vocabulary(VOCABULARY)

    # Counterfactual test images ----------------------------------------------------------------

    def _slots(self, k: Any, values: Mapping[str, Array], num: int) -> np.ndarray:
        """Slot k per example `(N,)`, from an int or one per example; each must be present."""
        m = self.max_objects
        if isinstance(k, int | np.integer) and not isinstance(k, bool | np.bool_):
            slots = np.full(num, check_int(k, "k", 0, m - 1))
        else:
            slots = np.asarray(k)
            ok = slots.shape == (num,) and np.issubdtype(slots.dtype, np.integer)
            if not ok or ((slots < 0) | (slots >= m)).any():
                raise ValueError(
                    f"k: expected a slot in [0, {m - 1}] or one per example ({num},) int, got {k!r}"
                )
        present = np.stack([np.asarray(values[f"present_{j}"]) for j in range(m)], -1) == 1
        absent = ~present[np.arange(num), slots]
        if absent.any():
            i = int(np.flatnonzero(absent)[0])
            raise ValueError(
                f"k: slot {int(slots[i])} is absent in {int(absent.sum())} example(s) (e.g. "
                f"example {i}); pick present objects (objects(example)['present'])"
            )
        return slots

    def _with_caption(self, example: dict[str, Any], mentioned: Any) -> dict[str, Any]:
        example["mentioned"] = np.array(mentioned)
        example["caption"] = np.asarray(self.captions(example))
        return example

    def remove_object(self, example: Mapping[str, Any], k: Any) -> dict[str, Any]:
        """The exact counterfactual without object k: do(present_k = 0), re-rendered.

        Args:
          example: examples with the attributes and exogenous fields.
          k: the slot to remove, an int or one per example `(N,)`; present in every example.

        Returns:
          `counterfactual(example, {f"present_{k}": 0})` plus "mentioned" `(N, M)` bool and
          "caption" `(N,)` str: its true caption (object k gone; an object only k hid shows).
        """
        values, num = self._attributes(example, "example")
        slots = self._slots(k, values, num)
        do = {
            f"present_{j}": np.where(slots == j, 0, np.asarray(values[f"present_{j}"]))
            for j in np.unique(slots).tolist()
        }
        removed = self.counterfactual(example, do)
        return self._with_caption(removed, self.visible(removed))

    def mask_object(
        self, example: Mapping[str, Any], k: Any, blur_radius: float = 5.0, grow: int = 3
    ) -> dict[str, Any]:
        """The See-or-Guess image of hiding object k: its box black, a blur over the box grown.

        Args:
          example: examples with the attributes and exogenous fields.
          k: the slot to hide, an int or one per example `(N,)`; present in every example.
          blur_radius: the blur's standard deviation in pixels (>= 0; See-or-Guess's 5).
          grow: the blurred border's width beyond the box in pixels (>= 0; 3).

        Returns:
          The example's attributes and exogenous fields with "image" the factual render
          masked by `mask_region` over `boxes(example)[:, k]` (so not a render of the
          attributes), "box" `(N, 4)` int32 that box, "mentioned" `(N, M)` bool and "caption"
          `(N,)` str: the true caption, which names neither object k nor an object with no
          mask pixel outside the grown box.
        """
        values, num = self._attributes(example, "example")
        slots = self._slots(k, values, num)
        out: dict[str, Any] = dict(values)
        out["rotation"] = self._rotation(example, num, "example")
        for name in ("wording", NOISE):
            if name in example:
                out[name] = self._field(example, name, num)
        box = self.boxes(out)[jnp.arange(num), jnp.asarray(slots)]
        size = self.image_size
        hidden = box_masks(box, size, size)
        out["image"] = mask_region(self.render(out), hidden, blur_radius, grow)
        out["box"] = box
        intact = ~grow_masks(hidden, grow)
        seen = _owners(self.instance_masks(out), intact, num_slots=self.max_objects)
        keep = self.mentioned(example) & np.asarray(seen)
        keep[np.arange(num), slots] = False
        return self._with_caption(out, keep)
