"""Deconfounded image-text matching: a DCIN-style head over any upstream encoders.

DCIN (Li et al., "Deconfounded image-text matching"; the paper's form, not checked against
a released code base) removes the spurious correlations a matching model picks up from what
co-occurs in the data by back-door adjustment over two confounder dictionaries per modality:
an intra-modal one (prototypes of the same modality's features) and an inter-modal one
(prototypes of the other modality's features). Here both adjustments are
`BackdoorAdjustment` layers (REFERENCE §4.1, §4.5), queried by the raw features, with
dictionaries that live in the raw feature spaces (e.g. k-means centres: `kmeans` or
`confounder_dictionary(lambda f: f, {"image": features}, ...)`). With the bias-free
projections W_v `[Di, E]` and W_t `[Dt, E]`:

    v' = W_v (x + E_intra[z | x]) + W_t E_inter[z | x]     (image x `[Di]`, text prototypes)
    t' = W_t (y + E_intra[z | y]) + W_v E_inter[z | y]     (text y `[Dt]`, image prototypes)

where each E[z | ·] = Σ_c P(c) A_c(·) Z_c is the layer's NWGM expected confounder, in the
space of its dictionary's rows, so an inter-modal confounder reaches the joint space through
its own modality's projection. The similarity of image i and text j is the cosine of v'_i
and t'_j. `deconfound=False` gives the plain head (v = W_v x, t = W_t y) with the same
projections for the same `rngs`, so the adjustment's effect can be measured. Zero
dictionaries make both heads equal. Train with a contrastive objective on the similarity,
e.g. `causalvision.losses.info_nce`; score with `causalvision.metrics.recall_at_k`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from causalvision.nn.deconfounding import BackdoorAdjustment
from causalvision.validation import check_int, check_shape

Array = jax.Array

__all__ = ["DeconfoundedMatching"]

NORM_EPSILON = 1e-12  # floor of a squared norm before dividing by it


def _unit(v: Array) -> Array:
    """Rows of `v` `[N, E]` scaled to unit length (a zero row stays zero)."""
    squared = jnp.sum(v * v, axis=-1, keepdims=True)
    return v * jax.lax.rsqrt(jnp.maximum(squared, NORM_EPSILON))


class DeconfoundedMatching(nnx.Module):
    """Image-text matching head with DCIN's intra- and inter-modal back-door adjustments.

    `__call__(images [N, Di], texts [M, Dt]) -> [N, M]` cosine similarities in [-1, 1].

    Args:
      image_features: Di, the width of the image features.
      text_features: Dt, the width of the text features.
      embed_dim: E, the width of the joint space.
      image_dictionary: image prototypes `[Ci, Di]` (frozen), or an int Ci for a learned
        dictionary; used intra-modally by images and inter-modally by texts. Needed when
        `deconfound`, ignored otherwise.
      text_dictionary: text prototypes `[Ct, Dt]` (frozen), or an int Ct; intra-modal for
        texts, inter-modal for images.
      image_prior, text_prior: P(c) over each dictionary's rows; uniform by default.
      deconfound: adjust the embeddings (default); False gives the plain head.
      attention_dim: the width of the adjustments' queries and keys (default E).
      normalize_weights: renormalise each adjustment's weights P(c) A_c over c
        (`BackdoorAdjustment`'s flag; default the reference's unnormalised weights).
      rngs: the projections (LeCun normal) first, then the adjustment layers.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> images = jax.random.normal(jax.random.key(0), (4, 6), jnp.float32)  # encoder features
      >>> texts = jax.random.normal(jax.random.key(1), (4, 5), jnp.float32)
      >>> head = DeconfoundedMatching(  # dictionaries: e.g. `confounder_dictionary` prototypes
      ...     6, 5, 8, image_dictionary=images[:2], text_dictionary=texts[:2], rngs=nnx.Rngs(0)
      ... )
      >>> similarity = head(images, texts)  # [N, M] cosines; train with `losses.info_nce`
      >>> similarity.shape, bool(jnp.all(jnp.abs(similarity) <= 1.0))
      ((4, 4), True)
    """

    def __init__(
        self,
        image_features: int,
        text_features: int,
        embed_dim: int,
        *,
        image_dictionary: Array | np.ndarray | int | None = None,
        text_dictionary: Array | np.ndarray | int | None = None,
        image_prior: Array | np.ndarray | None = None,
        text_prior: Array | np.ndarray | None = None,
        deconfound: bool = True,
        attention_dim: int | None = None,
        normalize_weights: bool = False,
        rngs: nnx.Rngs,
    ):
        self.image_features = check_int(image_features, "image_features", 1)
        self.text_features = check_int(text_features, "text_features", 1)
        self.embed_dim = check_int(embed_dim, "embed_dim", 1)
        self.deconfound = bool(deconfound)
        self.image_projection = nnx.Linear(
            self.image_features, self.embed_dim, use_bias=False, rngs=rngs
        )
        self.text_projection = nnx.Linear(
            self.text_features, self.embed_dim, use_bias=False, rngs=rngs
        )
        if not self.deconfound:
            self.image_intra = self.image_inter = self.text_intra = self.text_inter = None
            return
        for argument, value in (
            ("image_dictionary", image_dictionary),
            ("text_dictionary", text_dictionary),
        ):
            if value is None:
                raise ValueError(
                    f"{argument}: expected a dictionary [C, D] or an int C when deconfound "
                    "is True, got None"
                )
        di, dt = self.image_features, self.text_features
        common = {
            "embed_dim": self.embed_dim if attention_dim is None else attention_dim,
            "normalize_weights": normalize_weights,
            "rngs": rngs,
        }
        # Errors name the dictionary as BackdoorAdjustment's argument ("dictionary: ..."),
        # so they are re-raised naming this head's argument.
        with _renamed("dictionary", "image_dictionary"), _renamed("prior", "image_prior"):
            self.image_intra = BackdoorAdjustment(
                di, image_dictionary, image_prior, fusion="add", **common
            )
            self.text_inter = BackdoorAdjustment(
                dt, image_dictionary, image_prior, dictionary_features=di, fusion="none", **common
            )
        with _renamed("dictionary", "text_dictionary"), _renamed("prior", "text_prior"):
            self.text_intra = BackdoorAdjustment(
                dt, text_dictionary, text_prior, fusion="add", **common
            )
            self.image_inter = BackdoorAdjustment(
                di, text_dictionary, text_prior, dictionary_features=dt, fusion="none", **common
            )

    def embed_images(self, images: Array) -> Array:
        """Adjusted image embeddings v' (not unit length): `[N, Di]` -> `[N, E]`."""
        x = jnp.asarray(check_shape(images, (None, self.image_features), "images"), jnp.float32)
        if not self.deconfound:
            return self.image_projection(x)
        return self.image_projection(self.image_intra(x)) + self.text_projection(
            self.image_inter(x)
        )

    def embed_texts(self, texts: Array) -> Array:
        """Adjusted text embeddings t' (not unit length): `[M, Dt]` -> `[M, E]`."""
        y = jnp.asarray(check_shape(texts, (None, self.text_features), "texts"), jnp.float32)
        if not self.deconfound:
            return self.text_projection(y)
        return self.text_projection(self.text_intra(y)) + self.image_projection(self.text_inter(y))

    def __call__(self, images: Array, texts: Array) -> Array:
        """Cosine similarities of the adjusted embeddings: `[N, Di]`, `[M, Dt]` -> `[N, M]`."""
        v = _unit(self.embed_images(images))
        t = _unit(self.embed_texts(texts))
        return jnp.clip(v @ t.T, -1.0, 1.0)


class _renamed:
    """Re-raise a `ValueError` whose message starts with `old:` as one starting `new:`."""

    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if kind is ValueError and str(error).startswith(f"{self.old}:"):
            message = f"{self.new}:{str(error)[len(self.old) + 1 :]}"
            raise ValueError(message) from error
        return False
