"""An image classifier whose prediction is P(Y | do(X)): plain, back-door or front-door adjusted.

One CNN (`ConvEncoder` then a dense layer) feeds one of four heads, so a benchmark compares
the adjustments on the same encoder and budget:

| adjustment | prediction | reference |
|---|---|---|
| "none" | softmax(W x): plain ERM | |
| "backdoor" | softmax(W [x; z(x)]), z the NWGM confounder of `BackdoorAdjustment` | VC R-CNN |
| "frontdoor" | `FrontDoorAttention` over the feature map before pooling | CATT |
| "conditional" | Σ_c P(c) softmax(g(x) + log P(y \\| c)) | back-door formula |

"conditional" is the exact back-door formula for a confounder c that is known for every
training image (observed, or inferred by clustering, see `confounder_dictionary`). Its
conditional P(y | x, c) is factored as P(x | y) P(y | c): given c the confounder's part of the
image carries no further evidence about y, so the image term g(x) only has to explain what
the table log P(y | c) (counted on the training set, frozen) does not. Trained on the factual
c of each image (`conditional_logits`), it predicts by averaging over c with the prior
(`__call__`), which removes the confounder's pull on y.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from causalvision.nn.classifiers import ConvEncoder
from causalvision.nn.deconfounding import (
    BackdoorAdjustment,
    FrontDoorAttention,
    Prior,
    _check_prior,
    backdoor_adjust,
    uniform_prior,
)
from causalvision.validation import check_int

__all__ = ["ADJUSTMENTS", "AdjustedClassifier", "ConfounderTable"]

#: The `AdjustedClassifier` adjustments (see the module docstring).
ADJUSTMENTS = ("none", "backdoor", "frontdoor", "conditional")


class ConfounderTable(nnx.Variable):
    """log P(y | c), counted on the training data: saved and restored with the model, never
    trained (the trainer updates `nnx.Param` only)."""


class AdjustedClassifier(nnx.Module):
    """Classifies images `(N, H, W, C)` in [0, 1] into `num_classes`, adjusting for a confounder.

    Args:
      image_shape: `(H, W, C)` of the inputs.
      num_classes: K, the label's classes.
      widths: convolution widths of the encoder.
      hidden: D, width of the features the head reads.
      adjustment: one of `ADJUSTMENTS` (see the module docstring).
      dictionary: "backdoor": the confounder dictionary Z `(C, D)` (e.g. k-means prototypes
        of a trained encoder's features); "frontdoor": its global dictionary `(C, w)` over
        feature-map tokens, or None for a learned one of `dictionary_size` entries.
      prior: P(c) `(C,)` of the dictionary ("backdoor", "conditional"); default uniform.
      log_table: "conditional": log P(y | c) `(C, K)`, counted on the training set.
      dictionary_size: C of a learned front-door dictionary.
      normalize_weights, num_heads: passed to the adjustment layer.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int,
        *,
        widths: Sequence[int] = (16, 32, 64),
        hidden: int = 64,
        adjustment: str = "none",
        dictionary: Any = None,
        prior: Any = None,
        log_table: Any = None,
        dictionary_size: int = 16,
        normalize_weights: bool = False,
        num_heads: int = 4,
        rngs: nnx.Rngs,
    ):
        if len(image_shape) != 3:
            raise ValueError(f"image_shape: expected (H, W, C), got {tuple(image_shape)}")
        if adjustment not in ADJUSTMENTS:
            raise ValueError(f"adjustment: expected one of {ADJUSTMENTS}, got {adjustment!r}")
        self.num_classes = check_int(num_classes, "num_classes", 2)
        hidden = check_int(hidden, "hidden", 1)
        self.adjustment = adjustment
        self.encoder = ConvEncoder(image_shape[-1], widths, rngs=rngs)
        front_door = back_door = table = None
        if adjustment == "frontdoor":
            size = dictionary_size if dictionary is None else dictionary
            front_door = FrontDoorAttention(
                widths[-1], size, num_heads=num_heads, residual=True, rngs=rngs
            )
        if adjustment == "backdoor":
            if dictionary is None:
                raise ValueError("dictionary: the 'backdoor' adjustment needs one, (C, hidden)")
            back_door = BackdoorAdjustment(
                hidden, dictionary, prior, normalize_weights=normalize_weights, rngs=rngs
            )
        if adjustment == "conditional":
            table = _conditional_tables(log_table, prior, num_classes)
        self.front_door = nnx.data(front_door)
        self.dense = nnx.Linear(widths[-1], hidden, rngs=rngs)
        self.back_door = nnx.data(back_door)
        head_inputs = hidden if back_door is None else back_door.out_features
        self.head = nnx.Linear(head_inputs, num_classes, rngs=rngs)
        log_table, prior = table or (None, None)
        self.log_table, self.prior = nnx.data(log_table), nnx.data(prior)

    def features(self, images: jax.Array) -> jax.Array:
        """The encoder's features x `(N, D)` (after the front-door block, if any)."""
        h = self.encoder.feature_map(images)
        if self.front_door is not None:
            h = self.front_door(h)
        return jax.nn.gelu(self.dense(jnp.mean(h, axis=(1, 2))))

    def __call__(self, images: jax.Array) -> jax.Array:
        """The prediction of P(Y | do(X)) as logits or log-probabilities `(N, K)`."""
        x = self.features(images)
        if self.back_door is not None:
            return self.head(self.back_door(x))
        if self.log_table is not None:
            return backdoor_adjust(self._conditional(x), self.prior[...])
        return self.head(x)

    def exact_log_probs(self, images: jax.Array) -> jax.Array:
        """ "backdoor": the exact form Σ_c P(c) P(y | x, Z_c) beside the NWGM `(N, K)`."""
        if self.back_door is None:
            raise ValueError("exact_log_probs: only the 'backdoor' adjustment has an exact form")
        return self.back_door.exact(self.features(images), self.head)

    def conditional_logits(self, images: jax.Array, confounder: jax.Array) -> jax.Array:
        """ "conditional": logits of P(y | x, c) `(N, K)` at each image's confounder `(N,)`."""
        if self.log_table is None:
            raise ValueError("conditional_logits: only the 'conditional' adjustment has them")
        return self.head(self.features(images)) + self.log_table[...][confounder]

    def _conditional(self, x: jax.Array) -> jax.Array:
        # (N, 1, K) + (C, K): the conditional logits under every confounder value.
        return self.head(x)[:, None, :] + self.log_table[...][None]


def _conditional_tables(log_table: Any, prior: Any, num_classes: int) -> tuple[Any, Any]:
    if log_table is None:
        raise ValueError("log_table: the 'conditional' adjustment needs log P(y | c), (C, K)")
    table = np.asarray(log_table, np.float64)
    if table.ndim != 2 or table.shape[1] != num_classes:
        raise ValueError(f"log_table: expected shape (C, {num_classes}), got {table.shape}")
    if np.isnan(table).any() or (table == np.inf).any():
        raise ValueError("log_table: expected log-probabilities (< inf, not NaN)")
    size = table.shape[0]
    prior = uniform_prior(size) if prior is None else prior
    return (
        ConfounderTable(jnp.asarray(table, jnp.float32)),
        Prior(_check_prior(prior, "prior", size)),
    )
